"""A round's last two stages: the evaluation and the deploy decision.

The evaluation compares the new policy with the deployed one on the project's frozen evaluation
split (training.ml.evaluate: both answer the same prompts, each judge's win rate comes with a 95%
bootstrap interval), and judges both on the split's human rankings (training.ml.held_out: the
reward models' accuracy, the policy's implicit-reward accuracy). The deploy stage deploys the new
policy when the deciding judge's lower bound clears the threshold, else waits for an admin.
Runners as in training.rounds.stages: (round, stage, reporter) → outcome.
"""

import random

from labeling.models import Prompt
from training.datasets.services import snapshot_file
from training.ml.common import load_records
from training.ml.store import CheckpointMissing
from training.registry import services as registry
from training.registry.models import ModelVersion
from training.rounds.models import Round
from training.rounds.services import round_deploy_and_generate

JUDGES = {"new_reward_model": "the new reward model", "previous_reward_model": "the previous round's reward model"}


def _evaluation_prompts(round_, count: int, seed: int) -> tuple[list[list[dict]], str]:
    """The project's frozen evaluation split ("frozen"): the same prompts, lowest ids first, for
    every round, so round N and N+1 are compared on the same ground. A project without one (its
    held-out share is 0) falls back to prompts this round did not train on ("unseen"), else to a
    fixed sample of all ("all")."""
    split = Prompt.objects.filter(project=round_.project, held_out=True).order_by("id")
    frozen = list(split.values_list("messages", flat=True)[:count])
    if frozen:
        return frozen, "frozen"
    trained_on = set()
    for snapshot in round_.snapshots.all():
        for row in load_records(snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0]):
            prompt = row.get("prompt") or row.get("messages", [])[:-1]
            trained_on.add(repr(prompt))
    prompts = [p.messages for p in Prompt.objects.filter(project=round_.project).order_by("id")]
    held_out = [p for p in prompts if repr(p) not in trained_on]
    chosen, split = (held_out, "unseen") if len(held_out) >= count else (prompts, "all")
    return random.Random(seed).sample(chosen, min(count, len(chosen))), split


def _previous_reward_model_path(round_) -> str | None:
    """The reward model of the round that made the deployed policy: a second judge, one the new
    policy never trained against. None for a base policy (no round made it)."""
    made_it = (
        Round.objects.filter(project=round_.project_id, policy_version=round_.base_policy_id)
        .exclude(reward_version=None)
        .select_related("reward_version")
        .first()
    )
    if made_it is None:
        return None
    try:
        return str(registry.model_version_fetch(made_it.reward_version))
    except CheckpointMissing:
        return None


def _deployed_policys_answers(round_, prompts, samples: int, sampling) -> list[dict] | None:
    """The deployed policy's answers from the evaluation of the round that made it, when that
    evaluation asked the same prompts, as often, with the same sampling: the deployed policy need
    not answer them again (on 2 cores that is half the stage). None otherwise (a base policy, a
    policy deployed by hand, other settings, or a split that has grown since)."""
    from training.ml.evaluate import as_conversation

    made_it = (
        Round.objects.filter(project=round_.project_id, policy_version=round_.base_policy_id)
        .exclude(pk=round_.pk)
        .order_by("-id")
        .first()
    )
    evaluation = (made_it.evaluation if made_it else None) or {}
    rows = evaluation.get("rows") or []
    asked = [as_conversation(p) for _ in range(samples) for p in prompts]
    if (
        evaluation.get("samples_per_prompt", 1) != samples
        or evaluation.get("sampling") != sampling.as_dict()
        or [row.get("prompt") for row in rows] != asked
        or not all("new_tokens" in row for row in rows)
    ):
        return None
    return [{"text": row["new_answer"], "tokens": row["new_tokens"]} for row in rows]


def _held_out_rankings(round_, limit: int):
    """The frozen split's human rankings (the same rows a researcher's `only_held_out` export holds),
    lowest task ids first, at most `limit`."""
    from types import SimpleNamespace

    from training.datasets.exports.rows import ranking_rows
    from training.ml.reward_data import rankings_from_records

    selection = SimpleNamespace(
        project=round_.project, filters={"only_held_out": True, "exclude_none_acceptable": True}
    )
    rows = []
    for row in ranking_rows(selection, lambda done: None):
        if len(rows) >= limit:
            break
        rows.append(row)
    return rankings_from_records(rows)


