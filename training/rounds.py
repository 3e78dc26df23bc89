"""Training rounds as a state machine of stages, each run by a Celery task on the gpu queue.

    snapshot → sft → reward → policy → evaluate → deploy

A stage is claimed with a conditional UPDATE (pending → running), so a redelivered message runs
nothing twice. While it runs, a heartbeat thread stamps the stage every few seconds; a stage
whose heartbeat stops (the worker was killed or ran out of memory) is marked failed by the beat
task `rounds_fail_stale`, and the admin retries the round from that stage. A failed or cancelled
round never touches the deployed policy: only the deploy stage switches it, and only when the
evaluation says the new policy wins (or an admin decides so).
"""

import dataclasses
import math
import shutil
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from labeling.errors import Conflict, LabelingError
from labeling.models import Project, Prompt
from labeling.services import event_record
from training import selectors
from training import services as registry
from training.ml.common import TrainingCancelled, load_records
from training.ml.reward import RewardConfig, rankings_from_records, train_reward_model
from training.models import ModelVersion
from training.round_models import STAGES, Round, RoundMetric, RoundStage
from training.snapshots import snapshot_build, snapshot_create, snapshot_file

HEARTBEAT_SECONDS = 5
PROGRESS_WRITE_SECONDS = 1.0


# --- configuration -----------------------------------------------------------------------------


def _stage_configs() -> dict:
    from training.ml.policy import PolicyConfig
    from training.ml.sft import SFTStageConfig

    return {"sft": SFTStageConfig, "reward": RewardConfig, "policy": PolicyConfig}


# A round's defaults, on top of each stage's own: sized so that one round on the demo project
# finishes on a 2-core CPU with SmolLM2-135M in well under 15 minutes. On GPUs, raise them.
ROUND_DEFAULTS = {
    "sft": {"epochs": 2, "learning_rate": 5e-5, "max_length": 512},
    "reward": {"epochs": 2, "learning_rate": 2e-5, "max_prompt_tokens": 512, "max_answer_tokens": 192},
    "policy": {
        "steps": 8,
        "learning_rate": 2e-6,
        "prompts_per_step": 2,
        "generations_per_prompt": 4,
        "max_completion_length": 48,
    },
}
EVALUATE_DEFAULTS = {"prompts": 8, "max_new_tokens": 96, "temperature": 0.7, "seed": 0}
DATA_DEFAULTS = {"exclude_flagged": False, "exclude_none_acceptable": True, "min_agreement": None}


def _typed(value, default, where: str):
    """A config value of the same type as its default (ints may be given for floats)."""
    if default is None:
        return value
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise LabelingError(f"{where} must be a {expected.__name__}, not {value!r}.", field="config")
    return value


def _section_clean(name: str, raw, defaults: dict) -> dict:
    if raw is None:
        return dict(defaults)
    if not isinstance(raw, dict):
        raise LabelingError(f"config.{name} must be an object.", field="config")
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise LabelingError(
            f"config.{name} has no setting {unknown[0]!r}; it has {', '.join(sorted(defaults))}.", field="config"
        )
    return {
        key: _typed(raw.get(key, default), default, f"config.{name}.{key}") if key in raw else default
        for key, default in defaults.items()
    }


