"""Reads about rounds: what a round that has not started its next stage is waiting for."""

from datetime import timedelta

from django.utils import timezone

from training.registry.models import GenerationJob
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
            return (
                f"Waiting for the gpu worker: {_job_progress(job, now)}, pauses within seconds "
                "so that this round goes first."
            )
        return f"Waiting for the gpu worker: {_job_progress(job, now)}. The round's next stage starts after it."
    other = (
        RoundStage.objects.filter(status=RoundStage.Status.RUNNING)
        .exclude(round=round_)
        .select_related("round__project")
        .first()
    )
    if other is not None:
        return (
            f"Waiting for the gpu worker: round {other.round.number} of {other.round.project.name} is running "
            f"its {other.name} stage ({other.step} / {other.total or '?'} steps)."
        )
    since = round_.started_at or round_.created_at
    if now - since > NO_WORKER_AFTER:
        return (
            "Queued on the gpu queue, and no gpu worker has taken it yet: is one running "
            "(celery -A worker.celery worker --queues gpu)?"
        )
    return "Queued on the gpu queue."


def _job_progress(job: GenerationJob, now) -> str:
    text = f"generation job {job.pk} of {job.project.name}, {job.prompts_done} / {job.prompts_total} prompts"
    if job.started_at and job.prompts_done and job.prompts_total > job.prompts_done:
        per_prompt = (now - job.started_at) / job.prompts_done
        minutes = per_prompt * (job.prompts_total - job.prompts_done) / timedelta(minutes=1)
        text += f", about {max(1, round(minutes))} min left"
    return text
