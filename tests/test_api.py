"""The API as a script or another front end uses it: statuses, bodies, messages that say what is wrong."""

import itertools
import json
import uuid

import pytest
from rest_framework.test import APIClient

from labeling.models import Demonstration, Ranking
from tests.factories import PASSWORD, add_demonstration_task, add_ranking_task, api_client, new_client_id

pytestmark = pytest.mark.django_db


def lease(client, project):
    response = client.get(f"/api/v1/tasks/next/?project={project.pk}")
    assert response.status_code == 200, response.content
    return response.json()


def test_token_login_then_label(annotator, project):
    add_demonstration_task(project)
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    client = APIClient(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    task = lease(client, project)
    assert task["kind"] == "demonstration"
    assert task["messages"] == [{"role": "user", "content": "台灣第一高峰是那一座？"}]
    body = {"text": "玉山。", "client_id": new_client_id()}
    assert client.post(f"/api/v1/tasks/{task['id']}/demonstration/", body, format="json").status_code == 201


def test_token_endpoint_rejects_bad_password_with_a_message(annotator):
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 401  # well formed, wrong credentials
    assert "Unable to log in" in response.json()["detail"]
    missing = APIClient().post("/api/v1/auth/token/", {"username": "alice"})
    assert missing.status_code == 400 and "password" in missing.json()["errors"]


def test_leased_ranking_task_shape(annotator, project):
    add_ranking_task(project, answers=["**bold**", "<script>alert(1)</script>", "plain"])
    task = api_client(annotator).get(f"/api/v1/tasks/next/?project={project.pk}&render=html").json()
    assert task["kind"] == "ranking"
    assert [c["label"] for c in task["candidates"]] == ["A", "B", "C"]
    assert {c["text"] for c in task["candidates"]} == {"**bold**", "<script>alert(1)</script>", "plain"}
    htmls = " ".join(c["html"] for c in task["candidates"])
    assert "<strong>bold</strong>" in htmls and "<script>" not in htmls
    assert task["lease_expires_at"]


def test_nothing_left_is_204(annotator, project):
    assert api_client(annotator).get(f"/api/v1/tasks/next/?project={project.pk}").status_code == 204


def test_same_client_id_twice_returns_the_same_answer(annotator, project):
    add_ranking_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    ids = [c["id"] for c in task["candidates"]]
    body = {
        "ranking": [[ids[2]], [ids[0], ids[1]]],
        "ratings": {ids[2]: 6},
        "flags": {ids[0]: ["harmful"]},
        "none_acceptable": False,
        "client_id": new_client_id(),
    }
    first = client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json")
    second = client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Ranking.objects.count() == 1
    assert first.json()["ranking"] == [[ids[2]], [ids[0], ids[1]]]


def test_submission_answers_are_the_stored_records_as_the_schema_describes(annotator, project):
    """The submit views build their answers directly (not through the ModelSerializers, for speed):
    they must match what those serializers, which the OpenAPI schema shows, say about the stored row."""
    from labeling.api.serializers import DemonstrationOutSerializer, RankingOutSerializer

    add_demonstration_task(project)
    add_ranking_task(project)
    client = api_client(annotator)
    answers = {}
    for _ in range(2):
        task = lease(client, project)
        if task["kind"] == "ranking":
            ids = [c["id"] for c in task["candidates"]]
            body = {
                "ranking": [[ids[1]], [ids[0], ids[2]]],
                "ratings": {ids[1]: 7, ids[0]: 2},
                "flags": {ids[2]: ["harmful", "factually_wrong"]},
                "none_acceptable": True,
                "client_id": new_client_id(),
            }
        else:
            body = {"text": "玉山，海拔 3,952 公尺。\n\n```py\nprint('x')\n```", "client_id": new_client_id()}
        response = client.post(f"/api/v1/tasks/{task['id']}/{task['kind']}/", body, format="json")
        assert response.status_code == 201, response.content
        answers[task["kind"]] = (body, response.json())
    demonstration = Demonstration.objects.get()
    ranking = Ranking.objects.get()
    assert answers["demonstration"][1] == json.loads(json.dumps(DemonstrationOutSerializer(demonstration).data))
    assert answers["ranking"][1] == json.loads(json.dumps(RankingOutSerializer(ranking).data))
    body = answers["ranking"][0]
    assert (ranking.groups, ranking.ratings, ranking.none_acceptable) == (
        body["ranking"],
        body["ratings"],
        True,
    )
    (worst,) = [answer_id for answer_id in body["flags"]]
    assert ranking.flags == {worst: ["factually_wrong", "harmful"]}  # sorted, as flags_clean keeps them
    assert str(ranking.client_id) == body["client_id"]
    assert demonstration.text == answers["demonstration"][0]["text"]


def ranking_bodies(ids):
    good = {"ranking": [[i] for i in ids], "client_id": new_client_id()}
    return {
        "unknown id": {**good, "ranking": [[ids[0]], [ids[1]], ["zzz"]]},
        "repeated id": {**good, "ranking": [[ids[0]], [ids[0]], [ids[1], ids[2]]]},
        "left out": {**good, "ranking": [[ids[0]], [ids[1]]]},
        "not a list": {**good, "ranking": "abc"},
        "ids not strings": {**good, "ranking": [[1], [2], [3]]},
        "empty group": {**good, "ranking": [[], [ids[0]], [ids[1]], [ids[2]]]},
        "missing ranking": {"client_id": new_client_id()},
        "missing client_id": {"ranking": good["ranking"]},
        "client_id not uuid": {**good, "client_id": "abc"},
        "rating out of range": {**good, "ratings": {ids[0]: 8}},
        "rating not a number": {**good, "ratings": {ids[0]: "good"}},
        "rating bool": {**good, "ratings": {ids[0]: True}},
        "rating unknown id": {**good, "ratings": {"zzz": 3}},
        "ratings wrong type": {**good, "ratings": [1, 2]},
        "unknown flag": {**good, "flags": {ids[0]: ["boring"]}},
        "flags not a list": {**good, "flags": {ids[0]: "harmful"}},
        "none_acceptable not bool": {**good, "none_acceptable": "maybe"},
    }


def test_malformed_rankings_get_4xx_with_messages_and_keep_the_lease(annotator, project):
    add_ranking_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    ids = [c["id"] for c in task["candidates"]]
    for name, body in ranking_bodies(ids).items():
        response = client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json")
        assert 400 <= response.status_code < 500, (name, response.status_code)
        assert response.json()["detail"], name
    assert not Ranking.objects.exists()
    good = {"ranking": [[i] for i in ids], "client_id": new_client_id()}
    assert client.post(f"/api/v1/tasks/{task['id']}/ranking/", good, format="json").status_code == 201


def test_field_errors_name_the_field(annotator, project):
    add_ranking_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    response = client.post(
        f"/api/v1/tasks/{task['id']}/ranking/", {"ranking": [["zzz"]], "client_id": new_client_id()}, format="json"
    )
    assert response.status_code == 400
    assert "ranking" in response.json()["errors"]
    assert "zzz" in response.json()["detail"]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"text": "", "client_id": str(uuid.uuid4())}, 400, "empty"),
        ({"text": "   \n ", "client_id": str(uuid.uuid4())}, 400, "empty"),
        ({"text": "x" * 20001, "client_id": str(uuid.uuid4())}, 400, "limit is 20000"),
        ({"text": 12, "client_id": str(uuid.uuid4())}, 400, "text"),
        ({"text": "ok"}, 400, "client_id"),
        ({}, 400, "text"),
    ],
)
def test_bad_demonstrations_are_refused(annotator, project, body, status, words):
    add_demonstration_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    response = client.post(f"/api/v1/tasks/{task['id']}/demonstration/", body, format="json")
    assert response.status_code == status
    assert words in json.dumps(response.json())
    assert not Demonstration.objects.exists()