def round_config_clean(raw, *, project: Project) -> dict:
    """Every stage's settings with defaults filled in; unknown or mistyped settings are refused."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise LabelingError("config must be an object.", field="config")
    sections = {"data", "sft", "reward", "policy", "evaluate", "deploy"}
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise LabelingError(
            f"config has no section {unknown[0]!r}; it has {', '.join(sorted(sections))}.", field="config"
        )
    config = {
        name: _section_clean(name, raw.get(name), {**dataclasses.asdict(cls()), **ROUND_DEFAULTS.get(name, {})})
        for name, cls in _stage_configs().items()
    }
    config["data"] = _section_clean("data", raw.get("data"), DATA_DEFAULTS)
    config["evaluate"] = _section_clean("evaluate", raw.get("evaluate"), EVALUATE_DEFAULTS)
    config["deploy"] = _section_clean(
        "deploy", raw.get("deploy"), {"auto": True, "threshold": project.deploy_threshold}
    )
    if config["policy"].get("algorithm") not in ("rloo", "grpo", "dpo"):
        raise LabelingError("config.policy.algorithm must be rloo, grpo or dpo.", field="config")
    if not 0 <= config["deploy"]["threshold"] <= 1:
        raise LabelingError("config.deploy.threshold is a win rate from 0 to 1.", field="config")
    return config


# --- starting, cancelling, retrying ----------------------------------------------------------


def _enqueue(round_id: int) -> None:
    from worker.tasks import gpu_round_stage

    transaction.on_commit(lambda: gpu_round_stage.delay(round_id))


def round_start(*, project: Project, config=None, actor=None, enqueue: bool = True) -> Round:
    """Create the round and its stages and queue its first stage (enqueue=False: the caller runs
    the stages itself with round_stage_run, e.g. `start_round --here`)."""
    config = round_config_clean(config, project=project)
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)  # one active round per project
        active = Round.objects.filter(project=project, status__in=Round.ACTIVE).first()
        if active is not None:
            raise Conflict(f"Round {active.number} of {project.name} is still {active.get_status_display()}.")
        base = selectors.deployed_policy(project=project)
        if base is None:
            raise Conflict(f"{project.name} has no deployed policy to start from; register and deploy one first.")
        number = (Round.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0) + 1
        round_ = Round.objects.create(project=project, number=number, config=config, base_policy=base, created_by=actor)
        RoundStage.objects.bulk_create(RoundStage(round=round_, name=name, position=i) for i, name in enumerate(STAGES))
        event_record(
            actor=actor, verb="round.started", project=project, payload={"round_id": round_.pk, "number": number}
        )
        if enqueue:
            _enqueue(round_.pk)
    return round_


def round_cancel(*, round_: Round, actor=None) -> Round:
    """The running stage stops at its next step; a round with nothing running stops now."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update().get(pk=round_.pk)
        if round_.status not in Round.ACTIVE:
            raise Conflict(f"Round {round_.number} is already {round_.status}.")
        round_.cancel_requested = True
        round_.save(update_fields=["cancel_requested"])
        if not round_.stages.filter(status=RoundStage.Status.RUNNING).exists():
            round_.stages.filter(status__in=[RoundStage.Status.PENDING, RoundStage.Status.WAITING]).update(
                status=RoundStage.Status.CANCELLED, finished_at=timezone.now()
            )
            _round_finish(round_, Round.Status.CANCELLED)
        event_record(
            actor=actor, verb="round.cancel_requested", project=round_.project, payload={"round_id": round_.pk}
        )
    return round_


def round_retry(*, round_: Round, actor=None) -> Round:
    """Run a failed or cancelled round again from the stage that did not finish."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update().get(pk=round_.pk)
        if round_.status not in (Round.Status.FAILED, Round.Status.CANCELLED):
            raise Conflict(f"Only failed or cancelled rounds can be retried; round {round_.number} is {round_.status}.")
        if Round.objects.filter(project=round_.project_id, status__in=Round.ACTIVE).exists():
            raise Conflict("Another round of this project is active; wait for it or cancel it first.")
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
        _enqueue(round_.pk)
    return round_


def round_decide(*, round_: Round, deploy: bool, actor) -> Round:
    """The admin's decision on a round whose policy did not clear the threshold by itself."""
    with transaction.atomic():
        round_ = Round.objects.select_for_update(of=("self",)).select_related("policy_version").get(pk=round_.pk)
        if round_.status != Round.Status.AWAITING_DECISION:
            raise Conflict(f"Round {round_.number} is not waiting for a decision.")
        stage = round_.stages.get(name="deploy")
        if deploy:
            _deploy_and_generate(round_, actor=actor)
        stage.status, stage.finished_at = RoundStage.Status.SUCCEEDED, timezone.now()
        stage.metrics = {
            **stage.metrics,
            "decision": "deployed" if deploy else "kept the current policy",
            "by": str(actor),
        }
        stage.save(update_fields=["status", "finished_at", "metrics"])
        _round_finish(round_, Round.Status.SUCCEEDED)
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
            _round_finish(stage.round, Round.Status.FAILED, error=f"{stage.name}: {message}")
            count += 1
    return count


def _round_finish(round_: Round, status: str, *, error: str = "") -> None:
    Round.objects.filter(pk=round_.pk).update(status=status, error=error, finished_at=timezone.now())
    round_.status, round_.error = status, error


