"""The PostgreSQL fast path for ranking-based snapshots (ranking, preference, annotations).

The generic path (rows.py) turns every value into Python objects and then back into JSON; at a
million rankings that is nearly all of the time. Here Python splices bytes: jsonb arrives as the
text PostgreSQL prints (the same text json.dumps writes for these values), answers are escaped by
the json module's own C encoder, and ranks and pairs are worked out once per ranking shape. The
lines are byte-for-byte what the generic path writes (`writers.json_line`; a test compares the
two), so a JSONL snapshot's SHA-256 does not depend on which path built it.

Two streams are read in task order with server-side cursors: the selected rankings with their
prompt (rows.rankings_selected, the generic path's own filter, with this kind's columns) and the
answers of their tasks; (task, id) indexes give both orders without a sort. A reader thread cuts
them into chunks of CHUNK_RANKINGS rankings with their tasks' answers, while the main thread splices
the chunk before, so memory holds a few chunks and PostgreSQL works while Python does. Everything
is read in one REPEATABLE READ transaction, so all chunks see the same moment. Only the reader
thread touches the connection until it is done; the caller reports progress through another
connection (see snapshots.py)."""

import queue
import threading
from collections.abc import Callable, Iterator

import pyarrow as pa
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q, TextField
from django.db.models.functions import Cast

from labeling import sql
from labeling.imports import IMPORTED_USERNAME
from training.datasets.exports import rows as export_rows
from training.datasets.exports.arrow_tables import TABLES
from training.datasets.exports.splice import SPLICE, Chunk, Splicer
from training.datasets.exports.writers import json_line

CHUNK_RANKINGS = 5_000
KINDS = tuple(SPLICE)


def available() -> bool:
    return sql.postgres()


# jsonb leaves PostgreSQL as its text (json.dumps' format for these values); answers leave as plain
# text, and Python writes them as JSON strings with the json module's own C encoder, cheaper here
# than PostgreSQL's to_json.
_ANSWERS = {
    "short": """
SELECT c.task_id, c.public_id, c.text
FROM labeling_candidate c
WHERE c.task_id IN ({selected_tasks}) ORDER BY c.task_id, c.id""",
    "annotations": """
SELECT c.task_id, c.public_id, c.text, c.source, c.model_version_id, v.round_number
FROM labeling_candidate c LEFT JOIN training_modelversion v ON v.id = c.model_version_id
WHERE c.task_id IN ({selected_tasks}) ORDER BY c.task_id, c.id""",
}


def _as_text(name: str) -> Cast:
    return Cast(name, TextField())


def _ranking_columns(kind: str) -> tuple:
    if kind == "ranking":
        return (_as_text("groups"), _as_text("flags"))
    if kind == "preference":
        return (_as_text("groups"), _as_text("flags"), _as_text("ratings"))
    imported = ExpressionWrapper(Q(annotator__username=IMPORTED_USERNAME), output_field=BooleanField())
    return (
        _as_text("groups"),
        _as_text("ratings"),
        _as_text("flags"),
        "none_acceptable",
        "annotator_id",
        imported,
        _as_text("created_at"),
        _as_text("updated_at"),
    )


def _statements(snapshot) -> tuple[tuple[str, tuple], tuple[str, tuple]]:
    """(SQL, params) of the rankings stream and the answers stream. The rankings stream is the
    generic path's own selection (rows.rankings_selected) with the columns this kind needs, so both
    paths pick the same rankings."""
    selected = export_rows.rankings_selected(snapshot)
    rankings = (
        selected.order_by("task_id", "id")
        .values_list("task_id", *_ranking_columns(snapshot.kind), _as_text("task__prompt__messages"))
        .query.sql_with_params()
    )
    tasks_sql, tasks_params = selected.order_by().values("task_id").query.sql_with_params()
    answers = _ANSWERS["annotations" if snapshot.kind == "annotations" else "short"].format(selected_tasks=tasks_sql)
    return rankings, (answers, tuple(tasks_params))


_DONE = object()


def _read_chunks(raw_connection, statements, chunks: queue.Queue, stop: threading.Event) -> None:
    """Reads both streams in step and hands over chunks of CHUNK_RANKINGS rankings with every
    answer of their tasks (a task cut between two chunks has its answers in both)."""
    (rankings_sql, rankings_params), (answers_sql, answers_params) = statements
    try:
        with (
            raw_connection.cursor(name="yushan_export_rankings", binary=True) as rankings,
            raw_connection.cursor(name="yushan_export_answers", binary=True) as answers,
        ):
            rankings.execute(rankings_sql, rankings_params)
            answers.execute(answers_sql, answers_params)
            spare: list[tuple] = []  # answers fetched for the next chunk's tasks
            while not stop.is_set() and (rows := rankings.fetchmany(CHUNK_RANKINGS)):
                through = rows[-1][0]
                mine = spare
                while not mine or mine[-1][0] <= through:
                    more = answers.fetchmany(CHUNK_RANKINGS * 2)
                    if not more:
                        break
                    mine = mine + more
                split = len(mine)
                while split and mine[split - 1][0] > through:
                    split -= 1
                # The last task's other rankings may open the next chunk: its answers go there too.
                mine, spare = mine[:split], [answer for answer in mine[:split] if answer[0] == through] + mine[split:]
                while not stop.is_set():
                    try:
                        chunks.put(Chunk(rows, mine), timeout=0.2)
                        break
                    except queue.Full:
                        continue
        chunks.put(_DONE)
    except BaseException as error:  # handed to the main thread, which raises it
        chunks.put(error)


def _repeatable_read() -> None:
    """Every chunk sees the same moment; inside a caller's transaction it already does."""
    if connection.in_atomic_block and connection.savepoint_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def batches(snapshot, progress: Callable[[int], None]) -> Iterator[tuple[bytes | pa.Table, int]]:
    """(JSON Lines bytes, or an Arrow table for Parquet; rows in it) for the whole snapshot, then
    an annotations snapshot's demonstrations as lines; progress(source records read)."""
    splice = (TABLES if snapshot.format == "parquet" else SPLICE)[snapshot.kind]
    splicer = Splicer(snapshot)
    done = 0
    with transaction.atomic():
        _repeatable_read()
        with connection.cursor() as cursor:
            # The whole result is read, so plan for all of it (not the first 10%, the cursor
            # default); JIT compiling pays off for analytics, not for this kind of scan.
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL TimeZone = 'UTC'")  # iso_bytes() reads ISO timestamps in UTC
            cursor.execute("SET LOCAL DateStyle = 'ISO'")
            cursor.execute("SET LOCAL work_mem = '64MB'")
        statements = _statements(snapshot)
        chunks: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        reader = threading.Thread(
            target=_read_chunks, args=(connection.connection, statements, chunks, stop), daemon=True
        )
        reader.start()
        try:
            while (chunk := chunks.get()) is not _DONE:
                if isinstance(chunk, BaseException):
                    raise chunk
                if snapshot.format == "parquet":
                    table, read = splice(splicer, chunk)
                    yield table, table.num_rows
                else:
                    pieces, lines, read = splice(splicer, chunk)
                    yield b"".join(pieces), lines
                done += read
                progress(done)
        finally:
            stop.set()
            reader.join()
        if snapshot.kind == "annotations":
            batch: list[bytes] = []
            for row in export_rows.demonstration_annotation_rows(snapshot, lambda _: None, done):
                batch.append(json_line(row))
                done += 1
                if len(batch) >= 2000:
                    yield b"".join(batch), len(batch)
                    batch.clear()
                    progress(done)
            if batch:
                yield b"".join(batch), len(batch)
                progress(done)
