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

import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring

import pyarrow as pa
import pyarrow.compute as pc
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q, TextField
from django.db.models.functions import Cast

from training.exports import rows as export_rows
from training.exports import shapes
from training.exports.writers import CANDIDATE, MESSAGES, SCHEMAS, json_line, read_json_lines

CHUNK_RANKINGS = 5_000


def available() -> bool:
    return connection.vendor == "postgresql"


@dataclass
class _Chunk:
    rankings: list[tuple]  # (task_id, …the kind's columns…, prompt), in task order
    answers: list[tuple]  # (task_id, public_id, text, …) of those tasks, in order


# Answer ids are hex (models.new_public_id). Deleting the hex digits from a ranking's groups text
# leaves its shape, e.g. [[""], ["", ""], [""]]: the group sizes. Rankings share a few shapes, so
# ranks and implied pairs are worked out once per shape, and a row only looks up its answers.
HEX = b"0123456789abcdef"
GROUP_BREAK, ID_BREAK = b'"], ["', b'", "'


@dataclass(frozen=True)
class _Shape:
    ranks: tuple[bytes, ...]  # per answer, in ranked order, as JSON text
    rank_numbers: tuple[int, ...]  # the same ranks as numbers
    pairs: dict[str, list[tuple[int, int]]]  # (better, worse) positions per pair mode


@lru_cache(maxsize=1024)
def _shape_of(sizes: tuple[int, ...]) -> _Shape:
    """The shape of a ranking whose groups, best to worst, hold `sizes` answers."""
    positions, start = [], 0
    for size in sizes:
        positions.append(list(range(start, start + size)))
        start += size
    numbers = tuple(rank for rank, group in enumerate(positions, start=1) for _ in group)
    pairs = {mode: list(shapes.implied_pairs(positions, mode)) for mode in ("all", "best_worst")}
    return _Shape(tuple(b"%d" % rank for rank in numbers), numbers, pairs)


class _Shapes(dict):
    """{groups text without its hex digits: shape}. None when the text is not a plain shape (ids
    that are not hex): that row takes the general path."""

    def __missing__(self, key: bytes) -> "_Shape | None":
        try:
            groups = json.loads(key)
        except ValueError:
            groups = None
        plain = isinstance(groups, list) and all(
            isinstance(group, list) and group and all(item == "" for item in group) for group in groups
        )
        value = _shape_of(tuple(len(group) for group in groups)) if plain else None
        self[key] = value
        return value


def _flat(groups: bytes) -> list[bytes]:
    """The ids of a plain-shaped groups text in ranked order."""
    return groups[3:-3].replace(GROUP_BREAK, ID_BREAK).split(ID_BREAK) if groups != b"[]" else []


def _json_text(text: str) -> bytes:
    """A JSON string, exactly as json.dumps(text, ensure_ascii=False) writes it."""
    return encode_basestring(text).encode()


def _dumps(value) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _ids(value: dict) -> dict[bytes, object]:
    return {answer_id.encode(): item for answer_id, item in value.items()}


@dataclass
class _Splicer:
    """Per-snapshot state shared across chunks: options, shape and pseudonym caches."""

    snapshot: object
    shapes: _Shapes = field(default_factory=_Shapes)
    pseudonyms: dict = field(default_factory=dict)

    def __post_init__(self):
        filters = self.snapshot.filters
        self.exclude_flagged = bool(filters.get("exclude_flagged"))
        self.margin = bool(filters.get("margin"))
        self.pair_mode = self.snapshot.pair_mode
        self.salt = self.snapshot.salt

    def ranked(self, groups: str, flags: str = "{}") -> tuple[list[bytes], _Shape]:
        """A ranking's answer ids best to worst, and its shape (ranks; pairs by position). Flagged
        answers are dropped when the snapshot's filter asks; without `flags` all are kept."""
        encoded = groups.encode()
        dropping = self.exclude_flagged and flags != "{}"
        if not dropping and (shape := self.shapes[encoded.translate(None, HEX)]) is not None:
            return _flat(encoded), shape
        kept = [[answer_id.encode() for answer_id in group] for group in json.loads(groups)]
        if dropping:
            flagged = {answer_id for answer_id, names in _ids(json.loads(flags)).items() if names}
            kept = shapes.groups_without(kept, flagged)
        return [answer_id for group in kept for answer_id in group], _shape_of(tuple(len(g) for g in kept))

    def pseudonym(self, annotator: int) -> bytes:
        if annotator not in self.pseudonyms:
            self.pseudonyms[annotator] = _dumps(shapes.pseudonym(self.salt, annotator))
        return self.pseudonyms[annotator]