def _held_out_judges(round_, reporter, limit: int, previous: str | None) -> dict:
    """The reward models' accuracy and the policy's implicit-reward accuracy on the held-out human
    rankings, each with a 95% interval."""
    from training.ml.held_out import (
        accuracy_difference,
        accuracy_report,
        implicit_reward_accuracy,
        reward_model_outcomes,
    )

    rankings = _held_out_rankings(round_, limit) if limit else []
    reporter.log(f"held-out human rankings: {len(rankings)}")
    new = reward_model_outcomes(rankings, round_.reward_version.path)
    judged = {
        "reward_model_accuracy": accuracy_report(new),
        "implicit_reward_accuracy": implicit_reward_accuracy(
            rankings, round_.policy_version.path, round_.sft_version.path
        ),
    }
    if previous:
        old = reward_model_outcomes(rankings, previous)
        judged["previous_reward_model_accuracy"] = accuracy_report(old)
        judged["reward_models_compared"] = accuracy_difference(new, old)
    return judged


def run_evaluate(round_, stage, reporter) -> str:
    from training.ml.evaluate import evaluate_policies, judges_weigh, sampling_from

    settings_ = round_.config["evaluate"]
    for version in (round_.policy_version, round_.base_policy, round_.reward_version, round_.sft_version):
        registry.model_version_fetch(version)  # from MODEL_STORE_URL, where this host has no copy
    prompts, split = _evaluation_prompts(round_, settings_["prompts"], settings_["seed"])
    previous = _previous_reward_model_path(round_)  # the second judge, for the win rate and the rankings
    samples = settings_.get("samples", 1)  # rounds stored before the setting existed answered once
    reporter.progress(0, 2, {})
    result = evaluate_policies(
        prompts,
        str(round_.policy_version.path),
        str(round_.base_policy.path),
        str(round_.reward_version.path),
        previous_reward_model_path=previous,
        sampling=sampling_from(settings_),
        samples=samples,
        old_answers=_deployed_policys_answers(round_, prompts, samples, sampling_from(settings_)),
    )
    result["held_out_prompts"] = split != "all"
    result["evaluation_split"] = split
    reporter.progress(1, 2, {"win_rate": result["win_rate"]})
    result.update(_held_out_judges(round_, reporter, settings_.get("rankings", 512), previous))
    result.update(judges_weigh(result))  # the human rankings say which judge to trust
    summary = {k: v for k, v in result.items() if not isinstance(v, list | dict)}
    summary.update(
        {k: result[k]["accuracy"] for k in ("reward_model_accuracy", "implicit_reward_accuracy") if k in result}
    )
    reporter.progress(2, 2, summary)
    Round.objects.filter(pk=round_.pk).update(evaluation=result)
    ModelVersion.objects.filter(pk=round_.policy_version_id).update(
        metrics={**round_.policy_version.metrics, "evaluation": summary}
    )
    return "succeeded"


def run_deploy(round_, stage, reporter) -> str:
    from training.ml.evaluate import should_deploy

    round_.refresh_from_db()
    threshold = round_.config["deploy"]["threshold"]
    evaluation = round_.evaluation
    wins = should_deploy(evaluation, threshold)
    low = evaluation.get("win_rate_ci", [evaluation.get("win_rate", 0.0)])[0]
    reporter.progress(1, 1, {"win_rate": evaluation.get("win_rate", 0.0), "win_rate_low": low, "threshold": threshold})
    judge = evaluation.get("decided_by", "new_reward_model")
    verdict = f"win rate {evaluation.get('win_rate', 0):.2f} (95% interval from {low:.2f}) under {JUDGES[judge]}"
    if evaluation.get("judges_disagree"):
        others = [JUDGES[name] for name in evaluation.get("judges", {}) if name != judge]
        verdict += f"; {' and '.join(others)} disagrees"
        if evaluation.get("judges_outranked") and not evaluation.get("disagreement_blocks_deploy"):
            verdict += ", but orders the held-out human rankings clearly worse, so it does not decide"
    if wins and round_.config["deploy"]["auto"]:
        round_deploy_and_generate(round_, actor=round_.created_by)
        reporter.log(f"deployed {round_.policy_version}: {verdict}; lower bound ≥ {threshold}")
        return "succeeded"
    reporter.log(f"{verdict}, threshold {threshold} for the lower bound: waiting for an admin")
    return "waiting"
