"""Inputs a hostile or careless client sends get a 400 that names what is wrong, never a 500."""

import pytest

from tests.factories import api_client

pytestmark = pytest.mark.django_db


def nested(depth: int) -> str:
    return '{"username": ' + "[" * depth + "]" * depth + ', "password": "x"}'


@pytest.mark.parametrize("depth", [900, 1000, 5000])
def test_deeply_nested_json_is_a_400_even_on_the_anonymous_token_endpoint(client, depth):
    response = client.post("/api/v1/auth/token/", nested(depth), content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_deeply_nested_json_is_a_400_on_an_authenticated_endpoint(admin_user, project):
    body = f'{{"project": {project.pk}, "config": {"[" * 3000 + "]" * 3000}}}'
    response = api_client(admin_user).post("/api/v1/rounds/", body, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/api/v1/rounds/", "/api/v1/datasets/", "/api/v1/model-versions/", "/api/v1/generation-jobs/"]
)
@pytest.mark.parametrize("value", ["²", "①", "null", "-1", "1.0", "9" * 30])
def test_a_project_id_that_is_not_a_plain_number_is_a_400_naming_it(admin_user, path, value):
    response = api_client(admin_user).get(path, {"project": value})
    assert response.status_code == 400, (path, value, response.status_code)
    assert "project" in response.json()["errors"]


def test_a_good_project_id_still_filters(admin_user, project):
    for path in ("/api/v1/rounds/", "/api/v1/datasets/", "/api/v1/model-versions/", "/api/v1/generation-jobs/"):
        assert api_client(admin_user).get(path, {"project": project.pk}).json() == []


@pytest.mark.parametrize("value", ["abc", "²", "", "9" * 30])
def test_the_datasets_form_with_a_project_that_is_not_an_id_asks_for_one(client, researcher, value):
    client.force_login(researcher)
    page = client.post("/datasets/", {"project": value, "kind": "sft"}, follow=True)
    assert page.status_code == 200 and "Choose a project." in page.content.decode()


@pytest.mark.parametrize("path", ["/api/v1/auth/token/", "/api/v1/rounds/"])
def test_an_oversized_body_is_a_json_413_not_an_html_page(admin_user, path):
    body = '{"username": "' + "a" * (3 * 1024 * 1024) + '"}'
    response = api_client(admin_user).post(path, body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json" and "larger than" in response.json()["detail"]


def test_a_pause_without_paused_is_refused_and_changes_nothing(admin_user, project):
    project.paused = True
    project.save()
    client = api_client(admin_user)
    response = client.post(f"/api/v1/projects/{project.pk}/pause/", {}, format="json")
    assert response.status_code == 400 and "paused" in response.json()["errors"]
    form = client.post(f"/api/v1/projects/{project.pk}/pause/", {"paused": "0"}, format="multipart")
    assert form.status_code == 415 and "detail" in form.json()  # the API takes JSON only
    project.refresh_from_db()
    assert project.paused  # not resumed by a request that forgot the field
    resumed = client.post(f"/api/v1/projects/{project.pk}/pause/", {"paused": False}, format="json")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