def _positions(chunk: _Chunk) -> dict[int, dict[bytes, int]]:
    """{task_id: {answer id: the answer's row in chunk.answers}}, each task's answers in order."""
    positions: dict[int, dict[bytes, int]] = {}
    for position, (task_id, answer_id, *_) in enumerate(chunk.answers):
        of_task = positions.get(task_id)
        if of_task is None:
            of_task = positions[task_id] = {}
        of_task[answer_id.encode()] = position
    return positions


def _margin(scores: dict, better: bytes, worse: bytes) -> float | None:
    return float(scores[better] - scores[worse]) if better in scores and worse in scores else None


ASSISTANT = b'[{"role": "assistant", "content": %b}]'
RANKING_LINE = b'{"prompt": %b, "completions": [%b], "ranks": [%b]}\n'


# The JSON Lines splicers return (pieces, lines, rankings read): the pieces are joined once into
# the chunk's bytes, so a line need not be a bytes object of its own (a preference export's 5.3 M
# pairs are 3.3 GB: joining each line and then the chunk copied all of it twice).


def _ranking_lines(splicer: _Splicer, chunk: _Chunk) -> tuple[list[bytes], int, int]:
    positions = _positions(chunk)
    rendered = [ASSISTANT % _json_text(text) for _, _, text in chunk.answers]
    out = []
    for task_id, groups, flags, prompt in chunk.rankings:
        at = positions[task_id]
        ordered, shape = splicer.ranked(groups, flags)
        if len(ordered) >= 2:
            completions = b", ".join([rendered[at[answer_id]] for answer_id in ordered])
            out.append(RANKING_LINE % (prompt.encode(), completions, b", ".join(shape.ranks)))
    return out, len(out), len(chunk.rankings)


def _preference_lines(splicer: _Splicer, chunk: _Chunk) -> tuple[list[bytes], int, int]:
    positions = _positions(chunk)
    rendered = [ASSISTANT % _json_text(text) for _, _, text in chunk.answers]
    out: list[bytes] = []
    piece = out.append
    lines = 0
    pair_mode, with_margin = splicer.pair_mode, splicer.margin
    for task_id, groups, flags, ratings, prompt in chunk.rankings:
        at = positions[task_id]
        ordered, shape = splicer.ranked(groups, flags)
        answers = [rendered[at[answer_id]] for answer_id in ordered]
        head = b'{"prompt": ' + prompt.encode() + b', "chosen": '
        chosen = [head + answer + b', "rejected": ' for answer in answers]
        pairs = shape.pairs[pair_mode]
        lines += len(pairs)
        if not with_margin:
            rejected = [answer + b"}\n" for answer in answers]
            for better, worse in pairs:
                piece(chosen[better])
                piece(rejected[worse])
            continue
        scores = _ids(json.loads(ratings))
        for better, worse in pairs:
            margin = _margin(scores, ordered[better], ordered[worse])
            tail = b"null" if margin is None else json.dumps(margin).encode()
            piece(chosen[better])
            piece(answers[worse] + b', "margin": ' + tail + b"}\n")
    return out, lines, len(chunk.rankings)


