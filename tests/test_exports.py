"""Snapshots as a researcher uses them: each kind and format loads with `datasets`, rows say what
the annotators said, hashes verify, pseudonyms hide who labeled."""

import json

import pytest
from datasets import load_dataset

from labeling import leases, submissions
from labeling.models import Ranking
from tests.factories import DEMO_TEXT, add_ranking_task, label_everything, make_user, new_client_id
from training.datasets.exports.shapes import implied_pairs
from training.datasets.services import snapshot_build, snapshot_create, snapshot_file

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def snapshot_store(settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def build(project, kind, fmt="jsonl", **options):
    snapshot = snapshot_create(project=project, kind=kind, format=fmt, **options)
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready", snapshot.error
    path, _ = snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)
    loader = "parquet" if fmt == "parquet" else "json"
    return snapshot, list(load_dataset(loader, data_files=str(path), split="train"))


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_sft_snapshot_loads_as_trl_messages(project, annotator, annotator2, fmt):
    label_everything(project, annotator, annotator2)
    snapshot, rows = build(project, "sft", fmt)
    assert sorted(row["messages"][-1]["content"] for row in rows) == sorted(DEMO_TEXT.values())
    assert rows[0]["messages"][0] == {"role": "user", "content": "台灣第一高峰是那一座？"}
    assert snapshot.counts["rows"] == 2


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_preference_snapshot_has_every_implied_pair(project, annotator, annotator2, fmt):
    label_everything(project, annotator, annotator2)
    _, rows = build(project, "preference", fmt)
    pairs = sorted((row["chosen"][0]["content"], row["rejected"][0]["content"]) for row in rows)
    # Alice: Everest > {K2, aka} (tie makes no pair); Bob: Everest > aka > K2.
    assert pairs == sorted(
        [
            ("Everest", "K2"),
            ("Everest", "Everest, aka K2"),
            ("Everest", "Everest, aka K2"),
            ("Everest", "K2"),
            ("Everest, aka K2", "K2"),
        ]
    )
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is the highest mountain in the world?"}]


