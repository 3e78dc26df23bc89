"""Writes for training rounds: start, cancel, retry, the admin's decision, failing stale stages.

A round is a state machine of stages (training.rounds.models.STAGES), each run by a Celery task on
the gpu queue (training.rounds.runner). A failed or cancelled round never touches the deployed
policy: only the deploy stage switches it, and only when the evaluation says the new policy wins
(or an admin decides so).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.translation import gettext

from labeling.errors import Conflict
from labeling.events import event_record
from labeling.models import Project
from training.registry import generation
from training.registry import selectors as registry_selectors
from training.registry import services as registry
from training.rounds.config import round_config_clean
from training.rounds.models import STAGES, Round, RoundMetric, RoundStage
from worker.queue import enqueue

logger = logging.getLogger(__name__)


def round_stage_enqueue(round_id: int) -> None:
    """Queue the round's next stage on the gpu queue, once the current transaction commits."""
    enqueue("worker.tasks.gpu_round_stage", round_id)


def round_start(*, project: Project, config=None, actor=None, enqueue: bool = True) -> Round:
    """Create the round and its stages and queue its first stage (enqueue=False: the caller runs
    the stages itself with round_stage_run, e.g. `start_round --here`)."""
    config = round_config_clean(config, project=project)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)  # one active round per project
        active = Round.objects.filter(project=project, status__in=Round.ACTIVE).first()
        if active is not None:
            raise Conflict(
                gettext("Round %(number)s of %(project)s is still %(status)s.")
                % {"number": active.number, "project": project.name, "status": active.get_status_display()}
            )
        base = registry_selectors.deployed_policy(project=project)
        if base is None:
            raise Conflict(
                gettext("%(project)s has no deployed policy to start from; register and deploy one first.")
                % {"project": project.name}
            )
        number = (Round.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        round_ = Round.objects.create(project=project, number=number, config=config, base_policy=base, created_by=actor)
        RoundStage.objects.bulk_create(RoundStage(round=round_, name=name, position=i) for i, name in enumerate(STAGES))
        event_record(
            actor=actor, verb="round.started", project=project, payload={"round_id": round_.pk, "number": number}
        )
        if enqueue:
            round_stage_enqueue(round_.pk)
    return round_


def round_cancel(*, round_: Round, actor=None) -> Round:
    """The running stage stops at its next step; a round with nothing running stops now."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update().get(pk=round_.pk)
        if round_.status not in Round.ACTIVE:
            raise Conflict(
                gettext("Round %(number)s is already %(status)s.") % {"number": round_.number, "status": round_.status}
            )
        round_.cancel_requested = True
        round_.save(update_fields=["cancel_requested"])
        if not round_.stages.filter(status=RoundStage.Status.RUNNING).exists():
            round_.stages.filter(status__in=[RoundStage.Status.PENDING, RoundStage.Status.WAITING]).update(
                status=RoundStage.Status.CANCELLED, finished_at=timezone.now()
            )
            round_finish(round_, Round.Status.CANCELLED)
        event_record(
            actor=actor, verb="round.cancel_requested", project=round_.project, payload={"round_id": round_.pk}
        )
    return round_


def round_retry(*, round_: Round, actor=None) -> Round:
    """Run a failed or cancelled round again from the stage that did not finish."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update().get(pk=round_.pk)
        if round_.status not in (Round.Status.FAILED, Round.Status.CANCELLED):
            raise Conflict(
                gettext("Only failed or cancelled rounds can be retried; round %(number)s is %(status)s.")
                % {"number": round_.number, "status": round_.status}
            )
        if Round.objects.filter(project=round_.project_id, status__in=Round.ACTIVE).exists():
            raise Conflict(gettext("Another round of this project is active; wait for it or cancel it first."))
        first = round_.stages.exclude(status__in=[RoundStage.Status.SUCCEEDED, RoundStage.Status.SKIPPED]).first()
        round_.stages.filter(position__gte=first.position).update(
            status=RoundStage.Status.PENDING, step=0, total=0, error="", finished_at=None, heartbeat_at=None
        )
        RoundMetric.objects.filter(stage__round=round_, stage__position__gte=first.position).delete()
        round_.status, round_.error, round_.cancel_requested, round_.finished_at = Round.Status.QUEUED, "", False, None
        round_.save(update_fields=["status", "error", "cancel_requested", "finished_at"])
        event_record(
            actor=actor,
            verb="round.retried",
            project=round_.project,
            payload={"round_id": round_.pk, "from_stage": first.name},
        )
        round_stage_enqueue(round_.pk)
    return round_


def round_decide(*, round_: Round, deploy: bool, actor) -> Round:
    """The admin's decision on a round whose policy did not clear the threshold by itself."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update(of=("self",)).select_related("policy_version").get(pk=round_.pk)
        if round_.status != Round.Status.AWAITING_DECISION:
            raise Conflict(gettext("Round %(number)s is not waiting for a decision.") % {"number": round_.number})
        stage = round_.stages.get(name="deploy")
        if deploy:
            round_deploy_and_generate(round_, actor=actor)
        stage.status, stage.finished_at = RoundStage.Status.SUCCEEDED, timezone.now()
        stage.metrics = {
            **stage.metrics,
            "decision": "deployed" if deploy else "kept the current policy",
            "by": str(actor),
        }
        stage.save(update_fields=["status", "finished_at", "metrics"])
        round_finish(round_, Round.Status.SUCCEEDED)
        event_record(
            actor=actor, verb="round.decided", project=round_.project, payload={"round_id": round_.pk, "deploy": deploy}
        )
    return round_


def rounds_fail_stale() -> int:
    """Stages whose worker went silent are failed, with their rounds, so nothing stays 'running'."""
    limit = timezone.now() - timedelta(seconds=settings.ROUND_STALE_SECONDS)
    stale = RoundStage.objects.filter(status=RoundStage.Status.RUNNING).filter(
        Q(heartbeat_at__lt=limit) | Q(heartbeat_at__isnull=True, started_at__lt=limit)
    )
    count = 0
    for stage in stale.select_related("round"):
        message = (
            f"The worker running this stage stopped responding (last heartbeat "
            f"{stage.heartbeat_at or stage.started_at:%Y-%m-%d %H:%M:%S} UTC); it was probably killed "
            "or ran out of memory. Retry the round to run this stage again."
        )
        if RoundStage.objects.filter(pk=stage.pk, status=RoundStage.Status.RUNNING).update(
            status=RoundStage.Status.FAILED, error=message, finished_at=timezone.now()
        ):
            round_finish(stage.round, Round.Status.FAILED, error=f"{stage.name}: {message}")
            _ray_job_stop(stage)
            count += 1
    return count


def _ray_job_stop(stage: RoundStage) -> None:
    """A stage that ran on a Ray cluster keeps running there after its worker died: stop its job."""
    execution = (stage.round.config or {}).get("execution") or {}
    if execution.get("executor") != "ray":
        return
    from training.rounds.executors import ray_job_stop, stage_key

    key = stage_key(prefix=settings.RAY_JOB_PREFIX, round_id=stage.round_id, stage=stage.name, attempt=stage.attempts)
    if not ray_job_stop(key):
        logger.warning("round %s: could not stop the Ray job %s of its stale stage", stage.round_id, key)


def round_finish(round_: Round, status: str, *, error: str = "") -> None:
    Round.objects.filter(pk=round_.pk).update(status=status, error=error, finished_at=timezone.now())
    round_.status, round_.error = status, error


def round_deploy_and_generate(round_: Round, *, actor) -> None:
    """Deploy the round's policy and start the next labeling round's candidates from it."""
    registry.policy_deploy(version=round_.policy_version, actor=actor)
    Round.objects.filter(pk=round_.pk).update(deployed=True)
    # The next round's candidates come from the new policy: the loop is closed. A job of the
    # older policy still queued or running (it paused for this round) gives way to it.
    try:
        generation.generation_job_start(project=round_.project, actor=actor, supersede_older=True)
    except Conflict:
        pass  # the new policy already has a job queued or running
