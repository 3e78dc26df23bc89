"""What the annotator's pages rest on: taking back a skipped task (POST tasks/<id>/unskip/), the
skipped tasks on the progress page and in GET me/progress/, the ranking board's starting data on
the progress page, and the rating scale's one wording. The pages themselves are driven in
tests/test_browser.py."""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from labeling import leases, submissions
from labeling.management.commands.seed_demo import GUIDELINES
from labeling.models import Assignment, Event, Hold
from labeling.validation import RATING_SCALE
from tests.factories import add_demonstration_task, add_ranking_task, api_client, new_client_id

pytestmark = pytest.mark.django_db


def skip(user, project, reason="not my subject"):
    """Lease the next task of the project to `user` and skip it; returns the task's id."""
    task_id = leases.task_next_for(annotator=user, project=project).task_id
    leases.task_skip(annotator=user, task_id=task_id, reason=reason)
    return task_id


def unskip(user, task_id):
    return api_client(user).post(f"/api/v1/tasks/{task_id}/unskip/")


def page(user, name="progress", *args) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse(name, args=args)).content.decode()


# --- POST tasks/<id>/unskip/ --------------------------------------------------------------------


def test_undoing_a_skip_leases_the_task_again_with_its_draft(annotator, project):
    add_demonstration_task(project)
    client = api_client(annotator)
    task_id = client.get(f"/api/v1/tasks/next/?project={project.pk}").json()["id"]
    client.put(f"/api/v1/tasks/{task_id}/draft/", {"text": "半個答案"}, format="json")
    client.post(f"/api/v1/tasks/{task_id}/skip/", {"reason": "later"}, format="json")
    assert client.get(f"/api/v1/tasks/next/?project={project.pk}").status_code == 204

    response = client.post(f"/api/v1/tasks/{task_id}/unskip/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["task"], body["project"], body["kind"]) == (task_id, project.pk, "demonstration")
    assert f"Task {task_id} is yours again" in body["detail"]
    assert "Idempotent-Replayed" not in response
    assignment = Assignment.objects.get(task_id=task_id, annotator=annotator)
    assert (assignment.state, assignment.skip_reason, assignment.finished_at) == ("leased", "", None)
    event = Event.objects.get(verb="task.unskipped")
    assert (event.actor, event.task_id, event.payload["skip_reason"]) == (annotator, task_id, "later")
    # The annotate page gets it back as the next task, with the draft.
    served = client.get(f"/api/v1/tasks/next/?project={project.pk}").json()
    assert (served["id"], served["draft"]) == (task_id, "半個答案")


def test_a_retried_undo_answers_the_same_and_changes_nothing(annotator, project):
    add_ranking_task(project)
    task_id = skip(annotator, project)
    first = unskip(annotator, task_id)
    order = Assignment.objects.get(task_id=task_id, annotator=annotator).candidate_order

    again = unskip(annotator, task_id)

    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["lease_expires_at"] == first.json()["lease_expires_at"]
    assert Event.objects.filter(verb="task.unskipped").count() == 1
    assignment = Assignment.objects.get(task_id=task_id, annotator=annotator)
    assert assignment.state == "leased" and assignment.candidate_order == order  # the answers in the same order


def test_a_task_completed_since_the_skip_cannot_come_back(annotator, annotator2, project):
    project.overlap = 1
    project.save()
    add_demonstration_task(project)
    task_id = skip(annotator, project)
    leases.task_next_for(annotator=annotator2, project=project)
    submissions.demonstration_submit(annotator=annotator2, task_id=task_id, text="玉山", client_id=new_client_id())

    response = unskip(annotator, task_id)

    assert response.status_code == 409
    assert (
        response.json()["detail"] == f"Task {task_id} is completed: other annotators finished it after you skipped it."
    )
    assert Assignment.objects.get(task_id=task_id, annotator=annotator).state == "skipped"
    assert not Event.objects.filter(verb="task.unskipped").exists()


def test_a_task_whose_places_are_all_taken_cannot_come_back_until_one_frees(annotator, annotator2, project):
    project.overlap = 1
    project.save()
    add_demonstration_task(project)
    task_id = skip(annotator, project)
    leases.task_next_for(annotator=annotator2, project=project)  # Bob holds the only place

    response = unskip(annotator, task_id)

    assert response.status_code == 409
    assert response.json()["detail"].startswith(f"Every place on task {task_id} is taken by other annotators")
    # Bob skips it too: the place is free again.
    leases.task_skip(annotator=annotator2, task_id=task_id)
    assert unskip(annotator, task_id).status_code == 200


def test_undo_refuses_in_a_paused_project_and_while_on_hold(annotator, project):
    add_demonstration_task(project)
    task_id = skip(annotator, project)
    project.paused = True
    project.save()
    response = unskip(annotator, task_id)
    assert response.status_code == 409 and "paused" in response.json()["detail"]

    project.paused = False
    project.save()
    Hold.objects.create(project=project, annotator=annotator, accuracy=0.4, low=0.2, high=0.6, gold_answers=5)
    response = unskip(annotator, task_id)
    assert response.status_code == 403 and "on hold" in response.json()["detail"]


def test_only_my_own_skips_can_be_undone(annotator, annotator2, project):
    add_demonstration_task(project)
    bobs = skip(annotator2, project)
    assert unskip(annotator, bobs).status_code == 404  # nothing of mine on it
    assert unskip(annotator, 999_999).status_code == 404
    assert unskip(annotator, 2**63).status_code == 404
    assert Assignment.objects.get(task_id=bobs, annotator=annotator2).state == "skipped"


def test_a_submitted_task_is_not_taken_back(annotator, project):
    add_demonstration_task(project)
    task_id = leases.task_next_for(annotator=annotator, project=project).task_id
    submissions.demonstration_submit(annotator=annotator, task_id=task_id, text="玉山", client_id=new_client_id())
    response = unskip(annotator, task_id)
    assert response.status_code == 409 and "recent submissions" in response.json()["detail"]


@pytest.mark.parametrize("role", ["anonymous", "outsider", "researcher", "admin_user", "reviewer"])
def test_only_annotators_undo_skips(role, request, annotator, project):
    add_demonstration_task(project)
    task_id = skip(annotator, project)
    user = None if role == "anonymous" else request.getfixturevalue(role)
    assert unskip(user, task_id).status_code in (401, 403)
    assert Assignment.objects.get(task_id=task_id, annotator=annotator).state == "skipped"


# --- the skipped tasks, listed ------------------------------------------------------------------


def test_progress_lists_my_skipped_tasks_with_whether_each_can_come_back(annotator, annotator2, project):
    project.overlap = 1
    project.save()
    add_demonstration_task(project, "台灣第一高峰是那一座？")
    add_ranking_task(project, "Which is higher?")
    first = skip(annotator, project, reason="too hard")
    second = skip(annotator, project, reason="")
    leases.task_next_for(annotator=annotator2, project=project)  # Bob takes the only place of the first

    skipped = api_client(annotator).get(f"/api/v1/me/progress/?project={project.pk}").json()["skipped"]

    assert [item["task"] for item in skipped] == [second, first]  # newest first
    newest, oldest = skipped
    assert newest["can_unskip"] is True and newest["refusal"] is None
    assert (oldest["kind"], oldest["reason"], oldest["project"]) == ("demonstration", "too hard", project.pk)
    assert oldest["can_unskip"] is False and oldest["refusal"].startswith("Every place on task")
    assert api_client(annotator2).get("/api/v1/me/progress/").json()["skipped"] == []  # only mine


def test_the_progress_page_lists_skipped_tasks_with_undo_where_it_can(annotator, annotator2, project):
    project.overlap = 1
    project.save()
    add_demonstration_task(project, "Explain <script>alert(1)</script> please")
    add_demonstration_task(project, "Write a poem about K2.")
    blocked = skip(annotator, project)
    open_task = skip(annotator, project, reason="not my subject")
    leases.task_next_for(annotator=annotator2, project=project)

    html = page(annotator)

    assert 'id="skipped"' in html and "Write a poem about K2." in html and "not my subject" in html
    assert reverse("api-unskip", args=[open_task]) in html
    assert reverse("api-unskip", args=[blocked]) not in html  # no button: the reason instead
    assert f"Every place on task {blocked} is taken" in html
    assert "<script>alert(1)</script>" not in html


# --- the progress page's ranking board ----------------------------------------------------------


def board_data(html: str) -> dict:
    """The JSON the ranking board of the page's one editable ranking starts from."""
    found = re.search(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert found, "the ranking form carries its board's data"
    return json.loads(found.group(1))


def test_the_progress_page_edits_a_ranking_on_the_board_from_its_current_state(annotator, project):
    add_ranking_task(project, answers=["<b>Yushan</b>", "K2", "Everest"])
    first, second, third = leases.task_next_for(annotator=annotator, project=project).candidate_order
    submissions.ranking_submit(
        annotator=annotator,
        task_id=project.tasks.get().pk,
        ranking=[[second], [first, third]],
        ratings={second: 6},
        flags={first: ["harmful"]},
        none_acceptable=True,
        client_id=new_client_id(),
    )
    html = page(annotator)
    assert "B › A = C" in html  # the summary, in the letters the annotator saw
    assert "<select" not in html  # no rank drop-downs: the board
    data = board_data(html)
    assert [(c["id"], c["label"]) for c in data["candidates"]] == [(first, "A"), (second, "B"), (third, "C")]
    assert data["ranking"] == [[second], [first, third]]
    assert (data["ratings"], data["flags"], data["none_acceptable"]) == ({second: 6}, {first: ["harmful"]}, True)
    by_id = {c["id"]: c["html"] for c in data["candidates"]}
    texts = {c.public_id: c.text for c in project.tasks.get().candidates.all()}
    yushan = next(pid for pid, text in texts.items() if "Yushan" in text)
    assert "<b>" not in by_id[yushan] and "&lt;b&gt;" in by_id[yushan]  # sanitised, as on the annotate page


# --- the rating scale, in one wording -----------------------------------------------------------


def test_the_rating_scale_reads_the_same_in_the_guidelines_and_the_shortcuts(annotator, project):
    scale = str(RATING_SCALE)
    assert scale in GUIDELINES
    html = page(annotator, "annotate", project.pk)
    help_dialog = html[html.index('id="help-dialog"') :]
    assert f"Rate the focused answer. {scale}" in help_dialog
    assert f'data-rating-scale="{scale}"' in html  # the rating buttons' title on the board
    for old_wording in ("1 very bad, 7 excellent", "1 (useless)", "7 (perfect)"):
        assert old_wording not in html and old_wording not in GUIDELINES


def test_the_shortcuts_list_names_the_flag_skip_and_submit_as_shown_keys(annotator, project):
    html = page(annotator, "annotate", project.pk)
    help_dialog = html[html.index('id="help-dialog"') :]
    assert "<kbd>Shift</kbd>+<kbd>1</kbd></td><td>Flag the focused answer, or remove the flag: Fails to follow" in (
        help_dialog
    )
    assert "<kbd>Alt</kbd>+<kbd>S</kbd> anywhere, the answer editor included" in help_dialog
    assert "Submit the ranking in the order shown, without asking" in help_dialog
    assert "You have not changed the order. Submit it as shown?" in html
    assert "Alt+S" in html[html.index('id="skip-open"') :].split(">", 1)[0]  # the skip button's title