ANSWER_HEAD = b'{"id": %b, "text": %b, "source": %b, "model_version": %b, "round": %b'
ANSWER_TAIL = b'%b, "rank": %b, "rating": %b, "flags": %b}'
ANNOTATION_LINE = (
    b'{"kind": "ranking", "task_id": %b, "annotator": %b, "created_at": "%b", "updated_at": "%b", '
    b'"prompt": %b, "demonstration": null, "candidates": [%b], "none_acceptable": %b, "source": %b}\n'
)


_RATING = re.compile(rb'"([^"\\]*)": (-?[0-9]+)(?=[,}])')


def _scores(text: str) -> dict[bytes, bytes]:
    """{answer id: rating as JSON text}. jsonb prints {"id": 6, "id2": 2}; ratings are whole numbers
    (validation.ratings_clean), so one regular expression finds every item; anything else (a
    count that does not add up) takes json.loads."""
    if text == "{}":
        return {}
    ratings = text.encode()
    found = _RATING.findall(ratings)
    if len(found) == ratings.count(b'": ') and b"\\" not in ratings:
        return dict(found)
    return {answer_id: _dumps(value) for answer_id, value in _ids(json.loads(ratings)).items()}


def _iso(text: str) -> bytes:
    """PostgreSQL's timestamptz text in UTC ("2026-11-29 12:49:01.12+00", fraction trimmed or
    absent) as rows.iso() writes it ("2026-11-29T12:49:01.120000+00:00"). timestamptz_out is far
    cheaper than to_char, and this is cheaper than a datetime and isoformat()."""
    value = text.encode()
    if value[-3:] != b"+00" or value[10:11] != b" ":
        raise ValueError(f"expected a UTC timestamp from PostgreSQL, got {text!r}")
    whole, _, fraction = value[:-3].partition(b".")
    return whole[:10] + b"T" + whole[11:] + b"." + fraction.ljust(6, b"0") + b"+00:00"


# The same conversion for a whole Arrow column, in C: the fraction is padded by appending six zeros
# and cutting at 26 characters.
_PG_UTC = r"^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$"


def _iso_column(texts: list[str]) -> pa.Array:
    raw = pa.array(texts, pa.string())
    matched = pc.match_substring_regex(raw, _PG_UTC)
    if not pc.all(matched).as_py():
        bad = raw.filter(pc.invert(matched))[0].as_py()
        raise ValueError(f"expected a UTC timestamp from PostgreSQL, got {bad!r}")
    padded = pc.replace_substring_regex(raw, _PG_UTC, r"\1T\2.\3000000")
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(padded, 0, 26), pa.scalar("+00:00"), "")


def _annotation_lines(splicer: _Splicer, chunk: _Chunk) -> tuple[list[bytes], int, int]:
    positions = _positions(chunk)
    sources: dict[str, bytes] = {}  # a project has few sources: each is escaped once
    heads = []
    for _, public_id, text, source, version, round_number in chunk.answers:
        if source not in sources:
            sources[source] = _json_text(source)
        heads.append(
            ANSWER_HEAD
            % (
                _json_text(public_id),
                _json_text(text),
                sources[source],
                b"null" if version is None else b"%d" % version,
                b"null" if round_number is None else b"%d" % round_number,
            )
        )
    out = []
    for row in chunk.rankings:
        task_id, groups, ratings, flags, none_acceptable, annotator, imported, created, updated, prompt = row
        ordered, shape = splicer.ranked(groups)  # every answer keeps its rank here
        ranks = dict(zip(ordered, shape.ranks, strict=True))
        scores = _scores(ratings)
        flagged = _ids(json.loads(flags)) if flags != "{}" else {}
        candidates = b", ".join(
            [
                ANSWER_TAIL
                % (
                    heads[position],
                    ranks.get(answer_id, b"null"),
                    scores.get(answer_id, b"null"),
                    _dumps(flagged[answer_id]) if answer_id in flagged else b"[]",
                )
                for answer_id, position in positions.get(task_id, {}).items()
            ]
        )
        out.append(
            ANNOTATION_LINE
            % (
                b"%d" % task_id,
                splicer.pseudonym(annotator),
                _iso(created),
                _iso(updated),
                prompt.encode(),
                candidates,
                b"true" if none_acceptable else b"false",
                b'"imported"' if imported else b'"annotator"',
            )
        )
    return out, len(out), len(chunk.rankings)


