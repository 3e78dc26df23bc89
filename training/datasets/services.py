"""Dataset snapshots: create (validated, frozen filter), build (stream rows to files, hash them,
write the card), and read files back with their hashes verified."""

import json
import logging
import os
import shutil
import stat
import subprocess
import time
import uuid
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from labeling.errors import Conflict, LabelingError, NotFound
from labeling.events import event_record
from training.datasets.exports import postgres as export_postgres
from training.datasets.exports import rows as export_rows
from training.datasets.exports.card import card_render
from training.datasets.exports.writers import WRITERS, file_digest
from training.datasets.models import DatasetSnapshot
from worker.queue import enqueue

logger = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 1.0
STALE_AFTER = timedelta(hours=1)
BOOLEAN_FILTERS = (
    "exclude_flagged",
    "exclude_none_acceptable",
    "exclude_held_out",
    "only_held_out",
    "margin",
    "weighted",  # ranking snapshots: each pair weighted by annotator reliability (a `pairs` column)
    "exclude_held",  # leave out the labels of annotators on hold (labeling.quality.gold)
)
READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=5
        )
        if described.returncode == 0 and described.stdout.strip():
            return described.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def _date(value, field: str) -> str:
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise LabelingError(
            gettext("%(field)s must be a date like 2026-11-29.") % {"field": field}, field=field
        ) from None


def _whole(value, field: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | str)
        or not str(value).isascii()
        or not str(value).isdigit()
    ):
        raise LabelingError(gettext("%(field)s must be a whole number.") % {"field": field}, field=field)
    return int(value)


