"""Who may do what, as a matrix: each role against each API endpoint."""

import pytest
from rest_framework.test import APIClient

from labeling import leases, submissions
from labeling.models import Hold
from tests.factories import add_demonstration_task, add_ranking_task, api_client, new_client_id

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "annotator", "reviewer", "researcher", "admin"]
DENIED = {401, 403}


@pytest.fixture
def users(annotator, reviewer, researcher, admin_user, outsider):
    return {
        "anonymous": None,
        "outsider": outsider,
        "annotator": annotator,
        "reviewer": reviewer,
        "researcher": researcher,
        "admin": admin_user,
    }


@pytest.fixture
def world(project, annotator2):
    """A task leased to another annotator, so every task endpoint has a real target."""
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator2, project=project)
    demo, _ = submissions.demonstration_submit(
        annotator=annotator2, task_id=lease.task_id, text="bob's", client_id=new_client_id()
    )
    add_ranking_task(project)
    hold = Hold.objects.create(project=project, annotator=annotator2, accuracy=0.4, low=0.2, high=0.6, gold_answers=5)
    return {"project": project, "task": lease.task_id, "demo": demo.pk, "hold": hold.pk}


def endpoint_calls(world):
    p, t, d, h = world["project"].pk, world["task"], world["demo"], world["hold"]
    return {
        "projects": ("get", "/api/v1/projects/", None),
        "demonstration": ("post", f"/api/v1/tasks/{t}/demonstration/", {"text": "x", "client_id": new_client_id()}),
        "ranking": ("post", f"/api/v1/tasks/{t}/ranking/", {"ranking": [["a"]], "client_id": new_client_id()}),
        "skip": ("post", f"/api/v1/tasks/{t}/skip/", {}),
        "heartbeat": ("post", f"/api/v1/tasks/{t}/heartbeat/", {}),
        "draft": ("put", f"/api/v1/tasks/{t}/draft/", {"text": "x"}),
        "progress": ("get", "/api/v1/me/progress/", None),
        "edit others' demonstration": ("patch", f"/api/v1/demonstrations/{d}/", {"text": "stolen"}),
        "markdown": ("post", "/api/v1/markdown/", {"text": "*x*"}),
        "stats": ("get", f"/api/v1/projects/{p}/stats/", None),
        "agreement": ("get", f"/api/v1/projects/{p}/agreement/", None),
        "pause": ("post", f"/api/v1/projects/{p}/pause/", {"paused": False}),
        "gold": ("get", f"/api/v1/projects/{p}/gold/", None),
        "mark gold": ("put", f"/api/v1/tasks/{t}/gold/", {"text": "The reference answer."}),
        "unmark gold": ("delete", f"/api/v1/tasks/{t}/gold/", None),
        "release hold": ("post", f"/api/v1/projects/{p}/holds/{h}/release/", {}),
        "review next": ("get", f"/api/v1/reviews/next/?project={p}", None),
        "review": ("post", f"/api/v1/demonstrations/{d}/reviews/", {"verdict": "accept", "client_id": new_client_id()}),
        "adjudications": ("get", f"/api/v1/projects/{p}/adjudications/", None),
        "adjudicate": ("post", f"/api/v1/tasks/{t}/adjudication/", {"ranking": [["a"]], "client_id": new_client_id()}),
        "schema": ("get", "/api/schema/", None),
        # Last: leasing would make the task above this annotator's own.
        "next": ("get", f"/api/v1/tasks/next/?project={p}", None),
    }


