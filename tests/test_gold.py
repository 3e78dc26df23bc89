"""Gold tasks and holds: the accuracy on a hand-computed example (ties included); gold tasks served
at the project's rate, once per annotator, never completed and never told apart from other tasks;
an annotator whose gold accuracy is confidently low put on hold until an admin releases them; their
labels and gold tasks' labels out of snapshots; and what admins, researchers and annotators see."""

import json
import random

import pytest
from datasets import load_dataset

from labeling import leases, roles, submissions
from labeling.imports import prompts_import
from labeling.models import Demonstration, Event, GoldAnswer, Hold, Project, Prompt, Task
from labeling.quality.gold import accuracy_of, gold_accuracy, gold_check, gold_mark, ranking_score
from labeling.quality.selectors import project_agreement
from tests.factories import (
    add_demonstration_task,
    add_ranking_task,
    api_client,
    label_everything,
    make_user,
    new_client_id,
)
from training.datasets.services import snapshot_build, snapshot_create, snapshot_file

pytestmark = pytest.mark.django_db

ON_HOLD = "You are on hold in this project"


@pytest.fixture
def gold_project(db):
    """K=4 rankings, one annotator per task, gold answers counted from the fifth on."""
    return Project.objects.create(name="Gold", k=4, overlap=1, gold_rate=0.25, gold_threshold=0.75, gold_min_answers=5)


@pytest.fixture
def always_gold(monkeypatch):
    """The gold coin always lands on gold (while a gold task is left for the annotator)."""
    monkeypatch.setattr(leases.random, "random", lambda: 0.0)


@pytest.fixture
def settled_at_once(settings):
    """Answers count on the annotator's own page as soon as they are given (no edit window)."""
    settings.SUBMISSION_EDIT_WINDOW_SECONDS = 0


def gold_ranking_task(project, text: str) -> tuple[Task, list[str]]:
    """A ranking task marked gold; its known ranking is its answers in the order they were created."""
    task = add_ranking_task(project, text)
    ids = list(task.candidates.order_by("id").values_list("public_id", flat=True))
    gold_mark(task=task, ranking=[[answer] for answer in ids], actor=None)
    return task, ids


def gold_demonstration_task(project, text: str) -> Task:
    task = add_demonstration_task(project, text)
    gold_mark(task=task, text="Yushan, 3,952 m.", actor=None)
    return task


def ordinary_tasks(project, n: int, prefix: str = "Ordinary") -> None:
    for i in range(n):
        add_demonstration_task(project, f"{prefix} question {i}?")


# --- the accuracy, by hand ------------------------------------------------------------------------


def test_a_ranking_scores_the_share_of_gold_pairs_ordered_alike_and_ties_are_a_choice():
    gold = [["a"], ["b"], ["c"]]
    assert ranking_score(gold, [["a"], ["b"], ["c"]]) == 1
    assert ranking_score(gold, [["a", "b"], ["c"]]) == pytest.approx(2 / 3)  # ab: a tie against the order
    assert ranking_score(gold, [["c"], ["b"], ["a"]]) == 0
    tied_gold = [["a", "b"], ["c"]]
    assert ranking_score(tied_gold, [["a", "b"], ["c"]]) == 1  # only a tie matches a gold tie
    assert ranking_score(tied_gold, [["b"], ["a"], ["c"]]) == pytest.approx(2 / 3)


def test_accuracy_is_the_mean_over_gold_tasks_with_a_bootstrap_interval():
    scores = [1, 2 / 3, 0, 1, 2 / 3]  # the five rankings above
    figures = accuracy_of(scores)
    assert figures.accuracy == pytest.approx(10 / 15) and figures.gold_answers == 5
    low, high = figures.interval
    assert 0 <= low < figures.accuracy < high <= 1
    assert accuracy_of(scores) == figures  # a fixed seed: the same answers, the same interval
    assert accuracy_of([1.0, 1.0, 1.0]).interval == [1.0, 1.0]
    assert accuracy_of([0.5]).interval is None and accuracy_of([]).accuracy is None


