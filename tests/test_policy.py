"""Policy optimization against the reward model (RLOO, GRPO) and on preferences (DPO): each trains,
reports reward, KL and answer length per step, stops when cancelled, and saves the new policy."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from training.ml.common import TrainingCancelled
from training.ml.policy import RewardModelFunction, build_policy_trainer, optimize_policy
from training.ml.policy_config import PolicyConfig, preferences_from_records
from training.ml.reward import Ranking, RewardConfig, RewardScorer, train_reward_model
from training.ml.reward_data import prompts_from_records

PROMPTS = [
    {"prompt": [{"role": "user", "content": "Can you help me?"}]},
    {"prompt": [{"role": "user", "content": "台灣第一高峰是那一座？"}]},
]
TINY_RL = {
    "steps": 2,
    "prompts_per_step": 2,
    "generations_per_prompt": 2,
    "max_completion_length": 8,
    "learning_rate": 1e-3,
    "kl_beta": 0.1,
}


@pytest.fixture(scope="module")
def tiny_reward_model_path(tmp_path_factory, tiny_model_path):
    rankings = [
        Ranking([{"role": "user", "content": f"Question {i}"}], ["Yes, gladly!", "Maybe.", "No."], [1, 2, 3])
        for i in range(4)
    ]
    path = tmp_path_factory.mktemp("models") / "rm"
    train_reward_model(rankings, str(tiny_model_path), str(path), RewardConfig(epochs=1, eval_fraction=0))
    return path


def changed(trained_path, original_path) -> bool:
    trained = AutoModelForCausalLM.from_pretrained(trained_path).state_dict()
    original = AutoModelForCausalLM.from_pretrained(original_path).state_dict()
    return any(not torch.equal(trained[name], original[name]) for name in original)


def test_prompts_come_from_any_snapshot_rows_once_each():
    user = [{"role": "user", "content": "hi"}]
    rows = [
        {"prompt": user, "completions": ["a", "b"], "ranks": [1, 2]},
        {"messages": [*user, {"role": "assistant", "content": "hello"}]},
        {
            "messages": [
                *user,
                {"role": "assistant", "content": "x"},
                {"role": "user", "content": "more"},
                {"role": "assistant", "content": "y"},
            ]
        },
        {
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}],
        },
        {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
    ]
    assert prompts_from_records(rows) == [
        {"prompt": user},
        {"prompt": [*user, {"role": "assistant", "content": "x"}, {"role": "user", "content": "more"}]},
        {"prompt": [{"role": "user", "content": "q"}]},
        {"prompt": "2+2="},
    ]


def test_rankings_become_one_preference_per_ordered_pair():
    user = [{"role": "user", "content": "hi"}]
    rows = preferences_from_records([{"prompt": user, "completions": ["good", "ok", "also ok"], "ranks": [1, 2, 2]}])
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [
        ("good", "ok"),
        ("good", "also ok"),
    ]
    assert all(r["prompt"] == user for r in rows)


def test_best_worst_keeps_one_pair_per_ranking_its_widest():
    user = [{"role": "user", "content": "hi"}]
    records = [
        {"prompt": user, "completions": ["ok", "best", "bad", "worst", "also worst"], "ranks": [2, 1, 3, 4, 4]},
        {"prompt": user, "completions": ["same", "as this"], "ranks": [1, 1]},  # ties only: no pair
        {"prompt": "2+2=", "completions": ["5", "4"], "ranks": [2, 1]},
    ]
    rows = preferences_from_records(records, pairs="best_worst")
    assert [(r["chosen"], r["rejected"]) for r in rows] == [
        ([{"role": "assistant", "content": "best"}], [{"role": "assistant", "content": "also worst"}]),
        ("4", "5"),
    ]
    assert len(preferences_from_records(records)) == 9 + 1  # every ordered pair, by default


def test_when_steps_cannot_reach_every_pair_dpo_keeps_the_newest(tiny_model_path, tmp_path):
    """A round's snapshot lists rankings in task order: the last ones judge the latest policy's own answers."""
    records = [
        {"prompt": f"Question {i}?", "completions": ["Yes, gladly!", "Hmm.", "No."], "ranks": [1, 2, 3]}
        for i in range(6)
    ]
    config = PolicyConfig(algorithm="dpo", pairs="best_worst", steps=2, prompts_per_step=2)
    trainer = build_policy_trainer(records, str(tiny_model_path), None, str(tmp_path), config)
    assert list(trainer.train_dataset["prompt"]) == ["Question 2?", "Question 3?", "Question 4?", "Question 5?"]


def test_dpo_stops_at_its_step_cap(tiny_model_path, tmp_path):
    preferences = [
        {"prompt": f"Question {i}?", "completions": ["Yes, gladly!", "Hmm.", "No."], "ranks": [1, 2, 3]}
        for i in range(6)
    ]
    common = {"algorithm": "dpo", "epochs": 2, "prompts_per_step": 2, "learning_rate": 1e-4}
    capped = optimize_policy(
        preferences, str(tiny_model_path), None, str(tmp_path / "capped"), PolicyConfig(**common, steps=4)
    )
    uncapped = optimize_policy(
        preferences,
        str(tiny_model_path),
        None,
        str(tmp_path / "one-pair-each"),
        PolicyConfig(**common, steps=100, pairs="best_worst"),
    )
    assert capped["steps"] == 4  # 18 pairs over 2 epochs would be 18 steps
    assert uncapped["steps"] == 6  # 6 pairs, 2 per step, 2 epochs: the epochs end first


def test_reward_function_scores_trl_completions_with_the_reward_model(tiny_reward_model_path):
    prompts = [PROMPTS[0]["prompt"], PROMPTS[1]["prompt"]]
    completions = [[{"role": "assistant", "content": "Yes, gladly!"}], [{"role": "assistant", "content": "No."}]]
    rewards = RewardModelFunction(str(tiny_reward_model_path))(
        prompts=prompts, completions=completions, completion_ids=[[1], [2]], trainer_state=None
    )
    expected = RewardScorer(str(tiny_reward_model_path)).score(prompts, ["Yes, gladly!", "No."])
    assert rewards == pytest.approx(expected)


@pytest.mark.parametrize("algorithm", ["rloo", "grpo"])
def test_rl_trains_against_the_reward_model_and_reports_reward_kl_and_length(
    algorithm, tiny_model_path, tiny_reward_model_path, tmp_path
):
    seen = []
    config = PolicyConfig(algorithm=algorithm, **TINY_RL)
    metrics = optimize_policy(
        PROMPTS,
        str(tiny_model_path),
        str(tiny_reward_model_path),
        str(tmp_path / "policy"),
        config,
        progress=lambda step, total, m: seen.append((step, total, m)),
    )
    per_step = [(step, total, m) for step, total, m in seen if "reward" in m]
    assert [(step, total) for step, total, _ in per_step] == [(1, 2), (2, 2)]
    for _, _, m in per_step:
        assert {"reward", "kl", "mean_length", "loss"} <= m.keys()
        assert 1 <= m["mean_length"] <= 8
    assert per_step[0][2]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert per_step[1][2]["kl"] != 0.0  # and moves away from it
    assert metrics["steps"] == 2 and metrics["reward_last"] == per_step[-1][2]["reward"]
    assert changed(tmp_path / "policy", tiny_model_path)
    stage = json.loads((tmp_path / "policy" / "yushan_stage.json").read_text())
    assert stage["stage"] == "policy" and stage["config"]["algorithm"] == algorithm


def test_dpo_measures_its_drift_and_stops_once_the_kl_passes_the_budget(tiny_model_path, tmp_path):
    preferences = [
        {"prompt": f"Question {i}?", "completions": ["Yes, gladly!", "Hmm.", "No."], "ranks": [1, 2, 3]}
        for i in range(8)
    ]
    common = {"algorithm": "dpo", "prompts_per_step": 2, "learning_rate": 1e-2, "steps": 8, "max_completion_length": 8}
    free = optimize_policy(preferences, str(tiny_model_path), None, str(tmp_path / "free"), PolicyConfig(**common))
    assert free["steps"] == 8 and "stopped_early" not in free  # no budget: no check, no stop
    held = optimize_policy(
        preferences, str(tiny_model_path), None, str(tmp_path / "held"), PolicyConfig(**common, kl_budget=1e-6)
    )
    # Checks after every 2 steps (8 steps / 4 checks); the first one finds the policy moved past
    # the budget, so training stops there instead of running its 8 steps.
    assert held["steps"] == 2 and "budget" in held["stopped_early"]
    assert [check["step"] for check in held["kl_checks"]] == [2] and held["kl_checks"][0]["kl"] > 1e-6


HELPFUL_PREFERENCES = [
    {
        "prompt": [{"role": "user", "content": f"Can you help me ({i})?"}],
        "chosen": [{"role": "assistant", "content": "Yes, gladly!"}],
        "rejected": [{"role": "assistant", "content": "No. Go away!"}],
    }
    for i in range(8)
]


def test_dpo_learns_the_preferences_against_the_sft_reference(tiny_model_path, tmp_path):
    preferences = HELPFUL_PREFERENCES
    seen = []
    config = PolicyConfig(algorithm="dpo", epochs=2, prompts_per_step=4, learning_rate=1e-3, kl_beta=0.1)
    metrics = optimize_policy(
        preferences,
        str(tiny_model_path),
        None,
        str(tmp_path / "policy"),
        config,
        progress=lambda step, total, m: seen.append((step, total, m)),
    )
    per_step = [m for _, _, m in seen if "loss" in m]
    assert len(per_step) == metrics["steps"] == 4
    assert {"loss", "reward_margin", "accuracy"} <= per_step[0].keys()
    assert metrics["loss_last"] < metrics["loss_first"]
    assert metrics["reward_margin_last"] > 0
    assert changed(tmp_path / "policy", tiny_model_path)


def test_cancelling_raises_and_saves_nothing(tiny_model_path, tiny_reward_model_path, tmp_path):
    steps = []
    config = PolicyConfig(**{**TINY_RL, "steps": 5})
    with pytest.raises(TrainingCancelled):
        optimize_policy(
            PROMPTS,
            str(tiny_model_path),
            str(tiny_reward_model_path),
            str(tmp_path / "policy"),
            config,
            progress=lambda step, total, m: steps.append(step),
            should_stop=lambda: len(steps) >= 1,
        )
    assert steps == [1, 2]  # of 5: should_stop() is polled at the end of every step
    assert not (tmp_path / "policy").exists()


def test_generations_per_prompt_must_leave_a_baseline():
    with pytest.raises(ValueError, match="at least 2"):
        PolicyConfig(generations_per_prompt=1)


def test_command_line_runs_rloo_on_sft_rows(tiny_model_path, tiny_reward_model_path, tmp_path):
    data = tmp_path / "sft.jsonl"
    rows = [{"messages": [*p["prompt"], {"role": "assistant", "content": "Sure."}]} for p in PROMPTS]
    data.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.ml.policy",
            "--algorithm",
            "rloo",
            "--data",
            str(data),
            "--model",
            str(tiny_model_path),
            "--reward",
            str(tiny_reward_model_path),
            "--out",
            str(tmp_path / "policy"),
            "--steps",
            "1",
            "--prompts-per-step",
            "2",
            "--generations",
            "2",
            "--max-completion-length",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 1/1" in result.stdout and "reward" in result.stdout and "mean_length" in result.stdout
    assert (tmp_path / "policy" / "yushan_stage.json").exists()


def dpo_for_each(preferences, model_path, tmp_path, name: str, values) -> dict:
    """The policy folder DPO writes from `model_path` for each value of the setting `name`; each
    run must come to prefer what people preferred."""
    folders = {}
    for value in values:
        config = PolicyConfig(
            algorithm="dpo", epochs=4, prompts_per_step=4, learning_rate=3e-3, kl_beta=0.1, **{name: value}
        )
        folders[value] = tmp_path / f"policy-{name}-{value}"
        metrics = optimize_policy(preferences, str(model_path), None, str(folders[value]), config)
        assert metrics["reward_margin_last"] > 0
    return folders


def chat_ids(model_path, prompt: list[dict], answer_start: str = "") -> list[int]:
    """The prompt as the chat template gives it to the model, followed by the answer's first words."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    prompt_text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return tokenizer(prompt_text + answer_start, add_special_tokens=False)["input_ids"]