# Parquet for the ranking-based kinds is built from Arrow columns: each answer and each prompt of a
# chunk becomes an Arrow value once and rows gather them by index (take, in C). A preference
# export repeats them in every pair: 5.3 M pairs would be 3.3 GB of JSON to parse.


def _indexes(values: list[int]) -> pa.Array:
    return pa.array(values, pa.int64())


class _Prompts:
    """A chunk's prompts, one per task (rankings come in task order), that rows point at."""

    def __init__(self):
        self._lines: list[bytes] = []
        self._last_task = None

    def index(self, task_id: int, prompt: str) -> int:
        if task_id != self._last_task:
            self._lines.append(b'{"prompt": ' + prompt.encode() + b"}\n")
            self._last_task = task_id
        return len(self._lines) - 1

    def take(self, indexes: list[int]) -> pa.ChunkedArray:
        prompts = read_json_lines(b"".join(self._lines), pa.schema([("prompt", MESSAGES)])).column("prompt")
        return prompts.take(_indexes(indexes))


def _arrow_answers(texts: list[str]) -> pa.Array:
    """[{"role": "assistant", "content": text}] per text, as Arrow values of the MESSAGES type."""
    count = len(texts)
    roles = pa.array(["assistant"], pa.string()).take(pa.array([0] * count, pa.int32()))
    return pa.ListArray.from_arrays(
        pa.array(range(count + 1), pa.int32()),
        pa.StructArray.from_arrays([roles, pa.array(texts, pa.string())], fields=list(MESSAGES.value_type)),
        type=MESSAGES,
    )


def _ranking_table(splicer: _Splicer, chunk: _Chunk) -> tuple[pa.Table, int]:
    positions, prompts = _positions(chunk), _Prompts()
    prompt_of: list[int] = []
    offsets, gathered, ranks = [0], [], []
    for task_id, groups, flags, prompt in chunk.rankings:
        at = positions[task_id]
        ordered, shape = splicer.ranked(groups, flags)
        if len(ordered) >= 2:
            gathered += [at[answer_id] for answer_id in ordered]
            ranks += shape.rank_numbers
            offsets.append(len(gathered))
            prompt_of.append(prompts.index(task_id, prompt))
    answers = _arrow_answers([text for _, _, text in chunk.answers])
    completions = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), answers.take(_indexes(gathered)), type=pa.list_(MESSAGES)
    )
    rank_lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _indexes(ranks))
    columns = [prompts.take(prompt_of), completions, rank_lists]
    return pa.Table.from_arrays(columns, schema=SCHEMAS["ranking"]), len(chunk.rankings)


def _preference_table(splicer: _Splicer, chunk: _Chunk) -> tuple[pa.Table, int]:
    positions, prompts = _positions(chunk), _Prompts()
    prompt_of: list[int] = []
    chosen: list[int] = []
    rejected: list[int] = []
    margins: list[float | None] = []
    pair_mode, with_margin = splicer.pair_mode, splicer.margin
    for task_id, groups, flags, ratings, prompt in chunk.rankings:
        at = positions[task_id]
        ordered, shape = splicer.ranked(groups, flags)
        flat = [at[answer_id] for answer_id in ordered]
        pairs = shape.pairs[pair_mode]
        chosen += [flat[better] for better, _ in pairs]
        rejected += [flat[worse] for _, worse in pairs]
        if with_margin:
            scores = _ids(json.loads(ratings))
            margins += [_margin(scores, ordered[better], ordered[worse]) for better, worse in pairs]
        prompt_of += [prompts.index(task_id, prompt)] * len(pairs)
    answers = _arrow_answers([text for _, _, text in chunk.answers])
    columns = [prompts.take(prompt_of), answers.take(_indexes(chosen)), answers.take(_indexes(rejected))]
    if with_margin:
        columns.append(pa.array(margins, pa.float64()))
    schema = SCHEMAS["preference+margin" if with_margin else "preference"]
    return pa.Table.from_arrays(columns, schema=schema), len(chunk.rankings)


