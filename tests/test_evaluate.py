"""Evaluation compares a new policy with the deployed one: reward under the new reward model, win
rate (ties count half), answer length and KL, with one row per prompt; deployment needs the threshold."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.ml.evaluate import (
    bootstrap_interval,
    evaluate_policies,
    judge_report,
    judges_disagree,
    judges_weigh,
    prompt_outcomes,
    sequence_logprobs,
    should_deploy,
)
from training.ml.generation import SamplingParams
from training.ml.held_out import accuracy_difference, accuracy_report
from training.ml.reward import RewardConfig, RewardScorer, load_reward_model, save_reward_model

PROMPTS = [
    [{"role": "user", "content": "What is the highest mountain in the world?"}],
    [{"role": "user", "content": "台灣第一高峰是那一座？"}],
    "Tell me a joke.",
    [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
]
SAMPLING = SamplingParams(temperature=1.0, max_new_tokens=8, seed=3)


@pytest.fixture(scope="module")
def tiny_reward_model_path(tmp_path_factory, tiny_model_path):
    model, tokenizer = load_reward_model(str(tiny_model_path), device="cpu", dtype="float32")
    path = tmp_path_factory.mktemp("models") / "rm"
    save_reward_model(model, tokenizer, path, RewardConfig(), {})
    return path


@pytest.fixture(scope="module")
def sharpened_path(tmp_path_factory, tiny_model_path):
    """A policy far from the tiny model: the same network with its output distribution made very sharp."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    with torch.no_grad():
        model.model.norm.weight.mul_(30)
    path = tmp_path_factory.mktemp("models") / "sharp"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(path)
    return path


def test_a_policy_against_itself_ties_with_no_kl(tiny_model_path, tiny_reward_model_path):
    result = evaluate_policies(
        PROMPTS, str(tiny_model_path), str(tiny_model_path), str(tiny_reward_model_path), sampling=SAMPLING
    )
    assert result["prompts"] == len(result["rows"]) == 4
    assert result["win_rate"] == 0.5  # same seed, same answers: every prompt is a tie
    assert result["kl"] == 0.0
    assert result["new_mean_reward"] == result["old_mean_reward"]
    assert result["new_mean_length"] == result["old_mean_length"]
    assert all(row["new_answer"] == row["old_answer"] for row in result["rows"])


def test_new_policy_is_compared_with_the_old_one_prompt_by_prompt(
    tiny_model_path, tiny_model_path_b, tiny_reward_model_path
):
    result = evaluate_policies(
        PROMPTS, str(tiny_model_path_b), str(tiny_model_path), str(tiny_reward_model_path), sampling=SAMPLING
    )
    rows = result["rows"]
    assert rows[2]["prompt"] == [{"role": "user", "content": "Tell me a joke."}]
    wins = sum(
        1.0 if r["new_reward"] > r["old_reward"] else 0.5 if r["new_reward"] == r["old_reward"] else 0.0 for r in rows
    )
    assert result["win_rate"] == wins / 4
    assert result["new_mean_reward"] == pytest.approx(sum(r["new_reward"] for r in rows) / 4)
    assert result["old_mean_reward"] == pytest.approx(sum(r["old_reward"] for r in rows) / 4)
    assert any(r["new_answer"] != r["old_answer"] for r in rows)
    assert 1 <= result["new_mean_length"] <= 8 and 1 <= result["old_mean_length"] <= 8
    assert result["sampling"]["seed"] == 3


def test_kl_from_the_old_policy_or_another_reference(
    sharpened_path, tiny_model_path, tiny_model_path_b, tiny_reward_model_path
):
    moved = evaluate_policies(
        PROMPTS, str(sharpened_path), str(tiny_model_path), str(tiny_reward_model_path), sampling=SAMPLING
    )
    assert moved["kl"] > 10  # its own answers are far likelier under the sharp policy than under where it started
    itself = evaluate_policies(
        PROMPTS,
        str(sharpened_path),
        str(tiny_model_path),
        str(tiny_reward_model_path),
        sampling=SAMPLING,
        reference_path=str(sharpened_path),
    )
    assert itself["kl"] == 0.0
    assert itself["rows"] == moved["rows"]