def text_ids(model_path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_path))(text, add_special_tokens=False)["input_ids"]


def continuation_logprob(path, prefix_ids: list[int], ids: list[int]) -> float:
    """log p(ids | prefix_ids) under the model at `path`."""
    from training.ml.evaluate import sequence_logprobs

    model = AutoModelForCausalLM.from_pretrained(str(path))
    return sequence_logprobs(model, [(list(prefix_ids) + ids, len(prefix_ids))])[0]


def test_dpo_with_the_preferred_answers_likelihood_keeps_them_likelier_than_plain_dpo(tiny_model_path, tmp_path):
    preferences = HELPFUL_PREFERENCES
    prompt_ids = chat_ids(tiny_model_path, preferences[0]["prompt"])
    answer_ids = text_ids(tiny_model_path, "Yes, gladly!")

    folders = dpo_for_each(preferences, tiny_model_path, tmp_path, "chosen_nll", (0.0, 1.0))
    likelihood = {weight: continuation_logprob(folder, prompt_ids, answer_ids) for weight, folder in folders.items()}
    assert likelihood[1.0] > likelihood[0.0] + 0.3  # with the NLL term the preferred answer is likelier still


def test_length_desensitised_dpo_leaves_a_long_worse_answers_extra_tokens_alone(tiny_model_path, tmp_path):
    """The worse answer says what the better one says, then runs on (as a cut-off answer does).
    Plain DPO can widen the margin by making the run-on tokens unlikely; with ld_alpha 0 only the
    tokens both answers have count, so the run-on's likelihood moves far less."""
    tail = " and then it goes on and on about other things without ever coming to an end"
    run_on = [{"role": "assistant", "content": "Yes, gladly!" + tail}]
    preferences = [{**row, "rejected": run_on} for row in HELPFUL_PREFERENCES]
    prefix_ids = chat_ids(tiny_model_path, preferences[0]["prompt"], "Yes, gladly!")
    tail_ids = text_ids(tiny_model_path, tail)

    before = continuation_logprob(tiny_model_path, prefix_ids, tail_ids)
    folders = dpo_for_each(preferences, tiny_model_path, tmp_path, "ld_alpha", (1.0, 0.0))
    drop = {alpha: before - continuation_logprob(folder, prefix_ids, tail_ids) for alpha, folder in folders.items()}
    assert drop[1.0] > 2 * max(drop[0.0], 0.1)  # plain DPO pushed the run-on down; LD-DPO barely did
