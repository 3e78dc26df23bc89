"""The K-wise reward model: the loss is InstructGPT's, ties make no pair, packing the K answers
behind one prompt gives each answer exactly the reward it gets alone, and training learns."""

import json
import math
import subprocess
import sys

import pytest
import torch

from training.ml.reward import (
    Ranking,
    RewardConfig,
    RewardScorer,
    encode,
    kwise_loss,
    load_reward_model,
    ordered_pairs,
    rankings_from_records,
    rewards_packed,
    rewards_separate,
    train_reward_model,
)


def test_kwise_loss_is_the_mean_of_the_explicit_pairwise_losses():
    rewards = torch.tensor([2.0, 0.5, 0.5, -1.0])
    loss, pairs, correct = kwise_loss(rewards, [1, 2, 2, 3])
    # Pairs: 0>1, 0>2, 0>3, 1>3, 2>3 (1 and 2 are tied: no pair). Margins 1.5, 1.5, 3, 1.5, 1.5.
    expected = sum(-math.log(1 / (1 + math.exp(-m))) for m in [1.5, 1.5, 3.0, 1.5, 1.5]) / 5
    assert pairs == 5 and correct == 5
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_weighted_pairs_scale_each_pairs_loss_and_average_over_the_pairs():
    rewards = torch.tensor([2.0, 0.5, -1.0])
    # A consensus row: 0 > 1 sure (weight 1), 0 > 2 fairly sure (0.5), 1 > 2 a coin flip left out.
    loss, pairs, correct = kwise_loss(rewards, [1, 2, 3], [(0, 1, 1.0), (0, 2, 0.5)])
    expected = (1.0 * -math.log(1 / (1 + math.exp(-1.5))) + 0.5 * -math.log(1 / (1 + math.exp(-3.0)))) / 2
    assert (pairs, correct) == (2, 2)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Weights of 1 on every implied pair are the plain loss.
    plain = kwise_loss(rewards, [1, 2, 3])[0]
    assert float(kwise_loss(rewards, [1, 2, 3], [(0, 1, 1.0), (0, 2, 1.0), (1, 2, 1.0)])[0]) == pytest.approx(
        float(plain)
    )


def test_consensus_rows_carry_their_weighted_pairs():
    row = {
        "prompt": [{"role": "user", "content": "hi"}],
        "completions": [[{"role": "assistant", "content": t}] for t in ("a", "b", "c")],
        "ranks": [1, 2, 3],
        "pairs": [{"better": 0, "worse": 2, "weight": 0.8}],
        "annotators": 3,
    }
    (ranking,) = rankings_from_records([row])
    assert ranking.pairs == [(0, 2, 0.8)]
    for bad in (
        {"better": 0, "worse": 0, "weight": 1},
        {"better": 0, "worse": 3, "weight": 1},
        {"better": 0, "worse": 1, "weight": 2},
    ):
        with pytest.raises(ValueError, match="row 1: pairs"):
            rankings_from_records([{**row, "pairs": [bad]}])


def test_ties_make_no_pairs():
    assert ordered_pairs([1, 1, 1]) == []
    assert ordered_pairs([2, 1]) == [(1, 0)]
    assert kwise_loss(torch.tensor([1.0, 3.0]), [1, 1])[0] is None


def test_preference_and_ranking_rows_become_rankings():
    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": [{"role": "assistant", "content": "go"}],
        },
        {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
        {
            "chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "rejected": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "c"}],
        },
        {
            "prompt": [{"role": "user", "content": "q"}],
            "completions": [[{"role": "assistant", "content": "x"}], [{"role": "assistant", "content": "y"}]],
            "ranks": [2, 1],
        },
    ]
    rankings = rankings_from_records(rows)
    assert [(r.completions, r.ranks) for r in rankings] == [
        (["hello", "go"], [1, 2]),
        (["4", "5"], [1, 2]),
        (["b", "c"], [1, 2]),
        (["x", "y"], [2, 1]),
    ]
    assert rankings[2].prompt == [{"role": "user", "content": "a"}]