# --- running stages ----------------------------------------------------------------------------


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
        from django.db import connection

        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                RoundStage.objects.filter(pk=stage_id, status=RoundStage.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()

    def __enter__(self):
        from django.db import connection

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
            _round_finish(round_, Round.Status.CANCELLED)
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
        _round_finish(round_, Round.Status.CANCELLED)
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
        _round_finish(round_, Round.Status.FAILED, error=f"{stage.name}: {message}")
        raise
    finished = timezone.now()
    if outcome == "waiting":
        RoundStage.objects.filter(pk=stage.pk).update(status=RoundStage.Status.WAITING)
        _round_finish(round_, Round.Status.AWAITING_DECISION)
        Round.objects.filter(pk=round_.pk).update(finished_at=None)
    else:
        RoundStage.objects.filter(pk=stage.pk).update(
            status=RoundStage.Status.SKIPPED if outcome == "skipped" else RoundStage.Status.SUCCEEDED,
            finished_at=finished,
        )
        if round_.stages.filter(status=RoundStage.Status.PENDING).exists():
            _enqueue(round_.pk)
        else:
            _round_finish(round_, Round.Status.SUCCEEDED)
    reporter.log(f"{stage.name} {outcome or 'succeeded'}")
    return stage.name


def _stage_dir(round_: Round, name: str) -> Path:
    folder = Path(settings.MODEL_STORE) / "projects" / str(round_.project_id) / f"round-{round_.number}" / name
    shutil.rmtree(folder, ignore_errors=True)  # a retried stage starts clean
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def _snapshot_path(round_: Round, kind: str) -> tuple[Path, int]:
    snapshot = round_.snapshots.get(kind=kind)
    return snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0], snapshot.counts.get("rows", 0)


def _run_snapshot(round_, stage, reporter) -> str:
    """Freeze what the round trains on, with the same code as the research exports."""
    data = round_.config["data"]
    filters = {k: v for k, v in data.items() if v not in (None, False)}
    round_.snapshots.clear()
    counts = {}
    kinds = ["sft", "ranking"] + (["preference"] if round_.config["policy"]["algorithm"] == "dpo" else [])
    for i, kind in enumerate(kinds, start=1):
        snapshot = snapshot_create(
            project=round_.project, kind=kind, format="jsonl", filters=filters, actor=round_.created_by
        )
        snapshot_build(snapshot_id=snapshot.pk)
        snapshot.refresh_from_db()
        round_.snapshots.add(snapshot)
        counts[f"{kind}_rows"] = snapshot.counts["rows"]
        reporter.progress(i, len(kinds), {f"{kind}_rows": snapshot.counts["rows"]})
        reporter.log(f"snapshot {snapshot.pk}: {snapshot.counts['rows']} {kind} rows")
    if counts["ranking_rows"] < 2:
        raise LabelingError(
            f"The reward model needs at least 2 rankings; the snapshot has {counts['ranking_rows']}. "
            "Label more ranking tasks first."
        )
    RoundStage.objects.filter(pk=stage.pk).update(metrics=counts)
    return "succeeded"


def _register(round_, folder: Path, *, kind: str, name: str, parent, metrics: dict) -> ModelVersion:
    version, _ = registry.model_version_register(
        project=round_.project,
        path=folder,
        name=name,
        kind=kind,
        parent=parent,
        round_number=round_.number,
        config={"round_id": round_.pk},
        metrics=metrics,
        actor=round_.created_by,
    )
    return version


def _run_sft(round_, stage, reporter) -> str:
    from training.ml.sft import SFTStageConfig, train_sft

    path, rows = _snapshot_path(round_, "sft")
    if rows == 0:
        Round.objects.filter(pk=round_.pk).update(sft_version=round_.base_policy)
        reporter.log("no demonstrations: the deployed policy stands in for the SFT model")
        return "skipped"
    folder = _stage_dir(round_, "sft")
    metrics = train_sft(
        load_records(path),
        str(round_.base_policy.path),
        str(folder),
        SFTStageConfig(**round_.config["sft"]),
        progress=reporter.progress,
        should_stop=reporter.should_stop,
    )
    version = _register(
        round_,
        folder,
        kind=ModelVersion.Kind.POLICY,
        name=f"round {round_.number} SFT",
        parent=round_.base_policy,
        metrics=metrics,
    )
    Round.objects.filter(pk=round_.pk).update(sft_version=version)
    return "succeeded"


def _run_reward(round_, stage, reporter) -> str:
    path, _ = _snapshot_path(round_, "ranking")
    folder = _stage_dir(round_, "reward")
    sft = round_.sft_version
    metrics = train_reward_model(
        rankings_from_records(load_records(path)),
        str(sft.path),
        str(folder),
        RewardConfig(**round_.config["reward"]),
        progress=reporter.progress,
        should_stop=reporter.should_stop,
    )
    version = _register(
        round_,
        folder,
        kind=ModelVersion.Kind.REWARD,
        name=f"round {round_.number} reward model",
        parent=sft,
        metrics=metrics,
    )
    Round.objects.filter(pk=round_.pk).update(reward_version=version)
    return "succeeded"