def test_preference_best_versus_worst_with_margin(project, annotator, annotator2):
    label_everything(project, annotator, annotator2)
    _, rows = build(project, "preference", "parquet", pair_mode="best_worst", filters={"margin": True})
    pairs = sorted((r["chosen"][0]["content"], r["rejected"][0]["content"], r["margin"]) for r in rows)
    assert pairs == [("Everest", "Everest, aka K2", None), ("Everest", "K2", 6.0), ("Everest", "K2", 6.0)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ranking_snapshot_ties_share_a_rank(project, annotator, annotator2, fmt):
    label_everything(project, annotator, annotator2)
    _, rows = build(project, "ranking", fmt)
    shapes = sorted((tuple(c[0]["content"] for c in row["completions"]), tuple(row["ranks"])) for row in rows)
    assert shapes == [
        (("Everest", "Everest, aka K2", "K2"), (1, 2, 3)),
        (("Everest", "K2", "Everest, aka K2"), (1, 2, 2)),
    ]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_annotations_snapshot_pseudonymises_annotators(project, annotator, annotator2, fmt):
    label_everything(project, annotator, annotator2)
    snapshot, rows = build(project, "annotations", fmt)
    assert len(rows) == 4
    dumped = json.dumps(rows, default=str)
    for user in (annotator, annotator2):
        assert user.username not in dumped
    by_kind = {(row["kind"], row["annotator"]) for row in rows}
    assert len({a for _, a in by_kind}) == 2  # two people, each with one stable pseudonym
    ranking = next(row for row in rows if row["kind"] == "ranking")
    flagged = {c["text"]: c["flags"] for c in ranking["candidates"]}
    assert flagged["K2"] == ["factually_wrong"]
    assert {c["text"]: c["rating"] for c in ranking["candidates"]}["Everest"] == 7
    _, again = build(project, "annotations", fmt)
    assert {r["annotator"] for r in again}.isdisjoint({r["annotator"] for r in rows})  # unlinkable across snapshots


def test_filters_exclude_flagged_answers_and_none_acceptable(project, annotator, annotator2):
    label_everything(project, annotator, annotator2)
    Ranking.objects.filter(annotator=annotator2).update(none_acceptable=True)
    _, rows = build(project, "ranking", filters={"exclude_flagged": True, "exclude_none_acceptable": True})
    assert [[c[0]["content"] for c in row["completions"]] for row in rows] == [["Everest", "Everest, aka K2"]]


def test_date_filter(project, annotator, annotator2):
    label_everything(project, annotator, annotator2)
    import pyarrow.parquet as pq

    empty = snapshot_create(project=project, kind="sft", format="parquet", filters={"date_to": "2000-01-01"})
    snapshot_build(snapshot_id=empty.pk)
    empty.refresh_from_db()
    assert empty.counts["rows"] == 0
    assert pq.read_table(snapshot_file(snapshot=empty, name="sft.parquet")[0]).num_rows == 0
    snapshot, rows = build(project, "sft", "parquet", filters={"date_from": "2000-01-01"})
    assert len(rows) == 2


def rank_by_three(project, annotator, annotator2, *, carol: list[str]):
    """Overlap 3: alice and bob rank "three" > "two" > "one"; carol ranks as given."""
    project.overlap = 3
    project.save()
    carol_user = make_user("carol", role="annotator")
    task = add_ranking_task(project, "Which is bigger?", answers=["one", "two", "three"])
    agreeing = ["three", "two", "one"]
    for user, order in ((annotator, agreeing), (annotator2, agreeing), (carol_user, carol)):
        lease = leases.task_next_for(annotator=user, project=project)
        ids = {c.text: c.public_id for c in task.candidates.all()}
        submissions.ranking_submit(
            annotator=user, task_id=lease.task_id, ranking=[[ids[t]] for t in order], client_id=new_client_id()
        )


def test_agreement_filter_drops_the_annotator_who_disagrees(project, annotator, annotator2):
    rank_by_three(project, annotator, annotator2, carol=["one", "two", "three"])
    _, rows = build(project, "annotations", filters={"min_agreement": 0.5})
    assert len(rows) == 2


def test_tampered_file_is_refused(project, annotator, annotator2):
    from labeling.errors import Conflict

    label_everything(project, annotator, annotator2)
    snapshot, _ = build(project, "sft")
    path, sha = snapshot_file(snapshot=snapshot, name="sft.jsonl")
    assert sha == snapshot.files[0]["sha256"]
    assert not path.stat().st_mode & 0o222  # stored read-only: changing it takes a deliberate chmod
    path.chmod(0o644)
    path.write_text(path.read_text() + "\n{}")
    with pytest.raises(Conflict, match="SHA-256"):
        snapshot_file(snapshot=snapshot, name="sft.jsonl")


def test_export_command_puts_the_snapshot_at_out_and_a_rerun_leaves_the_first_intact(
    project, annotator, annotator2, tmp_path
):
    """export_dataset --out gets the stored file itself (a hard link when it can: no second copy of
    a large export). Exporting again to the same path replaces the link, never writes through it
    into the first snapshot's stored file."""
    from io import StringIO

    from django.core.management import call_command

    from training.datasets.models import DatasetSnapshot

    label_everything(project, annotator, annotator2)
    out = tmp_path / "export" / "pairs.jsonl"
    for pairs in ("all", "best_worst"):
        call_command(
            "export_dataset",
            project=project.name,
            kind="preference",
            format="jsonl",
            pairs=pairs,
            out=out,
            stdout=StringIO(),
        )
    first, second = DatasetSnapshot.objects.order_by("pk")
    first_path, _ = snapshot_file(snapshot=first, name="preference.jsonl")  # its SHA-256 still matches
    second_path, _ = snapshot_file(snapshot=second, name="preference.jsonl")
    assert out.read_bytes() == second_path.read_bytes() != first_path.read_bytes()
    assert len(out.read_text().splitlines()) == second.counts["rows"] < first.counts["rows"]  # best vs worst only
    assert (tmp_path / "export" / "pairs.README.md").read_text() == (second_path.parent / "README.md").read_text()
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".partial")] == []


