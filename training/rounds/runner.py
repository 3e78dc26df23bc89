"""Running a round's stages: claim the next one, run it with progress, heartbeat and cancel, then
queue the one after.

    snapshot → sft → reward → policy → evaluate → deploy

A stage is claimed with a conditional UPDATE (pending → running), so a redelivered message runs
nothing twice. While it runs, a heartbeat thread stamps the stage every few seconds; a stage
whose heartbeat stops (the worker was killed or ran out of memory) is marked failed by the beat
task `rounds_fail_stale`, and the admin retries the round from that stage.
"""

import math
import threading
import time
import traceback

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from training.ml.common import TrainingCancelled
from training.rounds.models import Round, RoundMetric, RoundStage
from training.rounds.services import round_finish, round_stage_enqueue
from training.rounds.stages import STAGE_RUNNERS

HEARTBEAT_SECONDS = 5
PROGRESS_WRITE_SECONDS = 1.0


class StageReporter:
    """Progress and cancellation between a training function and the database."""

    def __init__(self, stage: RoundStage):
        self.stage = stage
        self._last_write = 0.0
        self._last_check = 0.0
        self._cancelled = False

    def progress(self, step: int, total: int, metrics: dict) -> None:
        numbers = {
            k: float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        }
        if numbers and step > 0:
            RoundMetric.objects.create(stage_id=self.stage.pk, step=step, values=numbers)
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_WRITE_SECONDS or step >= total:
            self._last_write = now
            RoundStage.objects.filter(pk=self.stage.pk).update(
                step=step, total=total, metrics={**self.stage.metrics, **numbers}, heartbeat_at=timezone.now()
            )
            self.stage.metrics = {**self.stage.metrics, **numbers}

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_check >= 1.0:
            self._last_check = now
            self._cancelled = Round.objects.filter(pk=self.stage.round_id, cancel_requested=True).exists()
        return self._cancelled

    def log(self, line: str) -> None:
        stamped = f"{timezone.now():%H:%M:%S} {line}\n"
        RoundStage.objects.filter(pk=self.stage.pk).update(log=Concat(F("log"), Value(stamped)))


class _Heartbeat:
    """Stamps the stage every few seconds from a thread, even during one long step."""

    def __init__(self, stage_id: int):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stage_id,), daemon=True)

    def _run(self, stage_id: int) -> None:
        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                RoundStage.objects.filter(pk=stage_id, status=RoundStage.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()

    def __enter__(self):
        # Another connection cannot see rows of a transaction that has not committed (only a test
        # runs a stage inside one), and on SQLite it would wait for that transaction's lock.
        if not connection.in_atomic_block:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=HEARTBEAT_SECONDS + 5)


def _claim(round_id: int) -> RoundStage | None:
    """Take the round's next pending stage, if the round is still live."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update().filter(pk=round_id).first()
        if round_ is None or round_.status not in (Round.Status.QUEUED, Round.Status.RUNNING):
            return None
        stage = round_.stages.filter(status=RoundStage.Status.PENDING).first()
        if stage is None or round_.stages.filter(status=RoundStage.Status.RUNNING).exists():
            return None
        if round_.cancel_requested:
            round_.stages.filter(status=RoundStage.Status.PENDING).update(status=RoundStage.Status.CANCELLED)
            round_finish(round_, Round.Status.CANCELLED)
            return None
        now = timezone.now()
        RoundStage.objects.filter(pk=stage.pk).update(
            status=RoundStage.Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1
        )
        if round_.status == Round.Status.QUEUED:
            Round.objects.filter(pk=round_.pk).update(status=Round.Status.RUNNING, started_at=round_.started_at or now)
        stage.refresh_from_db()
        return stage


def round_stage_run(*, round_id: int) -> str | None:
    """Run the round's next stage; enqueue the one after. Returns the stage's name, if any ran."""
    stage = _claim(round_id)
    if stage is None:
        return None
    round_ = Round.objects.select_related(
        "project", "base_policy", "sft_version", "reward_version", "policy_version"
    ).get(pk=round_id)
    reporter = StageReporter(stage)
    reporter.log(f"{stage.name} started (attempt {stage.attempts})")
    try:
        with _Heartbeat(stage.pk):
            outcome = STAGE_RUNNERS[stage.name](round_, stage, reporter)
    except TrainingCancelled:
        RoundStage.objects.filter(pk=stage.pk).update(status=RoundStage.Status.CANCELLED, finished_at=timezone.now())
        round_.stages.filter(status=RoundStage.Status.PENDING).update(status=RoundStage.Status.CANCELLED)
        round_finish(round_, Round.Status.CANCELLED)
        reporter.log("cancelled")
        return stage.name
    except Exception as error:
        # Recorded where the admin sees it, then re-raised so the worker logs the traceback too.
        message = f"{type(error).__name__}: {error}"
        RoundStage.objects.filter(pk=stage.pk).update(
            status=RoundStage.Status.FAILED,
            error=message,
            finished_at=timezone.now(),
            log=Concat(F("log"), Value(traceback.format_exc()[-4000:])),
        )
        round_finish(round_, Round.Status.FAILED, error=f"{stage.name}: {message}")
        raise
    finished = timezone.now()
    if outcome == "waiting":
        RoundStage.objects.filter(pk=stage.pk).update(status=RoundStage.Status.WAITING)
        round_finish(round_, Round.Status.AWAITING_DECISION)
        Round.objects.filter(pk=round_.pk).update(finished_at=None)
    else:
        RoundStage.objects.filter(pk=stage.pk).update(
            status=RoundStage.Status.SKIPPED if outcome == "skipped" else RoundStage.Status.SUCCEEDED,
            finished_at=finished,
        )
        if round_.stages.filter(status=RoundStage.Status.PENDING).exists():
            round_stage_enqueue(round_.pk)
        else:
            round_finish(round_, Round.Status.SUCCEEDED)
    reporter.log(f"{stage.name} {outcome or 'succeeded'}")
    return stage.name
