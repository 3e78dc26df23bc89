"""Every operation in the API schema, sent what a hostile or careless client sends: NUL bytes,
invalid UTF-8, the wrong content type, a list where an object belongs, a huge array, negative
and 64-bit-overflowing ids in the path and in the body, non-finite numbers. The answer is a 4xx
JSON error with a `detail` message, never a 5xx, and never an HTML page."""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator

from tests.factories import api_client

pytestmark = pytest.mark.django_db

OVERFLOW = 2**63  # one past the largest bigint
PATH_IDS = ["0", str(OVERFLOW), "9" * 30, "-1"]
FIELDS = ("project", "task", "model_version", "text", "ranking", "name", "config", "sampling", "username")


def operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, item in schema["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                found.append((path, method))
    return sorted(found)


def with_ids(path: str, value: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", value, path)


@pytest.fixture
def real_ids(annotator, project):
    """Rows the annotator may act on, so that bodies reach validation instead of a 404: a leased
    task of each kind, and a submitted demonstration and ranking."""
    from labeling import leases, submissions
    from tests.factories import add_demonstration_task, add_ranking_task, new_client_id

    done_demo, done_ranking = add_demonstration_task(project), add_ranking_task(project)
    leases.task_next_for(annotator=annotator, project=project)
    demonstration, _ = submissions.demonstration_submit(
        annotator=annotator, task_id=done_demo.pk, text="玉山", client_id=new_client_id()
    )
    leases.task_next_for(annotator=annotator, project=project)
    ids = [c.public_id for c in done_ranking.candidates.all()]
    ranking, _ = submissions.ranking_submit(
        annotator=annotator, task_id=done_ranking.pk, ranking=[ids], client_id=new_client_id()
    )
    open_demo, open_ranking = add_demonstration_task(project), add_ranking_task(project)
    leases.task_next_for(annotator=annotator, project=project)
    leases.task_next_for(annotator=annotator, project=project)
    return {
        "/api/v1/tasks/": [str(open_demo.pk), str(open_ranking.pk)],
        "/api/v1/demonstrations/": [str(demonstration.pk)],
        "/api/v1/rankings/": [str(ranking.pk)],
        "/api/v1/projects/": [str(project.pk)],
    }


def ids_for(path: str, real: dict) -> list[str]:
    return PATH_IDS + next((ids for prefix, ids in real.items() if path.startswith(prefix)), [])


def bodies() -> list[tuple[str, bytes | str, str]]:
    """(what, body, content type)."""
    cases = [
        ("invalid UTF-8", b'{"text": "\xff\xfe"}', "application/json"),
        ("not JSON", b"{'text': 1,", "application/json"),
        ("plain text", "text=hello", "text/plain"),
        ("a list", "[1, 2, 3]", "application/json"),
        ("a string", '"hello"', "application/json"),
        ("huge array", json.dumps({field: list(range(20_000)) for field in FIELDS}), "application/json"),
    ]
    for what, value in (
        ("NUL bytes", "\u0000"),
        ("overflowing id", OVERFLOW),
        ("negative id", -1),
        ("a float id", 1.5),
        ("null", None),
        ("an object", {"a": {"b": [None]}}),
    ):
        cases.append((what, json.dumps({field: value for field in FIELDS}), "application/json"))
    cases.append(("infinity", '{"project": 1e400, "sampling": {"temperature": 1e400}}', "application/json"))
    return cases


FIELD_CASES = {
    "NUL bytes",
    "overflowing id",
    "negative id",
    "a float id",
    "null",
    "an object",
    "infinity",
    "huge array",
}


def check(response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), (what, response["Content-Type"])
        body = response.json()
        assert "detail" in body, (what, response.content[:300])
        if response.status_code == 400 and what.split(": ")[-1] in FIELD_CASES:
            assert body.get("errors"), (what, body)  # which field is wrong, for the form to show


@pytest.mark.parametrize("role", ["admin", "annotator"])
def test_no_operation_answers_hostile_input_with_a_5xx(role, admin_user, annotator, project, real_ids):
    client = api_client(admin_user if role == "admin" else annotator)
    assert len(operations()) >= 30  # the whole API, not an empty list
    for path, method in operations():
        send = getattr(client, method)
        for value in ids_for(path, real_ids) if "{" in path else [None]:
            url = with_ids(path, value) if value else path
            if method in ("get", "delete"):
                check(send(url, {"project": str(OVERFLOW)}), f"{method} {url}")
                continue
            for what, body, content_type in bodies():
                check(send(url, body, content_type=content_type), f"{method} {url}: {what}")


@pytest.mark.parametrize("value", ["\u0000", "9" * 30, "-1", "1e400", "①"])
def test_query_parameters_of_every_list_are_checked(admin_user, project, value):
    client = api_client(admin_user)
    for path, method in operations():
        if method == "get" and "{" not in path:
            for name in ("project", "page", "limit", "status", "render"):
                check(client.get(path, {name: value}), f"GET {path}?{name}={value!r}")