def test_sequence_log_probabilities_do_not_depend_on_padding(tiny_model_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    sequences = [([1, 5, 9, 200, 31, 7], 3), ([4, 8, 15, 16], 2), ([23, 42, 108, 7, 7, 7, 7, 7], 5)]
    batched = sequence_logprobs(model, sequences, batch_size=3)
    alone = [sequence_logprobs(model, [s], batch_size=1)[0] for s in sequences]
    assert batched == pytest.approx(alone, abs=1e-4)
    with torch.no_grad():
        logits = model(torch.tensor([sequences[1][0]])).logits[0]
    expected = sum(torch.log_softmax(logits[t - 1], -1)[sequences[1][0][t]].item() for t in (2, 3))
    assert alone[1] == pytest.approx(expected, abs=1e-4)


def test_deploy_needs_the_win_rate_threshold():
    assert should_deploy({"win_rate": 0.6}, 0.55)
    assert should_deploy({"win_rate": 0.55}, 0.55)
    assert not should_deploy({"win_rate": 0.5}, 0.55)


@pytest.fixture(scope="module")
def other_reward_model_path(tmp_path_factory, tiny_model_path_b):
    model, tokenizer = load_reward_model(str(tiny_model_path_b), device="cpu", dtype="float32")
    path = tmp_path_factory.mktemp("models") / "rm-previous"
    save_reward_model(model, tokenizer, path, RewardConfig(), {})
    return path


def test_each_judge_reports_a_win_rate_with_its_interval(
    tiny_model_path, tiny_model_path_b, tiny_reward_model_path, other_reward_model_path
):
    result = evaluate_policies(
        PROMPTS,
        str(tiny_model_path_b),
        str(tiny_model_path),
        str(tiny_reward_model_path),
        previous_reward_model_path=str(other_reward_model_path),
        sampling=SAMPLING,
    )
    assert set(result["judges"]) == {"new_reward_model", "previous_reward_model"}
    assert result["decided_by"] == "new_reward_model"
    for judge in result["judges"].values():
        low, high = judge["win_rate_ci"]
        assert 0 <= low <= judge["win_rate"] <= high <= 1 and judge["prompts"] == 4
    assert result["win_rate_ci"] == result["judges"]["new_reward_model"]["win_rate_ci"]
    verdicts = {judge["verdict"] for judge in result["judges"].values()}
    assert result["judges_disagree"] == (len(verdicts) > 1)


def test_the_interval_is_wide_on_few_prompts_and_narrows_with_more():
    few = bootstrap_interval([1, 0, 1, 0.5, 1, 0, 1, 1])
    many = bootstrap_interval([1, 0, 1, 0.5, 1, 0, 1, 1] * 16)
    assert few[0] < 0.5 < few[1]  # 8 prompts at 0.69 cannot tell a better policy from an equal one
    assert many[0] > 0.5  # the same rate on 128 prompts can
    assert many[1] - many[0] < (few[1] - few[0]) / 2
    assert bootstrap_interval([1.0] * 10) == [1.0, 1.0]
    assert bootstrap_interval([1, 0, 1, 0]) == bootstrap_interval([1, 0, 1, 0])  # a fixed seed: a stable report


def test_more_answers_per_prompt_compare_every_pair_and_still_resample_prompts():
    # 2 prompts, 2 answers each, sample-major: prompt 0's rewards are at 0 and 2, prompt 1's at 1 and 3.
    new, old = [3.0, 1.0, 0.0, 1.0], [1.0, 1.0, 2.0, 5.0]
    # prompt 0: new 3, 0 against old 1, 2 → wins 3>1, 3>2, losses 0<1, 0<2: 0.5; prompt 1: new 1, 1
    # against old 1, 5 → two ties and two losses: 0.25
    assert prompt_outcomes(new, old, samples=2) == [0.5, 0.25]
    report = judge_report(new, old, samples=2)
    assert report["prompts"] == 2 and report["win_rate"] == 0.375
    with pytest.raises(ValueError):
        prompt_outcomes([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], samples=2)
    # A policy whose answers vary: one answer per prompt gives a wide interval, four narrow it.
    import random

    rng = random.Random(0)
    draws = [[rng.gauss(0.3, 1.0) for _ in range(4 * 40)] for _ in range(2)]
    once = judge_report(draws[0][:40], draws[1][:40])
    four = judge_report(draws[0], draws[1], samples=4)
    width = lambda r: r["win_rate_ci"][1] - r["win_rate_ci"][0]  # noqa: E731
    assert four["prompts"] == once["prompts"] == 40
    assert width(four) < 0.75 * width(once)


def test_an_evaluation_with_two_answers_per_prompt_shows_every_prompt_first(tiny_model_path, tiny_reward_model_path):
    result = evaluate_policies(
        PROMPTS, str(tiny_model_path), str(tiny_model_path), str(tiny_reward_model_path), sampling=SAMPLING, samples=2
    )
    assert result["prompts"] == 4 and result["samples_per_prompt"] == 2
    assert len(result["rows"]) == 8
    assert [row["prompt"] for row in result["rows"][:4]] == [
        p if isinstance(p, list) else [{"role": "user", "content": p}] for p in PROMPTS
    ]
    assert result["judges"]["new_reward_model"]["prompts"] == 4


def test_the_deployed_policys_earlier_answers_are_judged_instead_of_new_ones(
    tiny_model_path, tiny_model_path_b, tiny_reward_model_path
):
    def evaluate(**options):
        paths = (str(tiny_model_path_b), str(tiny_model_path), str(tiny_reward_model_path))
        return evaluate_policies(PROMPTS, *paths, sampling=SAMPLING, **options)

    sampled = evaluate()
    earlier = [{"text": "An earlier answer.", "tokens": 3}] * len(PROMPTS)
    reused = evaluate(old_answers=earlier)
    assert reused["reused_old_answers"] and not sampled["reused_old_answers"]
    assert [r["old_answer"] for r in reused["rows"]] == ["An earlier answer."] * len(PROMPTS)
    assert reused["old_mean_length"] == 3 and all(r["old_tokens"] == 3 for r in reused["rows"])
    # The new policy's side is untouched: the same answers, and the same KL from the deployed policy.
    assert [r["new_answer"] for r in reused["rows"]] == [r["new_answer"] for r in sampled["rows"]]
    assert reused["kl"] == pytest.approx(sampled["kl"])
    scorer = RewardScorer(str(tiny_reward_model_path))  # scored again, as they read
    expected = scorer.score([r["prompt"] for r in reused["rows"]], [r["old_answer"] for r in reused["rows"]])
    assert [r["old_reward"] for r in reused["rows"]] == pytest.approx(expected)
    with pytest.raises(ValueError, match="one answer per prompt"):
        evaluate(old_answers=earlier[:1])


def test_judges_that_reach_different_verdicts_disagree():
    better = judge_report([1.0] * 20, [0.0] * 20)
    worse = judge_report([0.0] * 20, [1.0] * 20)
    assert (better["verdict"], worse["verdict"]) == ("better", "worse")
    assert judges_disagree({"new_reward_model": better, "previous_reward_model": worse})
    assert not judges_disagree({"new_reward_model": better, "previous_reward_model": dict(better)})


def test_two_reward_models_are_compared_on_the_same_human_rankings_with_a_paired_interval():
    # Per ranking (right pairs, pairs): the first model gets 5 of 6 right, the second 3 of 6.
    first = [(3.0, 3), (2.0, 3)] * 20
    second = [(2.0, 3), (1.0, 3)] * 20
    compared = accuracy_difference(first, second)
    assert compared["difference"] == pytest.approx(2 / 6)
    assert 0 < compared["difference_ci"][0] <= compared["difference"] <= compared["difference_ci"][1]
    same = accuracy_difference(first, first)
    assert same["difference"] == 0 and same["difference_ci"] == [0.0, 0.0]
    assert accuracy_report(first)["accuracy"] == pytest.approx(5 / 6)


def _judged(new_verdict: str, previous_verdict: str, difference_ci) -> dict:
    win = {"better": ([0.8, 0.95], 0.9), "no clear difference": ([0.4, 0.65], 0.5), "worse": ([0.05, 0.2], 0.1)}
    judges = {
        name: {"win_rate": win[verdict][1], "win_rate_ci": win[verdict][0], "verdict": verdict}
        for name, verdict in (("new_reward_model", new_verdict), ("previous_reward_model", previous_verdict))
    }
    result = {
        "judges": judges,
        "reward_models_compared": {"difference": sum(difference_ci) / 2, "difference_ci": difference_ci},
    }
    return {**result, **judges_weigh(result)}


def test_a_judge_that_orders_held_out_human_rankings_clearly_worse_does_not_hold_the_deploy_back():
    outranked = _judged("better", "no clear difference", [0.15, 0.28])  # the new model is the more accurate
    assert outranked["judges_disagree"] and outranked["judges_outranked"] == ["previous_reward_model"]
    assert outranked["decided_by"] == "new_reward_model" and should_deploy(outranked, 0.55)
    # Neither model is clearly more accurate: the disagreement leaves it to an admin.
    even = _judged("better", "no clear difference", [-0.05, 0.08])
    assert even["judges_disagree"] and not even["judges_outranked"] and not should_deploy(even, 0.55)
    # The previous model is clearly more accurate: it decides, on its own interval.
    older_knows_better = _judged("better", "worse", [-0.3, -0.1])
    assert older_knows_better["decided_by"] == "previous_reward_model"
    assert older_knows_better["win_rate_ci"] == [0.05, 0.2] and not should_deploy(older_knows_better, 0.55)


def test_the_deploy_gate_uses_the_lower_bound_and_waits_when_judges_disagree():
    assert not should_deploy({"win_rate": 0.7, "win_rate_ci": [0.45, 0.9]}, 0.55)  # a lucky sample
    assert should_deploy({"win_rate": 0.8, "win_rate_ci": [0.6, 0.95]}, 0.55)
    assert not should_deploy({"win_rate": 0.9, "win_rate_ci": [0.8, 1.0], "judges_disagree": True}, 0.55)