def test_a_gold_demonstration_scores_its_review_verdict_and_pending_ones_wait(
    project, annotator, annotator2, always_gold
):
    ordinary_tasks(project, 1)
    tasks = [gold_demonstration_task(project, f"Gold question {i}?") for i in range(3)]
    verdicts = [Demonstration.ReviewState.ACCEPTED, Demonstration.ReviewState.REJECTED, "pending"]
    for task, verdict in zip(tasks, verdicts, strict=True):
        assert leases.task_next_for(annotator=annotator, project=project).task_id == task.pk
        demonstration, _ = submissions.demonstration_submit(
            annotator=annotator, task_id=task.pk, text="Yushan.", client_id=new_client_id()
        )
        Demonstration.objects.filter(pk=demonstration.pk).update(review_state=verdict)
    figures = gold_accuracy(project=project, annotator=annotator)
    assert (figures.accuracy, figures.gold_answers) == (0.5, 2)
    assert gold_accuracy(project=project, annotator=annotator2).gold_answers == 0


# --- serving --------------------------------------------------------------------------------------


def test_gold_tasks_are_served_at_the_projects_rate(gold_project, annotator):
    ordinary_tasks(gold_project, 110)
    gold = {gold_demonstration_task(gold_project, f"Gold question {i}?").pk for i in range(60)}
    random.seed(20261202)
    served = []
    for _ in range(100):
        lease = leases.task_next_for(annotator=annotator, project=gold_project)
        served.append(lease.task_id in gold)
        leases.task_skip(annotator=annotator, task_id=lease.task_id)
    # 25 expected of 100 at rate 0.25; the binomial standard deviation is 4.3.
    assert 25 - 10 <= sum(served) <= 25 + 10, sum(served)


def test_a_rate_of_zero_serves_no_gold_task(gold_project, annotator):
    gold_project.gold_rate = 0
    gold_project.save()
    ordinary_tasks(gold_project, 20)
    gold = {gold_demonstration_task(gold_project, f"Gold question {i}?").pk for i in range(5)}
    for _ in range(20):
        lease = leases.task_next_for(annotator=annotator, project=gold_project)
        assert lease.task_id not in gold
        leases.task_skip(annotator=annotator, task_id=lease.task_id)
    assert leases.task_next_for(annotator=annotator, project=gold_project) is None


def test_a_gold_task_goes_to_each_annotator_once_and_is_never_completed(project, annotator, annotator2, always_gold):
    carol = make_user("carol", role=roles.ANNOTATOR)
    ordinary_tasks(project, 6)
    gold = gold_demonstration_task(project, "What is the highest peak in Taiwan?")
    for user in (annotator, annotator2, carol):  # more than the project's overlap of 2
        lease = leases.task_next_for(annotator=user, project=project)
        assert lease.task_id == gold.pk
        submissions.demonstration_submit(annotator=user, task_id=gold.pk, text="Yushan.", client_id=new_client_id())
        for _ in range(2):
            lease = leases.task_next_for(annotator=user, project=project)
            assert lease.task_id != gold.pk
            leases.task_skip(annotator=user, task_id=lease.task_id)
    gold.refresh_from_db()
    assert (gold.state, gold.completions) == (Task.State.OPEN, 3)


def test_no_gold_task_comes_after_the_queue_ran_dry(project, annotator, always_gold):
    """A task served after "nothing left for you" would be gold for sure: none is."""
    gold_demonstration_task(project, "What is the highest peak in Taiwan?")
    assert leases.task_next_for(annotator=annotator, project=project) is None