def test_wrong_task_kind_unknown_task_and_not_your_lease(annotator, annotator2, project):
    add_demonstration_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    body = {"ranking": [["a"]], "client_id": new_client_id()}
    wrong_kind = client.post(f"/api/v1/tasks/{task['id']}/ranking/", body, format="json")
    assert wrong_kind.status_code == 409 and "is a demonstration task" in wrong_kind.json()["detail"]
    demo = {"text": "hi", "client_id": new_client_id()}
    assert client.post("/api/v1/tasks/999999/demonstration/", demo, format="json").status_code == 404
    # An id too large for the id column is no task either: a 404, not a database error.
    for path in ("demonstration/", "skip/", "heartbeat/"):
        huge = client.post(f"/api/v1/tasks/{'9' * 30}/{path}", demo, format="json")
        assert huge.status_code == 404, (path, huge.content)
    other = api_client(annotator2).post(f"/api/v1/tasks/{task['id']}/demonstration/", demo, format="json")
    assert other.status_code == 403
    assert "not leased to you" in other.json()["detail"]


def test_a_client_id_cannot_be_reused_for_another_task(annotator, project):
    add_demonstration_task(project, "one")
    add_demonstration_task(project, "two")
    client = api_client(annotator)
    client_id = new_client_id()
    first = lease(client, project)
    client.post(f"/api/v1/tasks/{first['id']}/demonstration/", {"text": "a", "client_id": client_id}, format="json")
    second = lease(client, project)
    response = client.post(
        f"/api/v1/tasks/{second['id']}/demonstration/", {"text": "b", "client_id": client_id}, format="json"
    )
    assert response.status_code == 409


