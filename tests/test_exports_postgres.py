"""The PostgreSQL fast path writes exactly what the generic path writes.

Every ranking-based kind, with every option that changes rows, is built twice from the same labels
(once through COPY and byte splicing, once through the ORM) and the files are compared: JSONL byte
for byte (so the SHA-256 matches), Parquet value for value. The labels are chosen to break a naive
splicer: quotes, backslashes, control characters and the splicer's own separators inside answers,
multi-turn prompts, ties, flags, missing ratings, an empty ranking after flags are dropped, imported
preferences, answers from model versions of two rounds, and chunks small enough that a task's
rankings fall into two of them."""

import json

import pyarrow.parquet as pq
import pytest
from django.db import connection

from labeling import imports, leases, services, submissions
from labeling.models import Ranking
from tests.factories import make_user, new_client_id, service_missing
from training.datasets.exports import postgres as export_postgres
from training.datasets.exports import splice
from training.datasets.services import snapshot_build, snapshot_create, snapshot_dir
from training.registry.models import ModelVersion

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

NASTY = [
    'He said "Yushan" \\ is 3,952 m.',
    "line one\nline two\ttabbed\r\n\x01\x02\x1f end",
    'looks like a group break: "], [" and an id break: ", " and {"role": "x"}',
    "玉山 🏔️ 台灣第一高峰",
]