def test_a_gold_task_looks_exactly_like_any_other(project, annotator, always_gold):
    ordinary = add_ranking_task(project, "Question one?")
    gold, _ = gold_ranking_task(project, "Question two?")
    client = api_client(annotator)
    seen = {}
    for _ in range(2):
        task = client.get(f"/api/v1/tasks/next/?project={project.pk}&render=html").json()
        seen[task["id"]] = task
        ranking = [[candidate["id"]] for candidate in task["candidates"]]
        body = {"ranking": ranking, "flags": {ranking[0][0]: ["harmful"]}, "client_id": new_client_id()}
        submitted = client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json")
        assert submitted.status_code == 201
        seen[task["id"]]["submitted"] = submitted.json()
        edited = client.patch(f"/api/v1/rankings/{submitted.json()['id']}/", {"ranking": ranking[::-1]}, format="json")
        seen[task["id"]]["edited"] = edited.json()
    first, second = seen[gold.pk], seen[ordinary.pk]  # the gold one came first
    ids = {candidate["id"] for task in (first, second) for candidate in task["candidates"]}

    def shape(value):
        if isinstance(value, dict):  # keyed by answer ids (flags): the keys differ, not the shape
            return {key if key not in ids else "id": shape(item) for key, item in value.items()}
        if isinstance(value, list):
            return [shape(item) for item in value[:1]]
        return type(value).__name__

    assert shape(first) == shape(second)
    recent = client.get("/api/v1/me/progress/").json()["recent"]
    assert shape(recent[0]) == shape(recent[1])
    assert "gold" not in json.dumps([first, recent])


# --- holds ----------------------------------------------------------------------------------------


def answer_gold_tasks(client, project, *, careful: bool, seed: int, up_to: int) -> int:
    """Rank gold tasks as served, carefully (as the gold ranking) or at random; stops at a 403."""
    rng = random.Random(seed)
    for answered in range(up_to):
        response = client.get(f"/api/v1/tasks/next/?project={project.pk}")
        if response.status_code == 403:
            return answered
        task = response.json()
        gold = GoldAnswer.objects.get(task_id=task["id"]).groups
        ranking = [list(group) for group in gold] if careful else [[c["id"]] for c in task["candidates"]]
        if not careful:
            rng.shuffle(ranking)
        body = {"ranking": ranking, "client_id": new_client_id()}
        assert client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json").status_code == 201
    return up_to


def test_a_random_ranker_is_put_on_hold_and_a_careful_one_is_not(
    gold_project, annotator, annotator2, admin_user, always_gold, client
):
    ordinary_tasks(gold_project, 5)
    for i in range(12):
        gold_ranking_task(gold_project, f"Gold question {i}?")
    careless, careful = api_client(annotator), api_client(annotator2)
    answered = answer_gold_tasks(careless, gold_project, careful=False, seed=7, up_to=12)
    assert 5 <= answered < 12  # held after the fifth gold answer at the earliest
    hold = Hold.objects.get(annotator=annotator, released_at__isnull=True)
    assert hold.gold_answers == answered and hold.high < 0.75
    refused = careless.get(f"/api/v1/tasks/next/?project={gold_project.pk}")
    assert refused.status_code == 403 and ON_HOLD in refused.json()["detail"]
    held = Event.objects.get(verb="annotator.held")
    assert held.payload["annotator"] == "alice" and held.payload["hold_id"] == hold.pk
    assert gold_check(project=gold_project, annotator=annotator) == hold  # idempotent

    assert answer_gold_tasks(careful, gold_project, careful=True, seed=0, up_to=12) == 12
    assert not Hold.objects.filter(annotator=annotator2).exists()
    assert gold_accuracy(project=gold_project, annotator=annotator2).accuracy == 1

    client.force_login(annotator)
    assert 'id="on-hold"' in client.get(f"/projects/{gold_project.pk}/label/").content.decode()
    client.force_login(admin_user)
    page = client.get(f"/projects/{gold_project.pk}/admin/").content.decode()
    assert 'id="gold-alert"' in page and "alice (gold accuracy" in page and 'id="gold"' in page
    assert f"/projects/{gold_project.pk}/admin/holds/{hold.pk}/release/" in page and "csrfmiddlewaretoken" in page


