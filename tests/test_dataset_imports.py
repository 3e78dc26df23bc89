"""Bringing existing datasets into a project: TRL preference pairs, Anthropic HH transcripts,
conversations. Bad rows are reported by line; re-imports add nothing."""

import json

import pytest
from django.core.management import call_command

from labeling.imports import dataset_import, hh_parse
from labeling.models import Demonstration, Ranking, Task

pytestmark = pytest.mark.django_db

HH_CHOSEN = (
    "\n\nHuman: What is the highest mountain in Taiwan?\n\nAssistant: Yushan, 3,952 m."
    "\n\nHuman: And in Japan?\n\nAssistant: Mount Fuji, 3,776 m."
)
HH_REJECTED = (
    "\n\nHuman: What is the highest mountain in Taiwan?\n\nAssistant: Yushan, 3,952 m."
    "\n\nHuman: And in Japan?\n\nAssistant: K2."
)


def jsonl(*rows) -> str:
    return "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def test_hh_parser_reads_multi_turn_transcripts():
    assert hh_parse(HH_CHOSEN) == [
        {"role": "user", "content": "What is the highest mountain in Taiwan?"},
        {"role": "assistant", "content": "Yushan, 3,952 m."},
        {"role": "user", "content": "And in Japan?"},
        {"role": "assistant", "content": "Mount Fuji, 3,776 m."},
    ]


def test_hh_import_makes_k2_rankings_with_the_shared_prefix_as_prompt(project):
    report = dataset_import(
        project=project, text=jsonl({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}), fmt="hh", source="hh.jsonl"
    )
    assert (report.created, report.errors) == (1, [])
    ranking = Ranking.objects.get()
    task = ranking.task
    assert task.prompt.messages[-1] == {"role": "user", "content": "And in Japan?"}
    assert len(task.prompt.messages) == 3
    texts = {c.public_id: c.text for c in task.candidates.all()}
    assert [[texts[i] for i in g] for g in ranking.groups] == [["Mount Fuji, 3,776 m."], ["K2."]]
    assert ranking.annotator.username == "imported" and not ranking.annotator.is_active
    assert task.state == Task.State.COMPLETED  # never served to annotators


def test_trl_preferences_conversational_plain_and_implicit(project):
    text = jsonl(
        {"prompt": "Capital of Taiwan?", "chosen": "Taipei.", "rejected": "Tainan."},
        {
            "prompt": [{"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
        {
            "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}],
        },
    )
    report = dataset_import(project=project, text=text, fmt="preferences", source="prefs.jsonl")
    assert (report.created, report.errors) == (3, [])
    assert Ranking.objects.count() == 3
    again = dataset_import(project=project, text=text, fmt="preferences", source="prefs.jsonl")
    assert (again.created, again.duplicates) == (0, 3)
    assert Ranking.objects.count() == 3


def test_bad_rows_are_reported_by_line_and_skipped(project):
    text = jsonl(
        {"prompt": "ok", "chosen": "a", "rejected": "b"},
        "{not json",
        {"prompt": "same", "chosen": "x", "rejected": "x"},
        {"prompt": "no rejected", "chosen": "a"},
        [1, 2],
        {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: bye\n\nAssistant: b"},
    )
    report = dataset_import(project=project, text=text, fmt="preferences", source="bad.jsonl")
    assert report.created == 1
    assert [line for line, _ in report.errors] == [2, 3, 4, 5, 6]
    hh = dataset_import(
        project=project,
        text=jsonl({"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: bye\n\nAssistant: b"}),
        fmt="hh",
        source="x",
    )
    assert "differ before their last answer" in hh.errors[0][1]


def test_conversations_become_demonstrations(project):
    text = jsonl(
        {
            "messages": [
                {"role": "user", "content": "台灣第一高峰是那一座？"},
                {"role": "assistant", "content": "玉山。"},
            ]
        },
        {"messages": [{"role": "user", "content": "no answer"}]},
    )
    report = dataset_import(project=project, text=text, fmt="conversations", source="c.jsonl")
    assert report.created == 1 and report.errors[0][0] == 2
    assert Demonstration.objects.get().text == "玉山。"


def test_import_dataset_command(project, tmp_path, capsys):
    path = tmp_path / "hh.jsonl"
    path.write_text(jsonl({"chosen": HH_CHOSEN, "rejected": HH_REJECTED}, "oops"), encoding="utf-8")
    call_command("import_dataset", str(path), project=project.name, format="hh")
    out, err = capsys.readouterr()
    assert "Imported 1 rows" in out and "hh.jsonl:2: skipped" in err