def test_dataset_card_documents_the_snapshot(project, annotator, annotator2):
    label_everything(project, annotator, annotator2)
    snapshot, _ = build(project, "preference")
    card = snapshot_file(snapshot=snapshot, name="README.md")[0].read_text()
    assert "data_files: preference.jsonl" in card and snapshot.files[0]["sha256"] in card
    assert "chosen" in card and "rows: 5" in card and project.guidelines in card


@pytest.mark.parametrize("kind", ["sft", "ranking"])
def test_the_frozen_evaluation_split_exports_apart_from_the_training_split(project, annotator, annotator2, kind):
    from labeling.models import Prompt

    label_everything(project, annotator, annotator2)
    Prompt.objects.filter(project=project).update(held_out=False)
    _, everything = build(project, kind)
    Prompt.objects.filter(project=project).update(held_out=True)
    _, evaluation = build(project, kind, filters={"only_held_out": True})
    training = snapshot_create(project=project, kind=kind, filters={"exclude_held_out": True})
    snapshot_build(snapshot_id=training.pk)
    training.refresh_from_db()
    assert len(evaluation) == len(everything) >= 1 and training.counts["rows"] == 0


def test_bad_filters_are_refused_with_the_field(project):
    from labeling.errors import LabelingError

    for filters, field in [
        ({"date_from": "yesterday"}, "date_from"),
        ({"min_agreement": 2}, "min_agreement"),
        ({"colour": "red"}, "filters"),
        ({"round": "x"}, "round"),
        ({"margin": "yes"}, "margin"),
        ({"exclude_held_out": True, "only_held_out": True}, "only_held_out"),
    ]:
        with pytest.raises(LabelingError) as error:
            snapshot_create(project=project, kind="sft", filters=filters)
        assert error.value.field == field


def test_implied_pairs_skip_ties():
    assert list(implied_pairs([["a"], ["b", "c"], ["d"]], "all")) == [
        ("a", "b"),
        ("a", "c"),
        ("a", "d"),
        ("b", "d"),
        ("c", "d"),
    ]
    assert list(implied_pairs([["a", "b"]], "all")) == []
    assert list(implied_pairs([["a"], ["b"], ["c", "d"]], "best_worst")) == [("a", "c"), ("a", "d")]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_consensus_snapshot_merges_each_tasks_rankings_with_weighted_pairs(project, annotator, annotator2, fmt):
    rank_by_three(project, annotator, annotator2, carol=["three", "one", "two"])
    snapshot, rows = build(project, "consensus", fmt)
    assert len(rows) == 1  # one row for the task, not one per annotator
    (row,) = rows
    assert [c[0]["content"] for c in row["completions"]] == ["three", "two", "one"]
    assert row["ranks"] == [1, 2, 3] and row["annotators"] == 3
    weights = {(p["better"], p["worse"]): p["weight"] for p in row["pairs"]}
    # "three" first: all three agree; "two" over "one": two of three, carol outvoted.
    assert set(weights) <= {(0, 1), (0, 2), (1, 2)} and (1, 2) in weights
    assert 0 < weights[(1, 2)] <= weights[(0, 2)] <= 1
    assert "Dawid" in snapshot_file(snapshot=snapshot, name="README.md")[0].read_text()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_weighted_ranking_snapshot_leaves_out_the_pairs_the_consensus_believes_reversed(
    project, annotator, annotator2, fmt
):
    rank_by_three(project, annotator, annotator2, carol=["three", "one", "two"])
    _, rows = build(project, "ranking", fmt, filters={"weighted": True})
    assert len(rows) == 3
    pairs_by_order = {}
    for row in rows:
        texts = [c[0]["content"] for c in row["completions"]]
        pairs_by_order[tuple(texts)] = {(texts[p["better"]], texts[p["worse"]]): p["weight"] for p in row["pairs"]}
    agreeing = pairs_by_order[("three", "two", "one")]
    assert set(agreeing) == {("three", "two"), ("three", "one"), ("two", "one")}
    assert all(0 < weight <= 1 for weight in agreeing.values())
    assert set(pairs_by_order[("three", "one", "two")]) == {("three", "one"), ("three", "two")}
    _, plain = build(project, "ranking", fmt)
    assert "pairs" not in plain[0]