def test_release_lets_them_work_again_and_counts_only_answers_given_since(
    gold_project, annotator, admin_user, always_gold
):
    ordinary_tasks(gold_project, 5)
    for i in range(8):
        gold_ranking_task(gold_project, f"Gold question {i}?")
    careless = api_client(annotator)
    answered = answer_gold_tasks(careless, gold_project, careful=False, seed=7, up_to=8)
    hold = Hold.objects.get(annotator=annotator)
    url = f"/api/v1/projects/{gold_project.pk}/holds/{hold.pk}/release/"
    released = api_client(admin_user).post(url)
    assert released.status_code == 200 and released.json()["released_by"] == "ada"
    assert api_client(admin_user).post(url).json() == released.json()  # idempotent
    assert Event.objects.filter(verb="annotator.released").count() == 1
    # Working again; one more careless gold answer is not five since the release.
    assert answer_gold_tasks(careless, gold_project, careful=False, seed=8, up_to=1) == 1
    assert not Hold.objects.filter(annotator=annotator, released_at__isnull=True).exists()
    assert careless.get(f"/api/v1/tasks/next/?project={gold_project.pk}").status_code == 200
    assert answered < 8
    other = Project.objects.create(name="Elsewhere")
    wrong_project = f"/api/v1/projects/{other.pk}/holds/{hold.pk}/release/"
    assert api_client(admin_user).post(wrong_project).status_code == 404


def test_the_release_button_on_the_project_page(gold_project, annotator, admin_user, client):
    hold = Hold.objects.create(
        project=gold_project, annotator=annotator, accuracy=0.4, low=0.3, high=0.5, gold_answers=6
    )
    client.force_login(admin_user)
    response = client.post(f"/projects/{gold_project.pk}/admin/holds/{hold.pk}/release/")
    assert response.status_code == 302 and response["Location"].endswith("#gold")
    hold.refresh_from_db()
    assert hold.released_by == admin_user
    assert 'id="gold-alert"' not in client.get(f"/projects/{gold_project.pk}/admin/").content.decode()


# --- snapshots, agreement -------------------------------------------------------------------------


def build(project, kind, **options):
    snapshot = snapshot_create(project=project, kind=kind, format="jsonl", **options)
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    assert snapshot.status == "ready", snapshot.error
    return snapshot


def build_rows(project, kind, **options) -> list[dict]:
    snapshot = build(project, kind, **options)
    path, _ = snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)
    return list(load_dataset("json", data_files=str(path), split="train"))


def test_snapshots_leave_out_gold_tasks_and_on_request_held_annotators(
    project, annotator, annotator2, settings, tmp_path
):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    label_everything(project, annotator, annotator2)  # a demonstration and a ranking each
    assert len(build_rows(project, "annotations")) == 4
    Hold.objects.create(project=project, annotator=annotator, accuracy=0.4, low=0.3, high=0.5, gold_answers=6)
    assert len(build_rows(project, "annotations")) == 4
    kept = build_rows(project, "annotations", filters={"exclude_held": True})
    assert len(kept) == 2 and len({row["annotator"] for row in kept}) == 1

    ranked = Task.objects.get(project=project, kind=Task.Kind.RANKING)
    assert project_agreement(project=project)["pairwise"]["pairs"] == 3
    ids = list(ranked.candidates.order_by("id").values_list("public_id", flat=True))
    gold_mark(task=ranked, ranking=[[answer] for answer in ids], actor=None)  # after both ranked it
    rows = build_rows(project, "annotations")
    assert {row["kind"] for row in rows} == {"demonstration"} and len(rows) == 2
    assert build(project, "preference").counts["rows"] == 0
    assert project_agreement(project=project)["pairwise"]["pairs"] == 0  # nor in agreement
    assert gold_accuracy(project=project, annotator=annotator).gold_answers == 1


# --- marking, unmarking and importing -------------------------------------------------------------