def snapshot_filters_clean(raw) -> dict:
    """The filter as stored: only known keys, typed, so a snapshot says exactly what it holds."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise LabelingError(gettext("filters must be an object."), field="filters")
    known = {"date_from", "date_to", "round", "model_version", "min_agreement", *BOOLEAN_FILTERS}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise LabelingError(
            gettext("unknown filter %(unknown)s; use %(known)s.")
            % {"unknown": repr(unknown[0]), "known": ", ".join(sorted(known))},
            field="filters",
        )
    clean: dict = {}
    for key in ("date_from", "date_to"):
        if raw.get(key) not in (None, ""):
            clean[key] = _date(raw[key], key)
    if clean.get("date_from") and clean.get("date_to") and clean["date_from"] > clean["date_to"]:
        raise LabelingError(gettext("date_from is after date_to."), field="date_from")
    for key in ("round", "model_version"):
        if raw.get(key) not in (None, ""):
            clean[key] = _whole(raw[key], key)
    if raw.get("min_agreement") not in (None, ""):
        value = raw["min_agreement"]
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise LabelingError(gettext("min_agreement must be a number from 0 to 1."), field="min_agreement") from None
        if isinstance(raw["min_agreement"], bool) or not 0 <= value <= 1:
            raise LabelingError(gettext("min_agreement must be a number from 0 to 1."), field="min_agreement")
        clean["min_agreement"] = value
    for key in BOOLEAN_FILTERS:
        if key in raw:
            if not isinstance(raw[key], bool):
                raise LabelingError(gettext("%(key)s must be true or false.") % {"key": key}, field=key)
            if raw[key]:
                clean[key] = True
    if clean.get("exclude_held_out") and clean.get("only_held_out"):
        raise LabelingError(gettext("exclude_held_out and only_held_out cannot both be true."), field="only_held_out")
    return clean


def snapshot_create(*, project, kind: str, format: str = "jsonl", filters=None, pair_mode: str = "all", actor=None):
    if kind not in DatasetSnapshot.Kind.values:
        raise LabelingError(
            gettext("kind must be one of %(kinds)s.") % {"kinds": ", ".join(DatasetSnapshot.Kind.values)}, field="kind"
        )
    if format not in DatasetSnapshot.Format.values:
        raise LabelingError(gettext("format must be jsonl or parquet."), field="format")
    if pair_mode not in DatasetSnapshot.PairMode.values:
        raise LabelingError(gettext("pair_mode must be all or best_worst."), field="pair_mode")
    clean = snapshot_filters_clean(filters)
    with transaction.atomic():
        snapshot = DatasetSnapshot.objects.create(
            project=project,
            kind=kind,
            format=format,
            filters=clean,
            pair_mode=pair_mode,
            created_by=actor,
            code_version=code_version(),
        )
        event_record(
            actor=actor, verb="snapshot.created", project=project, payload={"snapshot_id": snapshot.pk, "kind": kind}
        )
    return snapshot


def snapshot_build_enqueue(snapshot) -> None:
    """Build the snapshot on a worker, once the transaction that created it commits."""
    enqueue("worker.tasks.snapshot_build_task", snapshot.pk)


def snapshot_dir(snapshot) -> Path:
    return Path(settings.SNAPSHOT_STORE) / str(snapshot.pk)


def _claim(snapshot_id: int) -> bool:
    """Claim the build with a conditional update: a redelivered message finds it taken. A build
    left 'running' by a worker that died is reclaimed once it is stale."""
    now = timezone.now()
    claimable = Q(status=DatasetSnapshot.Status.PENDING) | Q(
        status=DatasetSnapshot.Status.RUNNING, started_at__lt=now - STALE_AFTER
    )
    return bool(
        DatasetSnapshot.objects.filter(claimable, pk=snapshot_id).update(
            status=DatasetSnapshot.Status.RUNNING, started_at=now, rows_done=0, error=""
        )
    )


def snapshot_build(*, snapshot_id: int) -> DatasetSnapshot | None:
    if not _claim(snapshot_id):
        return None
    snapshot = DatasetSnapshot.objects.select_related("project").get(pk=snapshot_id)
    try:
        _write_files(snapshot)
    except Exception as error:
        DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
            status=DatasetSnapshot.Status.FAILED, error=f"{type(error).__name__}: {error}", finished_at=timezone.now()
        )
        raise
    return snapshot


class _Progress:
    """Writes rows_done at most once a second. The PostgreSQL fast path (aside=True) keeps the main
    connection in one read-only transaction, where a write would not show until the end, and busy
    with its cursors; its progress goes through a connection of its own. That write is a courtesy:
    if it cannot be made, the export goes on."""

    def __init__(self, snapshot_id: int, *, aside: bool):
        self._snapshot_id = snapshot_id
        self._aside = aside
        self._connection = None
        self._last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_SECONDS:
            return
        self._last = now
        if not self._aside:
            DatasetSnapshot.objects.filter(pk=self._snapshot_id).update(rows_done=done)
            return
        try:
            if self._connection is None:
                self._connection = connections.create_connection(DEFAULT_DB_ALIAS)
                with self._connection.cursor() as cursor:
                    cursor.execute("SET lock_timeout = '2s'")
            with self._connection.cursor() as cursor:
                cursor.execute(
                    f'UPDATE "{DatasetSnapshot._meta.db_table}" SET rows_done = %s WHERE id = %s',
                    [done, self._snapshot_id],
                )
        except DatabaseError as error:
            logger.warning("snapshot %s: progress not recorded (%s)", self._snapshot_id, error)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def _write_rows(snapshot, writer) -> None:
    # Reliability weights need every ranking before the first row: the generic rows do that.
    fast = (
        export_postgres.available()
        and snapshot.kind in export_postgres.KINDS
        and not (snapshot.kind == "ranking" and snapshot.filters.get("weighted"))
    )
    progress = _Progress(snapshot.pk, aside=fast)
    try:
        if not fast:
            for row in export_rows.ROWS[snapshot.kind](snapshot, progress):
                writer.write(row)
            return
        for data, rows in export_postgres.batches(snapshot, progress):
            if isinstance(data, bytes):
                writer.write_lines(data, rows)
            else:
                writer.write_table(data)
    finally:
        progress.close()


def _write_files(snapshot) -> None:
    folder = snapshot_dir(snapshot)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    total = export_rows.source_count(snapshot)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(rows_total=total)
    schema = snapshot.kind
    if snapshot.kind == "preference" and snapshot.filters.get("margin"):
        schema = "preference+margin"
    if snapshot.kind == "ranking" and snapshot.filters.get("weighted"):
        schema = "ranking+weights"
    writer = WRITERS[snapshot.format](folder / snapshot.data_file_name, schema)
    _write_rows(snapshot, writer)
    data = {"name": snapshot.data_file_name, **writer.close()}
    counts = {"rows": writer.rows, "source records": total}
    snapshot.finished_at = timezone.now()
    card = card_render(snapshot=snapshot, counts=counts, data_file=data, project=snapshot.project)
    (folder / "README.md").write_text(card, encoding="utf-8")
    files = [data, {"name": "README.md", **file_digest(folder / "README.md")}]
    for entry in files:  # a snapshot never changes: its stored files are read-only
        (folder / entry["name"]).chmod(READ_ONLY)
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(
        status=DatasetSnapshot.Status.READY,
        rows_done=total,
        counts=counts,
        files=files,
        finished_at=snapshot.finished_at,
    )


def _ready_file(snapshot, name: str) -> dict:
    """The record of one file of a ready snapshot (name, sha256, bytes)."""
    if snapshot.status != DatasetSnapshot.Status.READY:
        raise Conflict(
            gettext("Snapshot %(snapshot_pk)s is %(status)s, not ready for download.")
            % {"snapshot_pk": snapshot.pk, "status": snapshot.status}
        )
    entry = next((f for f in snapshot.files if f["name"] == name), None)
    if entry is None:
        raise NotFound(
            gettext("Snapshot %(snapshot_pk)s has no file %(name)s.") % {"snapshot_pk": snapshot.pk, "name": repr(name)}
        )
    return entry


def snapshot_file(*, snapshot, name: str) -> tuple[Path, str]:
    """The path of one file of a ready snapshot, after checking its SHA-256 against the record."""
    entry = _ready_file(snapshot, name)
    path = snapshot_dir(snapshot) / name
    if not path.exists() or file_digest(path)["sha256"] != entry["sha256"]:
        raise Conflict(
            gettext(
                "%(name)s of snapshot %(snapshot_pk)s no longer matches its recorded SHA-256; it will not be served."
            )
            % {"name": name, "snapshot_pk": snapshot.pk}
        )
    return path, entry["sha256"]


def snapshot_copy(*, snapshot, name: str, target: Path) -> None:
    """Put one file of a snapshot just built here at `target` (export_dataset --out).

    On the store's filesystem that is a hard link to the stored file: no second copy of a 3 GB
    export (which took longer than building it), and no way for the two to differ, since stored
    files are read-only. Elsewhere it is a copy, made in the kernel. Either way `target` is
    replaced, never written into: an earlier export there may be another snapshot's own file. Its
    SHA-256 was taken from the bytes as they were written, moments ago; downloads from the store
    check it again (snapshot_file)."""
    _ready_file(snapshot, name)
    source = snapshot_dir(snapshot) / name
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        try:
            os.link(source, partial)
        except OSError:  # another filesystem, or one without hard links
            shutil.copyfile(source, partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def snapshot_manifest(snapshot) -> str:
    return json.dumps(
        {
            "id": snapshot.pk,
            "project": snapshot.project.name,
            "kind": snapshot.kind,
            "format": snapshot.format,
            "filters": snapshot.filters,
            "pair_mode": snapshot.pair_mode,
            "counts": snapshot.counts,
            "files": snapshot.files,
            "code_version": snapshot.code_version,
            "created_at": snapshot.created_at.isoformat(),
            "finished_at": snapshot.finished_at.isoformat() if snapshot.finished_at else None,
        },
        indent=2,
        ensure_ascii=False,
    )
