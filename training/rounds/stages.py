"""What each stage of a round does: freeze the snapshots, train SFT, the reward model and the
policy; evaluate and deploy are training.rounds.evaluation's. Each runner takes (round, stage,
reporter) and returns its outcome ("succeeded", "skipped" or "waiting"); training.rounds.runner
claims and records the stage.

The ML functions come from training.ml (no Django there); the heavy ones are imported inside the
runners so that the web process, which imports this module, does not load TRL. The training
stages (SFT, reward model, policy) hand theirs to the round's executor (training.rounds.executors:
in this process, as data-parallel processes under torchrun, or on a Ray cluster); the others run
here.

Checkpoints reach whoever reads them through the model store (training.registry.services): a stage
fetches the versions it reads from MODEL_STORE_URL when this host has no copy, a Ray job's nodes
fetch them themselves, and registering a stage's checkpoint uploads it.
"""

import json
import shutil
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext

from labeling.errors import LabelingError
from training.datasets.services import snapshot_build, snapshot_create, snapshot_file
from training.ml.common import load_records
from training.ml.reward import train_reward_model
from training.registry import services as registry
from training.registry.models import ModelVersion
from training.rounds.evaluation import run_deploy, run_evaluate
from training.rounds.executors import StageJob, executor_for, stage_key
from training.rounds.models import Round, RoundStage

# The data settings that are snapshot filters (the others choose among the snapshot's rows).
SNAPSHOT_FILTERS = ("exclude_flagged", "exclude_none_acceptable", "exclude_held", "min_agreement")


def _stage_dir(round_: Round, name: str) -> Path:
    folder = Path(settings.MODEL_STORE) / "projects" / str(round_.project_id) / f"round-{round_.number}" / name
    shutil.rmtree(folder, ignore_errors=True)  # a retried stage starts clean
    registry.checkpoint_unpublish(folder)  # in the object store too: its manifest would vouch for old files
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder


def _snapshot_path(round_: Round, kind: str) -> Path:
    return _snapshot_file_of(round_.snapshots.get(kind=kind))


def _rankings_path(round_: Round) -> Path:
    """The rankings the reward model and the policy stage read: the consensus snapshot when the
    round froze one (data.rankings "consensus"), else every annotator's rankings (with weighted
    pairs for "weighted")."""
    kinds = set(round_.snapshots.values_list("kind", flat=True))
    return _snapshot_path(round_, "consensus" if "consensus" in kinds else "ranking")


def _snapshot_file_of(snapshot) -> Path:
    return snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)[0]