def test_bad_project_parameter(annotator, project):
    client = api_client(annotator)
    assert client.get("/api/v1/tasks/next/").status_code == 400
    assert client.get("/api/v1/tasks/next/?project=abc").status_code == 400
    assert client.get("/api/v1/tasks/next/?project=424242").status_code == 404
    assert client.get("/api/v1/tasks/next/?project=424242").json()["errors"] == {
        "project": ["There is no project 424242."]
    }
    # Too large for the id column, and digits that are not ASCII: a clear 400, not a database error.
    assert client.get("/api/v1/tasks/next/?project=" + "9" * 30).status_code == 400
    assert client.get("/api/v1/tasks/next/?project=١٢").status_code == 400


def test_garbage_bodies_never_produce_a_500(annotator, project):
    add_ranking_task(project)
    add_demonstration_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    values = [None, 1, -1, 1.5, "", "x", [], {}, [[]], [["x"]], {"a": 1}, True, "\u0000", "🏔" * 3]
    endpoints = ["ranking", "demonstration", "skip", "draft", "heartbeat"]
    keys = ["ranking", "ratings", "flags", "none_acceptable", "client_id", "text", "reason"]
    for endpoint, key, value in itertools.product(endpoints, keys, values):
        method = client.put if endpoint == "draft" else client.post
        response = method(f"/api/v1/tasks/{task['id']}/{endpoint}/", {key: value}, format="json")
        assert response.status_code < 500, (endpoint, key, value, response.content)
    for raw in [b"{", b"[1,2]", b"null", b"\xff\xfe"]:
        response = client.generic("POST", f"/api/v1/tasks/{task['id']}/ranking/", raw, content_type="application/json")
        assert 400 <= response.status_code < 500


def test_skip_heartbeat_and_draft(annotator, project):
    add_demonstration_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    assert client.put(f"/api/v1/tasks/{task['id']}/draft/", {"text": "半個答案"}, format="json").status_code == 200
    assert lease(client, project)["draft"] == "半個答案"
    assert client.post(f"/api/v1/tasks/{task['id']}/heartbeat/").status_code == 200
    assert client.post(f"/api/v1/tasks/{task['id']}/skip/", {"reason": "unsure"}, format="json").status_code == 200
    assert client.get(f"/api/v1/tasks/next/?project={project.pk}").status_code == 204
    assert client.post(f"/api/v1/tasks/{task['id']}/heartbeat/").status_code == 409


def test_progress_and_edit_recent_submission(annotator, project):
    add_demonstration_task(project)
    client = api_client(annotator)
    task = lease(client, project)
    demo = client.post(
        f"/api/v1/tasks/{task['id']}/demonstration/", {"text": "v1", "client_id": new_client_id()}, format="json"
    ).json()
    progress = client.get(f"/api/v1/me/progress/?project={project.pk}").json()
    assert (progress["today"], progress["total"]) == (1, 1)
    assert progress["recent"][0]["editable"] is True
    response = client.patch(f"/api/v1/demonstrations/{demo['id']}/", {"text": "v2"}, format="json")
    assert response.status_code == 200 and response.json()["text"] == "v2"


def test_markdown_preview_is_sanitised(annotator):
    response = api_client(annotator).post(
        "/api/v1/markdown/", {"text": "# Hi\n<img src=x onerror=alert(1)>"}, format="json"
    )
    assert response.status_code == 200
    assert "<h1>Hi</h1>" in response.json()["html"]
    assert "<img" not in response.json()["html"]  # shown as text, not as an element
    assert "&lt;img" in response.json()["html"]


def test_openapi_schema_and_docs_are_served(annotator):
    client = api_client(annotator)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/v1/tasks/next/" in paths and "/api/v1/tasks/{task_id}/ranking/" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_admins_create_projects_through_the_api_with_checked_settings(admin_user, annotator):
    body = {"name": "Closed loop", "k": 4, "overlap": 1, "held_out_share": 0.5}
    assert api_client(annotator).post("/api/v1/projects/", body, format="json").status_code == 403
    created = api_client(admin_user).post("/api/v1/projects/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["held_out_share"] == 0.5 and created.json()["deploy_threshold"] == 0.55
    again = api_client(admin_user).post("/api/v1/projects/", body, format="json")
    assert again.status_code == 409 and "name" in again.json()["errors"]  # the name is taken
    too_many = api_client(admin_user).post(
        "/api/v1/projects/", {**body, "name": "Other", "held_out_share": 0.9}, format="json"
    )
    assert too_many.status_code == 400 and "held_out_share" in too_many.json()["errors"]


def test_images_in_markdown_are_links_that_the_page_never_loads(annotator):
    text = "See ![a pixel](https://tracker.example/p.gif?who=me)\n\n| n | name |\n|--:|:--|\n| 1 | 玉山 |"
    html = api_client(annotator).post("/api/v1/markdown/", {"text": text}, format="json").json()["html"]
    assert "<img" not in html
    assert '<a href="https://tracker.example/p.gif?who=me" class="image-link"' in html
    assert "[image: a pixel]" in html
    assert "style=" not in html  # the CSP would refuse it: alignment is a class
    assert '<td class="align-right">1</td>' in html