def _run_policy(round_, stage, reporter) -> str:
    from training.ml.policy import PolicyConfig, optimize_policy

    config = PolicyConfig(**round_.config["policy"])
    kind = "preference" if config.algorithm == "dpo" else "ranking"
    records = load_records(_snapshot_path(round_, kind)[0])
    if config.algorithm != "dpo":
        records += load_records(_snapshot_path(round_, "sft")[0])
    folder = _stage_dir(round_, "policy")
    metrics = optimize_policy(
        records,
        str(round_.sft_version.path),
        str(round_.reward_version.path),
        str(folder),
        config,
        progress=reporter.progress,
        should_stop=reporter.should_stop,
    )
    version = _register(
        round_,
        folder,
        kind=ModelVersion.Kind.POLICY,
        name=f"round {round_.number} policy ({config.algorithm})",
        parent=round_.sft_version,
        metrics=metrics,
    )
    Round.objects.filter(pk=round_.pk).update(policy_version=version)
    return "succeeded"


def _evaluation_prompts(round_, count: int, seed: int) -> tuple[list[list[dict]], bool]:
    """Prompts the round did not train on, where there are enough; else a fixed sample of all."""
    import random

    trained_on = set()
    for snapshot in round_.snapshots.all():
        for row in load_records(snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0]):
            prompt = row.get("prompt") or row.get("messages", [])[:-1]
            trained_on.add(repr(prompt))
    prompts = [p.messages for p in Prompt.objects.filter(project=round_.project).order_by("id")]
    held_out = [p for p in prompts if repr(p) not in trained_on]
    chosen, is_held_out = (held_out, True) if len(held_out) >= count else (prompts, False)
    return random.Random(seed).sample(chosen, min(count, len(chosen))), is_held_out


def _run_evaluate(round_, stage, reporter) -> str:
    from training.ml.evaluate import evaluate_policies
    from training.ml.generation import SamplingParams

    settings_ = round_.config["evaluate"]
    prompts, held_out = _evaluation_prompts(round_, settings_["prompts"], settings_["seed"])
    reporter.progress(0, 1, {})
    result = evaluate_policies(
        prompts,
        str(round_.policy_version.path),
        str(round_.base_policy.path),
        str(round_.reward_version.path),
        sampling=SamplingParams(
            temperature=settings_["temperature"], max_new_tokens=settings_["max_new_tokens"], seed=settings_["seed"]
        ),
    )
    result["held_out_prompts"] = held_out
    summary = {k: v for k, v in result.items() if not isinstance(v, list | dict)}
    reporter.progress(1, 1, summary)
    Round.objects.filter(pk=round_.pk).update(evaluation=result)
    ModelVersion.objects.filter(pk=round_.policy_version_id).update(
        metrics={**round_.policy_version.metrics, "evaluation": summary}
    )
    return "succeeded"


def _deploy_and_generate(round_: Round, *, actor) -> None:
    registry.policy_deploy(version=round_.policy_version, actor=actor)
    Round.objects.filter(pk=round_.pk).update(deployed=True)
    try:  # the next round's candidates come from the new policy: the loop is closed
        registry.generation_job_start(project=round_.project, actor=actor)
    except Conflict:
        pass  # a generation job is already running; the next one will use the new policy


def _run_deploy(round_, stage, reporter) -> str:
    from training.ml.evaluate import should_deploy

    round_.refresh_from_db()
    threshold = round_.config["deploy"]["threshold"]
    wins = should_deploy(round_.evaluation, threshold)
    reporter.progress(1, 1, {"win_rate": round_.evaluation.get("win_rate", 0.0), "threshold": threshold})
    if wins and round_.config["deploy"]["auto"]:
        _deploy_and_generate(round_, actor=round_.created_by)
        reporter.log(
            f"deployed {round_.policy_version}: win rate {round_.evaluation.get('win_rate'):.2f} ≥ {threshold}"
        )
        return "succeeded"
    reporter.log(f"win rate {round_.evaluation.get('win_rate', 0):.2f} vs threshold {threshold}: waiting for an admin")
    return "waiting"


STAGE_RUNNERS = {
    "snapshot": _run_snapshot,
    "sft": _run_sft,
    "reward": _run_reward,
    "policy": _run_policy,
    "evaluate": _run_evaluate,
    "deploy": _run_deploy,
}
