"""Reads about rounds: what a round that has not started its next stage is waiting for, and the
evaluation a version's deploy confirmation shows."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from training.ml.evaluate import should_deploy
from training.registry.models import GenerationJob, ModelVersion
from training.registry.selectors import generation_job_time_left
from training.rounds.models import Round, RoundStage

# A round queued this long with nothing ahead of it probably has no gpu worker to run it.
NO_WORKER_AFTER = timedelta(seconds=60)


def round_stage_waiting_for_gpu() -> RoundStage | None:
    """The next stage of a queued or running round that has no stage running: its message is on
    the gpu queue, and a generation job pauses for it (training.registry.generation)."""
    return (
        RoundStage.objects.filter(
            status=RoundStage.Status.PENDING, round__status__in=(Round.Status.QUEUED, Round.Status.RUNNING)
        )
        .exclude(round__stages__status=RoundStage.Status.RUNNING)
        .order_by("round_id", "position")
        .first()
    )


def round_waiting_for(*, round_: Round, now=None) -> str | None:
    """In words, why an active round has no stage running: the gpu queue serves one job at a
    time; a generation job pauses for a round within seconds, another round's stage does not.
    None while a stage runs."""
    if round_.status not in Round.ACTIVE or round_.stages.filter(status=RoundStage.Status.RUNNING).exists():
        return None
    now = now or timezone.now()
    job = GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING).select_related("project").first()
    if job is not None:
        next_stage = round_.stages.filter(status=RoundStage.Status.PENDING).first()
        if next_stage is not None and job.yielded_to_stage != next_stage.pk:
            return gettext(
                "Waiting for the gpu worker: %(job)s, pauses within seconds so that this round goes first."
            ) % {"job": _job_progress(job, now)}
        return gettext("Waiting for the gpu worker: %(job)s. The round's next stage starts after it.") % {
            "job": _job_progress(job, now)
        }
    other = (
        RoundStage.objects.filter(status=RoundStage.Status.RUNNING)
        .exclude(round=round_)
        .select_related("round__project")
        .first()
    )
    if other is not None:
        return gettext(
            "Waiting for the gpu worker: round %(number)s of %(project)s is running its %(stage)s stage "
            "(%(step)s / %(total)s steps)."
        ) % {
            "number": other.round.number,
            "project": other.round.project.name,
            "stage": other.name,
            "step": other.step,
            "total": other.total or "?",
        }
    # Queued since the round started, or since its last stage ended (the next stage's message is
    # then seconds old, however long the round has run).
    last_ended = round_.stages.aggregate(last=Max("finished_at"))["last"]
    since = max(filter(None, (round_.started_at or round_.created_at, last_ended)))
    if now - since > NO_WORKER_AFTER:
        return gettext(
            "Queued on the gpu queue, and no gpu worker has taken it yet: is one running "
            "(celery -A worker.celery worker --queues gpu)?"
        )
    return gettext("Queued on the gpu queue.")


def _job_progress(job: GenerationJob, now) -> str:
    text = gettext("generation job %(job)s of %(project)s, %(done)s / %(total)s prompts") % {
        "job": job.pk,
        "project": job.project.name,
        "done": job.prompts_done,
        "total": job.prompts_total,
    }
    left = generation_job_time_left(job, now=now)
    if left is not None:
        text += gettext(", about %(minutes)s min left") % {"minutes": max(1, round(left / timedelta(minutes=1)))}
    return text


JUDGES = {
    "new_reward_model": gettext_lazy("this round's reward model"),
    "previous_reward_model": gettext_lazy("the previous round's reward model"),
}


@dataclass(frozen=True)
class VersionEvaluation:
    """A round's evaluation of the policy it made, as the deploy confirmation shows it."""

    round: Round
    win_rate: float
    interval: tuple[float, float] | None  # 95% bootstrap interval over the prompts
    judge: str  # the judge that decided, in words
    prompts: int | None
    threshold: float  # the project's deploy threshold now
    round_threshold: float  # the one the round was started with
    passed: bool  # the interval's lower bound reaches the threshold, and no credible judge disagrees
    judges_block: bool  # the judges disagree and that alone keeps it from passing
    compared_with: ModelVersion  # the policy deployed when the round started

    @property
    def lower_bound(self) -> float:
        return self.interval[0] if self.interval else self.win_rate


def version_evaluation(*, version: ModelVersion) -> VersionEvaluation | None:
    """The evaluation of the round that made this policy, judged against the project's deploy
    threshold as it is now (training.ml.evaluate.should_deploy, the rule the deploy stage
    applies); None for a version no round evaluated (a base model, a round's SFT model)."""
    round_ = (
        Round.objects.filter(policy_version=version)
        .exclude(evaluation={})
        .select_related("project", "base_policy")
        .order_by("-id")
        .first()
    )
    if round_ is None or "win_rate" not in round_.evaluation:
        return None
    evaluation = round_.evaluation
    threshold = round_.project.deploy_threshold
    interval = evaluation.get("win_rate_ci")
    blocks = bool(evaluation.get("disagreement_blocks_deploy", evaluation.get("judges_disagree")))
    decided_by = evaluation.get("decided_by", "new_reward_model")
    return VersionEvaluation(
        round=round_,
        win_rate=evaluation["win_rate"],
        interval=tuple(interval) if interval else None,
        judge=JUDGES.get(decided_by, decided_by),
        prompts=evaluation.get("prompts"),
        threshold=threshold,
        round_threshold=round_.config.get("deploy", {}).get("threshold", threshold),
        passed=should_deploy(evaluation, threshold),
        judges_block=blocks,
        compared_with=round_.base_policy,
    )


def round_awaiting_decision_on(*, version: ModelVersion) -> Round | None:
    """The round that made this policy, if it waits for an admin to deploy it or keep the current one."""
    return Round.objects.filter(policy_version=version, status=Round.Status.AWAITING_DECISION).first()
