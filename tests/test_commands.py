"""The manage.py commands behind `make run` and dataset imports."""

import json
import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import CommandError, call_command

from labeling.models import Candidate, Prompt, Task


def run(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def table_counts() -> dict[str, int]:
    return {
        "users": get_user_model().objects.count(),
        "prompts": Prompt.objects.count(),
        "tasks": Task.objects.count(),
        "candidates": Candidate.objects.count(),
    }


@pytest.mark.django_db
def test_seed_demo_twice_adds_nothing_and_the_printed_logins_work():
    first, _ = run("seed_demo")
    after_first = table_counts()
    second, _ = run("seed_demo")

    assert table_counts() == after_first
    assert after_first["prompts"] > 0 and after_first["candidates"] > 0
    assert re.search(r": [1-9]\d* new prompts", first)
    assert ": 0 new prompts" in second
    logins = re.findall(r"^\s+(\w+)\s+(\w+) / (\S+)$", second, re.MULTILINE)
    assert {role for role, _, _ in logins} == {"admin", "annotator", "researcher", "reviewer"}
    for _, username, password in logins:
        assert authenticate(username=username, password=password) is not None, username


@pytest.mark.django_db
def test_the_demo_has_a_frozen_evaluation_split_big_enough_to_judge_a_round_on():
    from labeling.models import Ranking

    run("seed_demo")
    held_out = Prompt.objects.filter(held_out=True)
    assert held_out.count() >= 64  # a win rate on 64 prompts has an interval about ±0.12 wide
    assert Ranking.objects.filter(task__prompt__held_out=True).count() >= 64  # the reward model's test
    assert Prompt.objects.filter(held_out=False).count() >= 48  # and enough left to train on


@pytest.mark.django_db
def test_seed_demo_keeps_a_changed_password():
    run("seed_demo")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-after-setup")
    admin.save()
    run("seed_demo")
    assert authenticate(username="admin", password="changed-after-setup") is not None


def write_jsonl(path, rows: list) -> None:
    path.write_text("\n".join(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows))


def test_import_prompts_jsonl(project, tmp_path):
    source = tmp_path / "prompts.jsonl"
    write_jsonl(
        source,
        [
            {"prompt": "台灣第一高峰是那一座？"},
            {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]},
            {"prompt": "What is the highest mountain?", "answers": ["Everest.", "K2.", "Mount Everest, 8,849 m."]},
            "{not json",
            {"answers": ["no prompt"]},
            "",
            {"prompt": "Too few answers", "answers": ["one", "two"]},
        ],
    )

    out, err = run("import_prompts", str(source), "--project", project.name)

    assert "Imported 3 prompts (1 with ranking tasks)" in out
    assert "3 rows skipped" in out
    skipped = {int(line) for line in re.findall(rf"^{re.escape(str(source))}:(\d+): skipped: ", err, re.MULTILINE)}
    assert skipped == {4, 5, 7}  # line 6 is blank: nothing to report
    assert "not valid JSON" in err and "needs a `prompt` or `messages` field" in err
    assert "needs 3 answers, got 2" in err
    kinds = sorted(Task.objects.filter(project=project).values_list("kind", flat=True))
    assert kinds == ["demonstration", "demonstration", "ranking"]
    ranking = Task.objects.get(project=project, kind="ranking")
    assert ranking.prompt.messages == [{"role": "user", "content": "What is the highest mountain?"}]
    assert sorted(ranking.candidates.values_list("text", flat=True)) == ["Everest.", "K2.", "Mount Everest, 8,849 m."]
    system = Prompt.objects.get(project=project, messages__0__role="system")
    assert system.messages[1] == {"role": "user", "content": "Hi?"}


def test_import_prompts_again_adds_nothing(project, tmp_path):
    source = tmp_path / "prompts.jsonl"
    write_jsonl(source, [{"prompt": "One?"}, {"prompt": "Two?", "answers": ["a", "b", "c"]}])
    run("import_prompts", str(source), "--project", project.name)
    before = table_counts()

    out, err = run("import_prompts", str(source), "--project", str(project.pk))

    assert table_counts() == before
    assert "Imported 0 prompts (0 with ranking tasks); 2 already present; 0 rows skipped." in out
    assert err == ""


def test_import_prompts_csv(project, tmp_path):
    source = tmp_path / "prompts.csv"
    source.write_text(
        'prompt,notes\n"Why is the sky blue?",x\n,empty prompt\n"A prompt, with a comma",\n', encoding="utf-8"
    )

    out, err = run("import_prompts", str(source), "--project", project.name)

    assert "Imported 2 prompts (0 with ranking tasks)" in out
    assert err.strip() == f"{source}:3: skipped: needs a `prompt` or `messages` field"
    texts = sorted(p.messages[0]["content"] for p in Prompt.objects.filter(project=project))
    assert texts == ["A prompt, with a comma", "Why is the sky blue?"]
    assert set(Task.objects.filter(project=project).values_list("kind", flat=True)) == {"demonstration"}


def test_import_prompts_unknown_project_or_file(project, tmp_path):
    source = tmp_path / "prompts.jsonl"
    write_jsonl(source, [{"prompt": "One?"}])
    with pytest.raises(CommandError, match="No project 'Nowhere'"):
        run("import_prompts", str(source), "--project", "Nowhere")
    with pytest.raises(CommandError, match="No file"):
        run("import_prompts", str(tmp_path / "missing.jsonl"), "--project", project.name)
    assert Prompt.objects.count() == 0


def test_import_prompts_rejected_answers_leave_no_prompt_behind(project, tmp_path):
    source = tmp_path / "prompts.jsonl"
    write_jsonl(source, [{"prompt": "Too few answers", "answers": ["one", "two"]}])
    run("import_prompts", str(source), "--project", project.name)
    assert Prompt.objects.count() == 0
    # Fixed file, second import: the ranking task must appear, not "1 already present".
    write_jsonl(source, [{"prompt": "Too few answers", "answers": ["one", "two", "three"]}])
    out, _ = run("import_prompts", str(source), "--project", project.name)
    assert "Imported 1 prompts (1 with ranking tasks)" in out


def test_import_prompts_reports_answers_that_are_not_strings(project, tmp_path):
    source = tmp_path / "prompts.jsonl"
    write_jsonl(source, [{"prompt": "Dict answers", "answers": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}])
    out, err = run("import_prompts", str(source), "--project", project.name)
    assert f"{source}:1: skipped:" in err