@pytest.fixture(autouse=True)
def snapshot_store(settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        service_missing("the PostgreSQL fast path needs DATABASE_URL=postgres://…")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(export_postgres, "CHUNK_RANKINGS", 3)


def model_versions(project) -> list[ModelVersion]:
    """The model versions of rounds 1 and 2, for answers of two rounds."""
    return [
        ModelVersion.objects.create(
            project=project, name=f"round {n}", round_number=n, storage_path=f"v{n}", content_hash=f"{n}" * 64
        )
        for n in (1, 2)
    ]


def add_nasty_ranking_tasks(project, versions) -> None:
    """Five multi-turn prompts with nasty text, each with three model answers and a person's."""
    for index in range(5):
        conversation = [
            {"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": f"Question {index}: {NASTY[index % 4]}"},
            {"role": "assistant", "content": "Which part?"},
            {"role": "user", "content": "All of it."},
        ]
        prompt, _ = services.prompt_create(project=project, messages=conversation, demonstration_task=False)
        answers = [
            {"text": f"{NASTY[(index + j) % 4]} #{j}", "source": f"model-{j}", "model_version": versions[j % 2]}
            for j in range(3)
        ] + [{"text": "a person's answer", "source": "demo"}]
        services.ranking_task_create(prompt=prompt, answers=answers)


def label_every_task_as(person, turn: int, project) -> None:
    """Each annotator ranks in a way of their own: ties and flags (0), reversed without ratings and
    some none acceptable (1), two halves (2)."""
    while (lease := leases.task_next_for(annotator=person, project=project)) is not None:
        if lease.task.kind == "demonstration":
            submissions.demonstration_submit(
                annotator=person, task_id=lease.task_id, text=NASTY[turn], client_id=new_client_id()
            )
            continue
        ids = [c.public_id for c in lease.task.candidates.order_by("id")]
        groups = [[ids[0]], [ids[1], ids[2]], [ids[3]]] if turn == 0 else [[i] for i in reversed(ids)]
        if turn == 2:
            groups = [ids[:2], ids[2:]]
        submissions.ranking_submit(
            annotator=person,
            task_id=lease.task_id,
            ranking=groups,
            ratings={ids[0]: 7, ids[3]: 2} if turn != 1 else {},
            flags={ids[3]: ["harmful", "factually_wrong"]} if turn == 0 else {},
            none_acceptable=turn == 1 and lease.task_id % 2 == 0,
            client_id=new_client_id(),
        )


def leave_one_ranking_with_a_single_unflagged_answer(person) -> None:
    """After dropping flagged answers, one ranking is left with a single answer: no row for it."""
    last = Ranking.objects.filter(annotator=person).order_by("id").last()
    ids = [c.public_id for c in last.task.candidates.order_by("id")]
    submissions.ranking_edit(
        annotator=person,
        ranking_id=last.pk,
        ranking=[[ids[0]], [ids[1], ids[2], ids[3]]],
        flags={ids[1]: ["harmful"], ids[2]: ["harmful"], ids[3]: ["harmful"]},
    )


def labels(project):
    """Three annotators rank five tasks in different ways; one import; two model versions."""
    project.k, project.overlap = 4, 3
    project.save()
    versions = model_versions(project)
    add_nasty_ranking_tasks(project, versions)
    services.prompt_create(project=project, messages="Write a haiku about 玉山.")
    people = [make_user(name, role="annotator") for name in ("amy", "ben", "cho")]
    for turn, person in enumerate(people):
        label_every_task_as(person, turn, project)
    leave_one_ranking_with_a_single_unflagged_answer(people[0])
    imports.imported_preference_create(
        project=project,
        messages="Is 玉山 taller than 雪山?",
        chosen="Yes, 3,952 m vs 3,886 m.",
        rejected='No "idea"',
        source="hh",
    )
    return versions


def built(project, monkeypatch, fast: bool, **options):
    monkeypatch.setattr(export_postgres, "available", lambda: fast)
    snapshot = snapshot_create(project=project, **options)
    snapshot.salt = "same salt for both builds"
    snapshot.save(update_fields=["salt"])
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready", snapshot.error
    return snapshot, snapshot_dir(snapshot) / snapshot.data_file_name


CASES = [
    {"kind": "ranking"},
    {"kind": "ranking", "filters": {"exclude_flagged": True}},
    {"kind": "preference"},
    {"kind": "preference", "pair_mode": "best_worst"},
    {"kind": "preference", "filters": {"margin": True, "exclude_flagged": True}},
    {"kind": "annotations"},
    {"kind": "annotations", "filters": {"exclude_none_acceptable": True, "round": 2}},
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: json.dumps(case, sort_keys=True))
def test_fast_path_writes_the_same_jsonl_bytes(project, monkeypatch, case):
    labels(project)
    fast, fast_path = built(project, monkeypatch, True, format="jsonl", **case)
    slow, slow_path = built(project, monkeypatch, False, format="jsonl", **case)
    assert fast.counts == slow.counts and fast.counts["rows"] > 0
    assert fast_path.read_bytes() == slow_path.read_bytes()
    assert fast.files[0]["sha256"] == slow.files[0]["sha256"]


@pytest.mark.parametrize("case", CASES, ids=lambda case: json.dumps(case, sort_keys=True))
def test_fast_path_writes_the_same_parquet_values(project, monkeypatch, case):
    labels(project)
    _, fast_path = built(project, monkeypatch, True, format="parquet", **case)
    _, slow_path = built(project, monkeypatch, False, format="parquet", **case)
    fast_table, slow_table = pq.read_table(fast_path), pq.read_table(slow_path)
    assert fast_table.schema == slow_table.schema
    assert fast_table.to_pylist() == slow_table.to_pylist()


def test_rows_carry_the_nasty_text_intact(project, monkeypatch):
    labels(project)
    _, path = built(project, monkeypatch, True, kind="annotations", format="jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    texts = {candidate["text"] for row in rows for candidate in row["candidates"]}
    for nasty in NASTY:
        assert f"{nasty} #0" in texts or f"{nasty} #1" in texts or f"{nasty} #2" in texts
    rounds = {candidate["round"] for row in rows for candidate in row["candidates"]}
    assert rounds == {1, 2, None}
    assert {row["source"] for row in rows} == {"annotator", "imported"}


@pytest.mark.django_db(transaction=True)
def test_progress_shows_outside_the_export_while_it_runs(project, monkeypatch):
    """The export reads in one long transaction; progress goes through a connection of its own, so
    the Datasets page (another connection) sees rows_done grow before the build ends."""
    from django.db import connections

    from training.datasets import services as snapshots
    from training.datasets.models import DatasetSnapshot

    labels(project)
    monkeypatch.setattr(snapshots, "PROGRESS_EVERY_SECONDS", 0)
    seen = []
    original = snapshots._Progress.__call__

    def recorded(self, done):
        original(self, done)
        observer = connections.create_connection("default")
        try:
            with observer.cursor() as cursor:
                cursor.execute(
                    f'SELECT rows_done, status FROM "{DatasetSnapshot._meta.db_table}" WHERE id = %s', [snapshot.pk]
                )
                seen.append(cursor.fetchone())
        finally:
            observer.close()

    monkeypatch.setattr(snapshots._Progress, "__call__", recorded)
    snapshot = snapshot_create(project=project, kind="ranking", format="jsonl")
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready"
    assert len(seen) >= 3
    assert all(status == "running" for _, status in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and 0 < seen[0][0] < snapshot.rows_total


def test_postgres_timestamp_text_becomes_the_generic_paths_iso_text():
    from datetime import UTC, datetime

    from training.datasets.exports.rows import iso

    cases = {
        "2026-11-29 12:49:01.123456+00": datetime(2026, 11, 29, 12, 49, 1, 123456, tzinfo=UTC),
        "2026-11-29 12:49:01.12+00": datetime(2026, 11, 29, 12, 49, 1, 120000, tzinfo=UTC),
        "2026-01-02 03:04:05+00": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    for text, moment in cases.items():
        assert splice.iso_bytes(text) == iso(moment).encode()
    # Parquet converts whole columns at once, the same way.
    assert splice.iso_column(list(cases)).to_pylist() == [iso(moment) for moment in cases.values()]
    for convert in (splice.iso_bytes, lambda text: splice.iso_column([text])):
        with pytest.raises(ValueError, match=r"\+08"):
            convert("2026-11-29 20:49:01+08")


def test_ratings_text_is_read_back_exactly():
    """_scores reads jsonb's text of a ratings object with one regular expression; whatever it
    cannot read exactly (escaped ids, numbers that are not whole) must take json.loads instead."""
    cases = [{"ab12cd34ab12cd34": 6, "0123456789abcdef": 2}, {}, {'a\\"b': 3, "c": 1}, {"x": 1.5, "y": 2}]
    cases += [{'k: "1': 2}, {"a": -1}, {"a": 10}]
    for ratings in cases:
        expected = {answer_id.encode(): json.dumps(value).encode() for answer_id, value in ratings.items()}
        assert splice.ratings_by_id(json.dumps(ratings)) == expected, ratings


def test_a_prompt_longer_than_arrows_json_block_still_exports_to_parquet(project, monkeypatch):
    """Messages may hold 100,000 characters: a row of several such messages is longer than the
    1 MB block Arrow's JSON reader parses at a time."""
    project.k, project.overlap = 2, 1
    project.save()
    long_turn = "玉" * 99_999
    conversation = [
        {"role": "user", "content": long_turn},
        {"role": "assistant", "content": long_turn},
        {"role": "user", "content": long_turn + "?"},
        {"role": "assistant", "content": long_turn},
        {"role": "user", "content": long_turn + "!"},
    ]
    prompt, _ = services.prompt_create(project=project, messages=conversation, demonstration_task=False)
    services.ranking_task_create(
        prompt=prompt, answers=[{"text": "short", "source": "a"}, {"text": "long", "source": "b"}]
    )
    person = make_user("dee", role="annotator")
    lease = leases.task_next_for(annotator=person, project=project)
    ids = [c.public_id for c in lease.task.candidates.order_by("id")]
    submissions.ranking_submit(
        annotator=person, task_id=lease.task_id, ranking=[[ids[1]], [ids[0]]], client_id=new_client_id()
    )
    for kind in ("ranking", "preference"):
        _, fast_path = built(project, monkeypatch, True, kind=kind, format="parquet")
        _, slow_path = built(project, monkeypatch, False, kind=kind, format="parquet")
        rows = pq.read_table(fast_path).to_pylist()
        assert rows == pq.read_table(slow_path).to_pylist()
        assert len(rows) == 1 and rows[0]["prompt"][4]["content"] == long_turn + "!"


@pytest.mark.parametrize("kind", ["preference", "annotations"])
def test_a_task_whose_rankings_span_two_chunks_keeps_its_answers(project, monkeypatch, kind):
    """Chunks of 2 rankings against tasks of 3: every task is cut in two, and the second part
    still finds the task's answers."""
    monkeypatch.setattr(export_postgres, "CHUNK_RANKINGS", 2)
    labels(project)
    _, fast_path = built(project, monkeypatch, True, kind=kind, format="jsonl")
    _, slow_path = built(project, monkeypatch, False, kind=kind, format="jsonl")
    assert fast_path.read_bytes() == slow_path.read_bytes()