NO_FLAGS: list[str] = []


def _annotation_table(splicer: _Splicer, chunk: _Chunk) -> tuple[pa.Table, int]:
    positions, prompts = _positions(chunk), _Prompts()
    task_ids, annotators, created_at, updated_at, none_acceptable, source_of = [], [], [], [], [], []
    prompt_of: list[int] = []
    offsets, gathered, ranks, ratings, flag_lists = [0], [], [], [], []
    names: dict[int, str] = {}
    for row in chunk.rankings:
        task_id, groups, scores, flags, refused, annotator, imported, created, updated, prompt = row
        ordered, shape = splicer.ranked(groups)  # every answer keeps its rank here
        rank_of = dict(zip(ordered, shape.rank_numbers, strict=True))
        scored = _scores(scores)  # ratings as JSON text: Arrow turns the column into numbers
        flagged = _ids(json.loads(flags)) if flags != "{}" else {}
        answers = positions.get(task_id, {})  # {answer id: its row}, in the task's order
        gathered += answers.values()
        ranks += map(rank_of.get, answers)
        ratings += map(scored.get, answers)
        flag_lists += (
            [flagged.get(answer_id, NO_FLAGS) for answer_id in answers] if flagged else [NO_FLAGS] * len(answers)
        )
        offsets.append(len(gathered))
        prompt_of.append(prompts.index(task_id, prompt))
        task_ids.append(task_id)
        if annotator not in names:
            names[annotator] = splicer.pseudonym(annotator).decode()[1:-1]
        annotators.append(names[annotator])
        created_at.append(created)
        updated_at.append(updated)
        none_acceptable.append(refused)
        source_of.append("imported" if imported else "annotator")
    at = _indexes(gathered)
    answer_columns = [
        pa.array([answer[column] for answer in chunk.answers], kind).take(at)
        for column, kind in ((1, pa.string()), (2, pa.string()), (3, pa.string()), (4, pa.int64()), (5, pa.int64()))
    ]
    values = pa.StructArray.from_arrays(
        [
            *answer_columns,
            pa.array(ranks, pa.int64()),
            pa.array(ratings, pa.binary()).cast(pa.string()).cast(pa.int64()),
            pa.array(flag_lists, pa.list_(pa.string())),
        ],
        fields=list(CANDIDATE),
    )
    count = len(task_ids)
    columns = [
        pa.array(["ranking"] * count, pa.string()),
        pa.array(task_ids, pa.int64()),
        pa.array(annotators, pa.string()),
        _iso_column(created_at),
        _iso_column(updated_at),
        prompts.take(prompt_of),
        pa.nulls(count, pa.string()),
        pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=pa.list_(CANDIDATE)),
        pa.array(none_acceptable, pa.bool_()),
        pa.array(source_of, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMAS["annotations"]), len(chunk.rankings)


SPLICE = {"ranking": _ranking_lines, "preference": _preference_lines, "annotations": _annotation_lines}
TABLES = {"ranking": _ranking_table, "preference": _preference_table, "annotations": _annotation_table}
KINDS = tuple(SPLICE)


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
    imported = ExpressionWrapper(Q(annotator__username=export_rows.IMPORTED_USERNAME), output_field=BooleanField())
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
                        chunks.put(_Chunk(rows, mine), timeout=0.2)
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
    splicer = _Splicer(snapshot)
    done = 0
    with transaction.atomic():
        _repeatable_read()
        with connection.cursor() as cursor:
            # The whole result is read, so plan for all of it (not the first 10%, the cursor
            # default); JIT compiling pays off for analytics, not for this kind of scan.
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL TimeZone = 'UTC'")  # _iso() reads ISO timestamps in UTC
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