def test_packed_rewards_equal_rewards_scored_alone(tiny_model_path):
    model, tokenizer = load_reward_model(str(tiny_model_path), device="cpu", dtype="float32")
    model.eval()
    config = RewardConfig()
    long_prompt = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "台灣第一高峰是那一座？"},
        {"role": "assistant", "content": "玉山。"},
        {"role": "user", "content": "How tall is it, and where is it? " * 5},
    ]
    batch = [
        encode(
            tokenizer,
            Ranking(
                long_prompt, ["3,952 m.", "It is in the Central Range, 3,952 m high.", "No idea", "K2"], [1, 2, 3, 4]
            ),
            config,
        ),
        encode(tokenizer, Ranking([{"role": "user", "content": "hi"}], ["hello there", "go away"], [1, 2]), config),
    ]
    with torch.no_grad():
        packed = rewards_packed(model, batch)
        separate = rewards_separate(model, batch)
        alone = [
            rewards_separate(model, [encode(tokenizer, Ranking(long_prompt, [a], [1]), config)])[0][0]
            for a in ["3,952 m.", "It is in the Central Range, 3,952 m high.", "No idea", "K2"]
        ]
    for p, s in zip(packed, separate, strict=True):
        torch.testing.assert_close(p, s, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(packed[0], torch.stack(alone), rtol=1e-4, atol=1e-4)
    assert len(set(round(float(r), 4) for r in packed[0])) == 4  # really different answers, really different rewards


def learnable_rankings(count: int) -> list[Ranking]:
    """Rank answers by how polite they are: a pattern a tiny model can pick up quickly."""
    rankings = []
    for i in range(count):
        prompt = [{"role": "user", "content": f"Question {i}: can you help me?"}]
        answers = [f"Yes, gladly! Thank you for asking {i}.", f"Maybe {i}.", f"No. Go away {i}!"]
        rankings.append(Ranking(prompt, answers, [1, 2, 3]))
    return rankings


def test_training_changes_parameters_lowers_the_loss_and_reports_accuracy(tiny_model_path, tmp_path):
    config = RewardConfig(epochs=4, learning_rate=3e-3, rankings_per_step=4, eval_fraction=0.25, warmup_ratio=0.0)
    seen = []
    metrics = train_reward_model(
        learnable_rankings(16),
        str(tiny_model_path),
        str(tmp_path / "rm"),
        config,
        progress=lambda step, total, m: seen.append((step, total, m)),
    )
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["eval_accuracy"] is not None and metrics["eval_pairs"] == 4 * 3
    assert seen[-1][0] == seen[-1][1] == metrics["steps"] == 4 * 3
    trained = RewardScorer(str(tmp_path / "rm"), device="cpu", dtype="float32")
    original, _ = load_reward_model(str(tiny_model_path), device="cpu", dtype="float32")
    assert not torch.equal(trained.model.model.embed_tokens.weight, original.model.embed_tokens.weight)
    prompt = [{"role": "user", "content": "Question 99: can you help me?"}]
    good, bad = trained.score([prompt, prompt], ["Yes, gladly! Thank you for asking 99.", "No. Go away 99!"])
    assert good > bad
    assert json.loads((tmp_path / "rm" / "yushan_stage.json").read_text())["stage"] == "reward"


def test_length_grouped_batches_pad_less_and_keep_every_ranking_once():
    import random

    from training.ml.reward import epoch_batches, packed_length
    from training.ml.reward_data import Encoded

    rng = random.Random(1)
    lengths = [rng.choice([20, 300]) for _ in range(64)]
    train = [Encoded(list(range(n)), [[1], [2]], [1, 2]) for n in lengths]

    def padding(batches):
        return sum(max(map(packed_length, b)) * len(b) - sum(map(packed_length, b)) for b in batches)

    grouped = epoch_batches(train, RewardConfig(rankings_per_step=4), random.Random(0))
    plain = epoch_batches(train, RewardConfig(rankings_per_step=4, group_by_length=False), random.Random(0))
    assert sorted(map(id, (e for b in grouped for e in b))) == sorted(map(id, train))
    assert padding(grouped) < padding(plain) / 4


def test_gradient_checkpointing_trains_to_the_same_loss(tiny_model_path, tmp_path):
    losses = {}
    for checkpointing in (False, True):
        config = RewardConfig(epochs=1, learning_rate=3e-3, eval_fraction=0, gradient_checkpointing=checkpointing)
        metrics = train_reward_model(
            learnable_rankings(8), str(tiny_model_path), str(tmp_path / str(checkpointing)), config
        )
        losses[checkpointing] = (metrics["train_loss_first"], metrics["train_loss_last"])
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


def test_command_line_trains_from_preference_jsonl(tiny_model_path, tmp_path):
    data = tmp_path / "prefs.jsonl"
    rows = [
        {
            "prompt": r.prompt,
            "chosen": [{"role": "assistant", "content": r.completions[0]}],
            "rejected": [{"role": "assistant", "content": r.completions[2]}],
        }
        for r in learnable_rankings(10)
    ]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.ml.reward",
            "--data",
            str(data),
            "--model",
            str(tiny_model_path),
            "--out",
            str(tmp_path / "rm"),
            "--eval-fraction",
            "0.2",
            "--lr",
            "1e-3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held-out pairwise accuracy:" in result.stdout
