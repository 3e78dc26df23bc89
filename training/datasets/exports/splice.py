"""JSON lines spliced from bytes, for the PostgreSQL fast path (postgres.py): a chunk of rankings
with their tasks' answers becomes ranking, preference or annotation lines byte-for-byte equal to
what the generic path writes (writers.json_line). Ranks and pairs are worked out once per ranking
shape; answers are escaped by the json module's own C encoder."""

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from json.encoder import encode_basestring

import pyarrow as pa
import pyarrow.compute as pc

from training.datasets.exports import shapes


@dataclass
class Chunk:
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


def answer_ids(value: dict) -> dict[bytes, object]:
    return {answer_id.encode(): item for answer_id, item in value.items()}


@dataclass
class Splicer:
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
            flagged = {answer_id for answer_id, names in answer_ids(json.loads(flags)).items() if names}
            kept = shapes.groups_without(kept, flagged)
        return [answer_id for group in kept for answer_id in group], _shape_of(tuple(len(g) for g in kept))

    def pseudonym(self, annotator: int) -> bytes:
        if annotator not in self.pseudonyms:
            self.pseudonyms[annotator] = _dumps(shapes.pseudonym(self.salt, annotator))
        return self.pseudonyms[annotator]


def chunk_positions(chunk: Chunk) -> dict[int, dict[bytes, int]]:
    """{task_id: {answer id: the answer's row in chunk.answers}}, each task's answers in order."""
    positions: dict[int, dict[bytes, int]] = {}
    for position, (task_id, answer_id, *_) in enumerate(chunk.answers):
        of_task = positions.get(task_id)
        if of_task is None:
            of_task = positions[task_id] = {}
        of_task[answer_id.encode()] = position
    return positions


def pair_margin(scores: dict, better: bytes, worse: bytes) -> float | None:
    return float(scores[better] - scores[worse]) if better in scores and worse in scores else None


ASSISTANT = b'[{"role": "assistant", "content": %b}]'
RANKING_LINE = b'{"prompt": %b, "completions": [%b], "ranks": [%b]}\n'


# The JSON Lines splicers return (pieces, lines, rankings read): the pieces are joined once into
# the chunk's bytes, so a line need not be a bytes object of its own (a preference export's 5.3 M
# pairs are 3.3 GB: joining each line and then the chunk copied all of it twice).


def _ranking_lines(splicer: Splicer, chunk: Chunk) -> tuple[list[bytes], int, int]:
    positions = chunk_positions(chunk)
    rendered = [ASSISTANT % _json_text(text) for _, _, text in chunk.answers]
    out = []
    for task_id, groups, flags, prompt in chunk.rankings:
        at = positions[task_id]
        ordered, shape = splicer.ranked(groups, flags)
        if len(ordered) >= 2:
            completions = b", ".join([rendered[at[answer_id]] for answer_id in ordered])
            out.append(RANKING_LINE % (prompt.encode(), completions, b", ".join(shape.ranks)))
    return out, len(out), len(chunk.rankings)


def _preference_lines(splicer: Splicer, chunk: Chunk) -> tuple[list[bytes], int, int]:
    positions = chunk_positions(chunk)
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
        scores = answer_ids(json.loads(ratings))
        for better, worse in pairs:
            margin = pair_margin(scores, ordered[better], ordered[worse])
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


def ratings_by_id(text: str) -> dict[bytes, bytes]:
    """{answer id: rating as JSON text}. jsonb prints {"id": 6, "id2": 2}; ratings are whole numbers
    (validation.ratings_clean), so one regular expression finds every item; anything else (a
    count that does not add up) takes json.loads."""
    if text == "{}":
        return {}
    ratings = text.encode()
    found = _RATING.findall(ratings)
    if len(found) == ratings.count(b'": ') and b"\\" not in ratings:
        return dict(found)
    return {answer_id: _dumps(value) for answer_id, value in answer_ids(json.loads(ratings)).items()}


def iso_bytes(text: str) -> bytes:
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


def iso_column(texts: list[str]) -> pa.Array:
    raw = pa.array(texts, pa.string())
    matched = pc.match_substring_regex(raw, _PG_UTC)
    if not pc.all(matched).as_py():
        bad = raw.filter(pc.invert(matched))[0].as_py()
        raise ValueError(f"expected a UTC timestamp from PostgreSQL, got {bad!r}")
    padded = pc.replace_substring_regex(raw, _PG_UTC, r"\1T\2.\3000000")
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(padded, 0, 26), pa.scalar("+00:00"), "")


def _annotation_lines(splicer: Splicer, chunk: Chunk) -> tuple[list[bytes], int, int]:
    positions = chunk_positions(chunk)
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
        scores = ratings_by_id(ratings)
        flagged = answer_ids(json.loads(flags)) if flags != "{}" else {}
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
                iso_bytes(created),
                iso_bytes(updated),
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


SPLICE = {"ranking": _ranking_lines, "preference": _preference_lines, "annotations": _annotation_lines}
