"""What keeps a round's policy stage honest: shaped rewards, the KL budget, SFT early stopping,
on-policy iterative DPO, and the judges on held-out human rankings."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerControl, TrainerState, TrainingArguments

from training.ml.held_out import implicit_reward_accuracy, reward_model_accuracy
from training.ml.policy import optimize_policy
from training.ml.policy_config import PolicyConfig
from training.ml.reward import Ranking, RewardConfig, train_reward_model
from training.ml.reward_shaping import RewardShaper
from training.ml.sft import early_stop_callback, keep_best_epoch

PROMPTS = [{"prompt": [{"role": "user", "content": f"Can you help me with task {i}?"}]} for i in range(3)]
ANSWERS = ["Yes, gladly!", "Maybe.", "No."]


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory, tiny_model_path):
    """A tiny reward model trained to prefer "Yes, gladly!" over "Maybe." over "No."."""
    rankings = [Ranking([{"role": "user", "content": f"Question {i}"}], ANSWERS, [1, 2, 3]) for i in range(6)]
    path = tmp_path_factory.mktemp("models") / "rm"
    train_reward_model(
        rankings, str(tiny_model_path), str(path), RewardConfig(epochs=3, learning_rate=1e-3, eval_fraction=0)
    )
    return path


def test_rewards_are_standardised_on_the_first_samples_and_stay_calibrated():
    shaper = RewardShaper(normalize=True, length_control=False)
    assert shaper([1.0, 3.0], [5, 5]) == pytest.approx([-1.0, 1.0])
    # a later, better batch shows as better: the calibration does not move with it
    assert shaper([5.0, 5.0], [5, 5]) == pytest.approx([3.0, 3.0])


def test_length_cannot_raise_the_reward_but_can_lower_it():
    longer_wins = RewardShaper(normalize=False, length_control=True)([1.0, 2.0, 3.0], [10, 20, 30])
    assert longer_wins == pytest.approx([2.0, 2.0, 2.0])  # what length explained is gone
    shorter_wins = RewardShaper(normalize=False, length_control=True)([3.0, 2.0, 1.0], [10, 20, 30])
    assert shorter_wins == pytest.approx([3.0, 2.0, 1.0])  # a preference for brevity is kept


def train_policy(model, reward_model, out, **settings) -> tuple[dict, list]:
    """optimize_policy on PROMPTS with tiny sampling; (metrics, every progress report)."""
    config = PolicyConfig(prompts_per_step=2, max_completion_length=8, kl_beta=0.1, **settings)
    seen = []
    metrics = optimize_policy(
        PROMPTS, str(model), str(reward_model), str(out), config, progress=lambda *report: seen.append(report)
    )
    return metrics, seen


def test_rl_stops_once_the_kl_passes_its_budget(tiny_model_path, reward_model, tmp_path):
    metrics, reports = train_policy(
        tiny_model_path,
        reward_model,
        tmp_path / "p",
        algorithm="rloo",
        steps=6,
        generations_per_prompt=2,
        learning_rate=1e-2,
        kl_budget=1e-6,
    )
    seen = [m for _, _, m in reports]
    # step 1 starts at the reference (KL 0); step 2 has moved, past the budget: the stage stops there
    assert metrics["steps"] == 2 and "budget" in metrics["stopped_early"]
    kls = [m["kl"] for m in seen if "kl" in m and "loss" in m]
    assert kls[0] == pytest.approx(0.0, abs=1e-6) and kls[1] > 1e-6


def test_sft_early_stop_restores_the_best_epochs_weights():
    model = torch.nn.Linear(2, 2)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    callback = early_stop_callback()
    args = TrainingArguments(output_dir="/tmp/unused", num_train_epochs=3, report_to=[])
    state, control = TrainerState(), TrainerControl()
    state.epoch = 1.0
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.0}, model=model)
    with torch.no_grad():
        model.weight.add_(5.0)  # epoch 2 over-fits
    state.epoch = 2.0
    callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.5}, model=model)
    assert control.should_training_stop
    assert torch.equal(model.weight, best["weight"])
    assert (callback.best_epoch, callback.stopped_at_epoch, callback.best_loss) == (1, 2, 1.0)


def test_sft_checks_the_final_weights_even_when_the_trainer_did_not_evaluate_them():
    from types import SimpleNamespace

    model = torch.nn.Linear(2, 2)
    best = model.weight.detach().clone()
    early = early_stop_callback()
    args = TrainingArguments(output_dir="/tmp/unused", num_train_epochs=2, report_to=[])
    state = TrainerState()
    state.epoch = 1.0
    early.on_evaluate(args, state, TrainerControl(), metrics={"eval_loss": 1.0}, model=model)
    with torch.no_grad():
        model.weight.add_(5.0)  # the last epoch over-fits, and the trainer never evaluated it
    trainer = SimpleNamespace(model=model, state=SimpleNamespace(epoch=2.0), evaluate=lambda: {"eval_loss": 1.4})
    keep_best_epoch(trainer, early)
    assert torch.equal(model.weight, best) and (early.best_epoch, early.stopped_at_epoch) == (1, 2)


def test_iterative_dpo_samples_on_policy_pairs_and_trains(tiny_model_path, reward_model, tmp_path):
    metrics, seen = train_policy(
        tiny_model_path,
        reward_model,
        tmp_path / "policy",
        algorithm="iterative_dpo",
        iterations=2,
        generations_per_prompt=3,
        learning_rate=1e-3,
    )
    per_iteration = [(step, total) for step, total, m in seen if "pairs" in m]
    assert per_iteration == [(1, 2), (2, 2)]
    assert metrics["kl_first"] == pytest.approx(0.0, abs=1e-5)  # the first samples come from the reference
    assert metrics["kl_last"] > 0  # the second from the trained policy
    assert {"reward_first", "mean_length_first", "loss_last"} <= metrics.keys()
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "policy").state_dict()
    original = AutoModelForCausalLM.from_pretrained(tiny_model_path).state_dict()
    assert any(not torch.equal(trained[k], original[k]) for k in original)
    stage = json.loads((tmp_path / "policy" / "yushan_stage.json").read_text())
    assert stage["config"]["algorithm"] == "iterative_dpo"


def test_iterative_dpo_scores_each_prompts_answers_together_and_measures_kl_on_one_per_prompt(
    tiny_model_path, reward_model
):
    from training.ml.evaluate import as_conversation, sample_answers
    from training.ml.generation import SamplingParams
    from training.ml.iterative_dpo import _kls, _scores
    from training.ml.reward import RewardScorer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    conversations = [as_conversation(f"Question {i}?") for i in range(3)]
    repeated = [c for c in conversations for _ in range(2)]
    answers = sample_answers(model, tokenizer, repeated, SamplingParams(temperature=1.0, max_new_tokens=6, seed=1))
    scorer = RewardScorer(reward_model)
    together = _scores(scorer, conversations, answers, 2)
    one_by_one = scorer.score(repeated, [a.text for a in answers])
    assert together == pytest.approx(one_by_one, abs=1e-4)  # the same scores, in the answers' order
    assert _kls(model, model, answers, 2, iteration=0) == []  # the first policy is its reference
    later = _kls(model, model, answers, 2, iteration=1)
    assert len(later) == 3 and later == pytest.approx([0.0] * 3, abs=1e-5)  # each prompt's first answer


def held_out(order: list[int]) -> list[Ranking]:
    return [Ranking([{"role": "user", "content": f"Held-out question {i}"}], ANSWERS, order) for i in range(5)]


def test_reward_model_accuracy_on_held_out_rankings_has_an_interval(reward_model):
    agreeing = reward_model_accuracy(held_out([1, 2, 3]), reward_model)
    assert agreeing["pairs"] == 15 and agreeing["rankings"] == 5
    assert agreeing["accuracy"] > 0.8
    low, high = agreeing["accuracy_ci"]
    assert low <= agreeing["accuracy"] <= high
    reversed_ = reward_model_accuracy(held_out([3, 2, 1]), reward_model)
    assert reversed_["accuracy"] == pytest.approx(1 - agreeing["accuracy"])
    assert reward_model_accuracy(held_out([1, 1, 1]), reward_model)["pairs"] == 0  # all ties: nothing to judge


def test_implicit_reward_accuracy_is_chance_for_an_unchanged_policy(tiny_model_path, tmp_path):
    unchanged = implicit_reward_accuracy(held_out([1, 2, 3]), tiny_model_path, tiny_model_path)
    assert unchanged["accuracy"] == 0.5 and unchanged["pairs"] == 15
    preferences = [
        {
            "prompt": r.prompt,
            "chosen": [{"role": "assistant", "content": a}],
            "rejected": [{"role": "assistant", "content": b}],
        }
        for r in held_out([1, 2, 3])
        for a, b in [(ANSWERS[0], ANSWERS[1]), (ANSWERS[0], ANSWERS[2]), (ANSWERS[1], ANSWERS[2])]
    ]
    config = PolicyConfig(algorithm="dpo", epochs=3, prompts_per_step=5, learning_rate=1e-3, kl_beta=0.1)
    optimize_policy(preferences, str(tiny_model_path), None, str(tmp_path / "dpo"), config)
    learned = implicit_reward_accuracy(held_out([1, 2, 3]), tmp_path / "dpo", tiny_model_path)
    assert learned["accuracy"] > 0.8


def uneven_rankings() -> list[Ranking]:
    """Rankings whose prompts and answers differ in length, some with fewer answers: packed batches
    of them mix widths, and a judge must score each answer as if it were alone."""
    prompts = ["Hi", "Can you tell me, in some detail, what a ranking task is for?", "台灣第一高峰是那一座？"]
    answers = [ANSWERS, ["A much longer answer that runs on for a while, then stops.", "Short."], ANSWERS[::-1]]
    return [
        Ranking([{"role": "user", "content": p}], a, list(range(1, len(a) + 1)))
        for p, a in zip(prompts, answers, strict=True)
    ]


def test_held_out_judges_score_each_answer_as_if_it_were_alone(tiny_model_path, reward_model):
    """The judges encode each ranking's prompt once and batch rankings by length; what they report
    must be what one answer at a time, prompt + answer, gives."""
    from training.ml.evaluate import load_policy, sequence_logprobs
    from training.ml.held_out import answer_sequences, encoded_rankings, ranking_logprobs
    from training.ml.reward import RewardScorer

    rankings = uneven_rankings()
    model, tokenizer = load_policy(str(tiny_model_path))
    packed = ranking_logprobs(model, encoded_rankings(tokenizer, rankings, 256), batch_size=5)
    alone = [sequence_logprobs(model, [s], batch_size=1)[0] for s in answer_sequences(tokenizer, rankings, 256)]
    assert [len(answers) for answers in packed] == [3, 2, 3]
    assert sum(packed, []) == pytest.approx(alone, abs=1e-4)

    scorer = RewardScorer(str(reward_model), batch_size=5)
    by_ranking = scorer.score_rankings(rankings)
    one_by_one = [scorer.score([r.prompt], [a])[0] for r in rankings for a in r.completions]
    assert sum(by_ranking, []) == pytest.approx(one_by_one, abs=1e-4)
    assert by_ranking[0][0] > by_ranking[0][2]  # it still prefers "Yes, gladly!" to "No."