def _run_snapshot(round_, stage, reporter) -> str:
    """Freeze what the round trains on, with the same code as the research exports."""
    data = round_.config["data"]
    filters = {k: v for k, v in data.items() if k in SNAPSHOT_FILTERS and v not in (None, False)}
    filters["exclude_held_out"] = True  # the frozen evaluation split never enters training
    round_.snapshots.clear()
    counts = {}
    # DPO reads the rankings too: its `pairs` setting chooses among their pairs.
    choice = data.get("rankings", "weighted")
    rankings = "consensus" if choice == "consensus" else "ranking"
    kinds = ["sft", rankings]
    for i, kind in enumerate(kinds, start=1):
        kind_filters = {**filters, "weighted": True} if kind == "ranking" and choice == "weighted" else filters
        snapshot = snapshot_create(
            project=round_.project, kind=kind, format="jsonl", filters=kind_filters, actor=round_.created_by
        )
        snapshot_build(snapshot_id=snapshot.pk)
        snapshot.refresh_from_db()
        round_.snapshots.add(snapshot)
        counts[f"{kind}_rows"] = snapshot.counts["rows"]
        reporter.progress(i, len(kinds), {f"{kind}_rows": snapshot.counts["rows"]})
        reporter.log(f"snapshot {snapshot.pk}: {snapshot.counts['rows']} {kind} rows")
    if counts[f"{rankings}_rows"] < 2:
        raise LabelingError(
            gettext(
                "The reward model needs at least 2 rankings; the snapshot has %(counts)s. Label more ranking tasks first."
            )
            % {"counts": counts[f"{rankings}_rows"]}
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


def _demonstrations_learned(round_) -> set[str]:
    """The demonstrations (as JSON text) in the SFT snapshots of the rounds the deployed policy
    comes from: it has been trained on them (or kept them for its validation loss)."""
    learned, version, seen = set(), round_.base_policy, set()
    while version is not None and version.pk not in seen:
        seen.add(version.pk)
        made_it = Round.objects.filter(project=round_.project_id, policy_version=version).exclude(pk=round_.pk).first()
        if made_it is None:
            break
        for snapshot in made_it.snapshots.filter(kind="sft"):
            learned.update(json.dumps(row, sort_keys=True) for row in load_records(_snapshot_file_of(snapshot)))
        version = made_it.base_policy
    return learned


def _sft_records(round_, reporter) -> list[dict]:
    """The snapshot's demonstrations; with data.demonstrations "new", those the deployed policy has
    not been trained on: training it again on the same ones drifts it back towards them, undoing
    what its policy stage learned, and costs a stage's time."""
    records = load_records(_snapshot_path(round_, "sft"))
    if round_.config["data"].get("demonstrations", "new") == "all" or not records:
        return records
    learned = _demonstrations_learned(round_)
    new = [row for row in records if json.dumps(row, sort_keys=True) not in learned]
    if len(new) < len(records):
        reporter.log(f"{len(records) - len(new)} demonstrations already learned by the deployed policy; {len(new)} new")
    return new


def _train(round_, stage: RoundStage, reporter, function, *, reads: list[ModelVersion], **inputs) -> dict:
    """A training stage's ML function, run by the round's executor (training.rounds.executors):
    in this process, as data-parallel processes under torchrun, or as a Ray job named by the
    stage's attempt. `reads`: the model versions whose paths are among the inputs."""
    key = stage_key(prefix=settings.RAY_JOB_PREFIX, round_id=round_.pk, stage=stage.name, attempt=stage.attempts)
    executor = executor_for(round_.config.get("execution"))
    for version in reads:
        _model_ready(version, executor, reporter)
    job = StageJob(stage.name, function, inputs, key=key)
    return executor.run(job, reporter)


def _model_ready(version: ModelVersion, executor, reporter) -> None:
    """The version where the stage's processes will read it: on this host (downloaded from
    MODEL_STORE_URL if need be), or, for a Ray job whose nodes download it from MODEL_STORE_URL
    themselves, there (a version registered before the setting was made is uploaded now)."""
    if executor.name == "ray" and settings.MODEL_STORE_URL:
        if registry.checkpoint_publish(version.path, content_hash=version.content_hash):
            reporter.log(f"uploaded {version} to the model store {settings.MODEL_STORE_URL}")
    else:
        registry.model_version_fetch(version)


def _run_sft(round_, stage, reporter) -> str:
    from training.ml.sft import train_sft

    records = _sft_records(round_, reporter)
    if not records:
        Round.objects.filter(pk=round_.pk).update(sft_version=round_.base_policy)
        reporter.log("no new demonstrations: the deployed policy stands in for the SFT model")
        return "skipped"
    folder = _stage_dir(round_, "sft")
    metrics = _train(
        round_,
        stage,
        reporter,
        train_sft,
        reads=[round_.base_policy],
        records=records,
        model_path=str(round_.base_policy.path),
        out_dir=str(folder),
        config=round_.config["sft"],
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
    path = _rankings_path(round_)
    folder = _stage_dir(round_, "reward")
    sft = round_.sft_version
    metrics = _train(
        round_,
        stage,
        reporter,
        train_reward_model,
        reads=[sft],
        records=load_records(path),
        model_path=str(sft.path),
        out_dir=str(folder),
        config=round_.config["reward"],
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
    from training.ml.policy import optimize_policy

    algorithm = round_.config["policy"]["algorithm"]
    records = load_records(_rankings_path(round_))
    if algorithm != "dpo":
        records += load_records(_snapshot_path(round_, "sft"))
    folder = _stage_dir(round_, "policy")
    metrics = _train(
        round_,
        stage,
        reporter,
        optimize_policy,
        reads=[round_.sft_version, round_.reward_version],
        records=records,
        model_path=str(round_.sft_version.path),
        reward_model_path=str(round_.reward_version.path),
        out_dir=str(folder),
        config=round_.config["policy"],
    )
    version = _register(
        round_,
        folder,
        kind=ModelVersion.Kind.POLICY,
        name=f"round {round_.number} policy ({algorithm})",
        parent=round_.sft_version,
        metrics=metrics,
    )
    Round.objects.filter(pk=round_.pk).update(policy_version=version)
    return "succeeded"


STAGE_RUNNERS = {
    "snapshot": _run_snapshot,
    "sft": _run_sft,
    "reward": _run_reward,
    "policy": _run_policy,
    "evaluate": run_evaluate,
    "deploy": run_deploy,
}