# What each role gets: "ok" is 2xx; "denied" is 401/403; a number is that exact status.
# For annotators, task endpoints on another annotator's task answer 403 ("not leased to you"),
# and another annotator's submission is 404: it does not exist for them.
EXPECTED = {
    "projects": {"anonymous": "denied", "outsider": "denied", "annotator": "ok", "researcher": "ok", "admin": "ok"},
    "next": {"anonymous": "denied", "outsider": "denied", "annotator": "ok", "researcher": "denied", "admin": "denied"},
    "demonstration": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": 403,
        "researcher": "denied",
        "admin": "denied",
    },
    "ranking": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": 403,
        "researcher": "denied",
        "admin": "denied",
    },
    "skip": {"anonymous": "denied", "outsider": "denied", "annotator": 403, "researcher": "denied", "admin": "denied"},
    "heartbeat": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": 403,
        "researcher": "denied",
        "admin": "denied",
    },
    "draft": {"anonymous": "denied", "outsider": "denied", "annotator": 403, "researcher": "denied", "admin": "denied"},
    "progress": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": "ok",
        "researcher": "denied",
        "admin": "denied",
    },
    "edit others' demonstration": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": 404,
        "researcher": "denied",
        "admin": "denied",
    },
    "markdown": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": "ok",
        "researcher": "denied",
        "admin": "denied",
    },
    "stats": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": "denied",
        "researcher": "denied",
        "admin": "ok",
    },
    "agreement": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": "denied",
        "researcher": "ok",
        "admin": "ok",
    },
    "pause": {
        "anonymous": "denied",
        "outsider": "denied",
        "annotator": "denied",
        "researcher": "denied",
        "admin": "ok",
    },
    "schema": {"anonymous": "denied", "outsider": "ok", "annotator": "ok", "researcher": "ok", "admin": "ok"},
    "gold": {"anonymous": "denied", "outsider": "denied", "annotator": "denied", "researcher": "ok", "admin": "ok"},
    **{
        name: {
            "anonymous": "denied",
            "outsider": "denied",
            "annotator": "denied",
            "researcher": "denied",
            "admin": "ok",
        }
        for name in ("mark gold", "unmark gold", "release hold")
    },
}


# Reviewers and admins review demonstrations and adjudicate rankings. The project asks for no
# reviews and the task is a demonstration task, so both pass the role check and get a 409.
REVIEWING = {"anonymous": "denied", "outsider": "denied", "annotator": "denied", "researcher": "denied"}
EXPECTED |= {
    "review next": {**REVIEWING, "reviewer": "ok", "admin": "ok"},
    "review": {**REVIEWING, "reviewer": 409, "admin": 409},
    "adjudications": {**REVIEWING, "reviewer": "ok", "admin": "ok"},
    "adjudicate": {**REVIEWING, "reviewer": 409, "admin": 409},
}
# A reviewer (and nothing else) sees the projects and the schema, and is denied every endpoint of
# the other roles.
for name, row in EXPECTED.items():
    row.setdefault("reviewer", "ok" if name in ("projects", "schema") else "denied")


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(role, users, world):
    client = APIClient() if users[role] is None else api_client(users[role])
    for name, (method, url, body) in endpoint_calls(world).items():
        response = (
            getattr(client, method)(url, body, format="json") if body is not None else getattr(client, method)(url)
        )
        expected = EXPECTED[name][role]
        if expected == "ok":
            assert 200 <= response.status_code < 300, (role, name, response.status_code)
        elif expected == "denied":
            assert response.status_code in DENIED, (role, name, response.status_code)
        else:
            assert response.status_code == expected, (role, name, response.status_code)


def test_annotators_never_see_each_others_work(annotator, annotator2, project):
    add_demonstration_task(project, "one")
    lease = leases.task_next_for(annotator=annotator2, project=project)
    leases.draft_save(annotator=annotator2, task_id=lease.task_id, text="bob's secret draft")
    mine = api_client(annotator).get(f"/api/v1/tasks/next/?project={project.pk}").json()
    assert "bob's secret draft" not in str(mine)
    submissions.demonstration_submit(
        annotator=annotator2, task_id=lease.task_id, text="bob's answer", client_id=new_client_id()
    )
    progress = api_client(annotator).get("/api/v1/me/progress/").json()
    assert (progress["total"], progress["recent"]) == (0, [])


def test_inactive_annotator_is_refused(annotator, project):
    annotator.is_active = False
    annotator.save()
    assert api_client(annotator).get(f"/api/v1/tasks/next/?project={project.pk}").status_code in DENIED


def test_login_attempts_are_rate_limited(annotator, client, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    for expected in (200, 200, 429):  # the third failure locks the username
        assert client.post("/accounts/login/", {"username": "alice", "password": "wrong"}).status_code == expected
    blocked = client.post("/accounts/login/", {"username": "alice", "password": "correct-horse-battery"})
    assert blocked.status_code == 429
    assert b"Too many failed attempts" in blocked.content