def test_marking_and_unmarking_a_task_as_gold(project, admin_user):
    task = add_ranking_task(project)
    ids = list(task.candidates.order_by("id").values_list("public_id", flat=True))
    client, url = api_client(admin_user), f"/api/v1/tasks/{task.pk}/gold/"
    body = {"ranking": [[ids[2]], [ids[0], ids[1]]]}
    first = client.put(url, body, format="json")
    assert first.status_code == 200
    assert first.json() == {"task": task.pk, "kind": "ranking", "gold": True, "ranking": body["ranking"], "text": ""}
    assert client.put(url, body, format="json").json() == first.json()  # idempotent
    assert Event.objects.filter(verb="task.gold_marked").count() == 1
    report = client.get(f"/api/v1/projects/{project.pk}/gold/").json()
    assert report["gold_tasks"] == {"ranking": 1, "demonstration": 0, "total": 1}
    task.refresh_from_db()
    assert task.gold and task.state == Task.State.OPEN

    assert client.delete(url).status_code == 204
    assert client.delete(url).status_code == 204  # idempotent
    task.refresh_from_db()
    assert not task.gold and not GoldAnswer.objects.filter(task=task).exists()
    assert Event.objects.filter(verb="task.gold_unmarked").count() == 1

    demonstration = add_demonstration_task(project)
    marked = client.put(f"/api/v1/tasks/{demonstration.pk}/gold/", {"text": "Yushan."}, format="json")
    assert marked.json()["text"] == "Yushan." and marked.json()["ranking"] == []


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("ranking", {}, "ranking"),
        ("ranking", {"text": "Yushan."}, "text"),
        ("ranking", {"ranking": [["nope"]]}, "ranking"),
        ("ranking", {"ranking": "first"}, "ranking"),
        ("ranking", {"ranking": [["FIRST"]]}, "ranking"),  # leaves out answers
        ("demonstration", {}, "text"),
        ("demonstration", {"text": "   "}, "text"),
        ("demonstration", {"text": 5}, "text"),
        ("demonstration", {"text": None}, "text"),
        ("demonstration", {"ranking": [["a"]]}, "ranking"),
    ],
)
def test_a_bad_gold_answer_is_a_400_naming_the_field(project, admin_user, kind, body, field):
    task = add_ranking_task(project) if kind == "ranking" else add_demonstration_task(project)
    if body.get("ranking") == [["FIRST"]]:
        body = {"ranking": [[task.candidates.first().public_id]]}
    response = api_client(admin_user).put(f"/api/v1/tasks/{task.pk}/gold/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    task.refresh_from_db()
    assert not task.gold


def test_gold_of_no_task_is_a_404(admin_user):
    client = api_client(admin_user)
    for task_id in (999, 2**70):
        assert client.put(f"/api/v1/tasks/{task_id}/gold/", {"text": "x"}, format="json").status_code == 404
        assert client.delete(f"/api/v1/tasks/{task_id}/gold/").status_code == 404
    assert client.post(f"/api/v1/projects/{2**70}/holds/1/release/").status_code == 404


def test_imported_rows_can_carry_their_gold_answer(project):
    rows = [
        {"prompt": "Rank these.", "answers": ["one", "two", "three"], "gold": [[2], [0, 1]]},
        {"prompt": "Write this.", "gold": "The reference answer."},
        {"prompt": "Plain."},
        {"prompt": "Out of range.", "answers": ["a", "b", "c"], "gold": [[3], [0, 1]]},
        {"prompt": "Twice.", "answers": ["a", "b", "c"], "gold": [[0], [0, 1, 2]]},
        {"prompt": "Missing one.", "answers": ["a", "b", "c"], "gold": [[0], [1]]},
        {"prompt": "Not groups.", "answers": ["a", "b", "c"], "gold": [0, 1, 2]},
        {"prompt": "Text for a demonstration.", "gold": [[0]]},
    ]
    text = "\n".join(json.dumps(row) for row in rows)
    report = prompts_import(project=project, text=text, fmt="jsonl", source="gold.jsonl")
    assert (report.created, report.gold_tasks) == (3, 2)
    assert [line for line, _ in report.errors] == [4, 5, 6, 7, 8]
    assert all(problem.startswith("`gold`") for _, problem in report.errors)
    assert not Prompt.objects.filter(messages__0__content="Twice.").exists()  # a refused row leaves nothing
    ranking = Task.objects.get(project=project, kind=Task.Kind.RANKING)
    texts = dict(ranking.candidates.values_list("public_id", "text"))
    assert [[texts[i] for i in group] for group in ranking.gold_answer.groups] == [["three"], ["one", "two"]]
    written = Task.objects.get(prompt__messages__0__content="Write this.")
    assert written.gold and written.gold_answer.text == "The reference answer."

    csv_report = prompts_import(
        project=project, text='prompt,gold\nCSV gold?,"Yes, this."\nCSV plain?,\n', fmt="csv", source="gold.csv"
    )
    assert (csv_report.created, csv_report.gold_tasks, csv_report.errors) == (2, 1, [])


# --- what people see ------------------------------------------------------------------------------


def test_annotators_see_their_own_accuracy_and_the_leaderboard_only_when_it_is_on(
    gold_project, annotator, annotator2, always_gold, settled_at_once, client
):
    ordinary_tasks(gold_project, 3)
    for i in range(3):
        gold_ranking_task(gold_project, f"Gold question {i}?")
    answer_gold_tasks(api_client(annotator), gold_project, careful=True, seed=0, up_to=3)
    answer_gold_tasks(api_client(annotator2), gold_project, careful=False, seed=7, up_to=3)
    mine = api_client(annotator).get("/api/v1/me/progress/").json()
    (gold,) = mine["gold"]
    assert gold["accuracy"] == 1 and gold["gold_answers"] == 3 and gold["interval"] == [1.0, 1.0]
    assert gold["on_hold"] is False and mine["leaderboards"] == []

    gold_project.leaderboard = True
    gold_project.save()
    (board,) = api_client(annotator).get("/api/v1/me/progress/").json()["leaderboards"]
    assert {row["annotator"] for row in board["rows"]} == {"alice", "bob"}
    assert set(board["rows"][0]) == {"annotator", "submissions", "gold_accuracy", "gold_answers"}
    client.force_login(annotator)
    page = client.get("/me/").content.decode()
    assert 'id="my-gold"' in page and f'id="leaderboard-{gold_project.pk}"' in page and "bob" in page


def test_answers_still_editable_do_not_move_the_annotators_own_figure(project, annotator, always_gold):
    ordinary_tasks(project, 2)
    gold_ranking_task(project, "Gold question?")
    answer_gold_tasks(api_client(annotator), project, careful=True, seed=0, up_to=1)
    assert gold_accuracy(project=project, annotator=annotator).gold_answers == 1  # what the hold counts
    assert api_client(annotator).get("/api/v1/me/progress/").json()["gold"] == []


def test_researchers_read_the_gold_report(gold_project, annotator, researcher, always_gold):
    ordinary_tasks(gold_project, 2)
    for i in range(2):
        gold_ranking_task(gold_project, f"Gold question {i}?")
    answer_gold_tasks(api_client(annotator), gold_project, careful=True, seed=0, up_to=2)
    report = api_client(researcher).get(f"/api/v1/projects/{gold_project.pk}/gold/").json()
    (row,) = report["annotators"]
    assert row == {
        "annotator": "alice",
        "accuracy": 1.0,
        "interval": [1.0, 1.0],
        "gold_answers": 2,
        "on_hold": False,
        "hold": None,
    }
    assert (report["threshold"], report["min_answers"], report["holds"]) == (0.75, 5, [])


def test_gold_settings_are_edited_with_the_projects_other_settings(admin_user, client):
    created = api_client(admin_user).post(
        "/api/v1/projects/", {"name": "Checked", "gold_rate": 0.2, "leaderboard": True}, format="json"
    )
    assert created.status_code == 201 and created.json()["gold_rate"] == 0.2 and created.json()["leaderboard"]
    too_high = api_client(admin_user).post("/api/v1/projects/", {"name": "Other", "gold_rate": 0.9}, format="json")
    assert too_high.status_code == 400 and "gold_rate" in too_high.json()["errors"]
    admin_user.is_superuser = True  # the Django admin's own permissions, as in tests/test_admin.py
    admin_user.save()
    client.force_login(admin_user)
    form = client.get(f"/admin/labeling/project/{created.json()['id']}/change/").content.decode()
    for name in ("gold_rate", "gold_threshold", "gold_min_answers", "leaderboard"):
        assert f'name="{name}"' in form
