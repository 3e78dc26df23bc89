"""Parquet for the PostgreSQL fast path: a chunk of rankings becomes an Arrow table of the kind's
schema, each chunk's answers and prompts gathered by index instead of built row by row."""

import json

import pyarrow as pa

from training.datasets.exports.splice import (
    Chunk,
    Splicer,
    answer_ids,
    chunk_positions,
    iso_column,
    pair_margin,
    ratings_by_id,
)
from training.datasets.exports.writers import CANDIDATE, MESSAGES, SCHEMAS, read_json_lines


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


def _ranking_table(splicer: Splicer, chunk: Chunk) -> tuple[pa.Table, int]:
    positions, prompts = chunk_positions(chunk), _Prompts()
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


def _preference_table(splicer: Splicer, chunk: Chunk) -> tuple[pa.Table, int]:
    positions, prompts = chunk_positions(chunk), _Prompts()
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
            scores = answer_ids(json.loads(ratings))
            margins += [pair_margin(scores, ordered[better], ordered[worse]) for better, worse in pairs]
        prompt_of += [prompts.index(task_id, prompt)] * len(pairs)
    answers = _arrow_answers([text for _, _, text in chunk.answers])
    columns = [prompts.take(prompt_of), answers.take(_indexes(chosen)), answers.take(_indexes(rejected))]
    if with_margin:
        columns.append(pa.array(margins, pa.float64()))
    schema = SCHEMAS["preference+margin" if with_margin else "preference"]
    return pa.Table.from_arrays(columns, schema=schema), len(chunk.rankings)


NO_FLAGS: list[str] = []


def _annotation_table(splicer: Splicer, chunk: Chunk) -> tuple[pa.Table, int]:
    positions, prompts = chunk_positions(chunk), _Prompts()
    task_ids, annotators, created_at, updated_at, none_acceptable, source_of = [], [], [], [], [], []
    prompt_of: list[int] = []
    offsets, gathered, ranks, ratings, flag_lists = [0], [], [], [], []
    names: dict[int, str] = {}
    for row in chunk.rankings:
        task_id, groups, scores, flags, refused, annotator, imported, created, updated, prompt = row
        ordered, shape = splicer.ranked(groups)  # every answer keeps its rank here
        rank_of = dict(zip(ordered, shape.rank_numbers, strict=True))
        scored = ratings_by_id(scores)  # ratings as JSON text: Arrow turns the column into numbers
        flagged = answer_ids(json.loads(flags)) if flags != "{}" else {}
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
        iso_column(created_at),
        iso_column(updated_at),
        prompts.take(prompt_of),
        pa.nulls(count, pa.string()),
        pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, type=pa.list_(CANDIDATE)),
        pa.array(none_acceptable, pa.bool_()),
        pa.array(source_of, pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMAS["annotations"]), len(chunk.rankings)


TABLES = {"ranking": _ranking_table, "preference": _preference_table, "annotations": _annotation_table}
