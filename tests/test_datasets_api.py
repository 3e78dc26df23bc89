"""/api/v1/datasets/ as a researcher's script uses it, with the build run by the task the worker runs."""

import hashlib
import io
import zipfile

import pytest
from rest_framework.test import APIClient

from labeling.models import Demonstration, Ranking
from tests.factories import api_client, label_everything
from worker.tasks import snapshot_build_task

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def snapshot_store(settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def create(client, project, **body):
    response = client.post("/api/v1/datasets/", {"project": project.pk, **body}, format="json")
    return response


def test_researcher_creates_lists_and_downloads_a_snapshot(
    project, annotator, annotator2, researcher, django_capture_on_commit_callbacks
):
    label_everything(project, annotator, annotator2)
    client = api_client(researcher)
    with django_capture_on_commit_callbacks() as callbacks:
        response = create(client, project, kind="preference", format="parquet", filters={"margin": True})
    assert response.status_code == 202, response.content
    snapshot_id = response.json()["id"]
    assert response.json()["status"] == "pending"
    assert len(callbacks) == 1  # the build is enqueued after commit
    snapshot_build_task.apply(args=[snapshot_id])  # what the worker runs
    detail = client.get(f"/api/v1/datasets/{snapshot_id}/").json()
    assert detail["status"] == "ready" and detail["counts"]["rows"] == 5
    data = next(f for f in detail["files"] if f["name"] == "preference.parquet")
    download = client.get(data["url"])
    body = b"".join(download.streaming_content)
    assert hashlib.sha256(body).hexdigest() == data["sha256"] == download["X-Checksum-SHA256"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(client.get(detail["download_url"]).streaming_content)))
    assert sorted(archive.namelist()) == sorted(
        f"snapshot-{snapshot_id}/{n}" for n in ("preference.parquet", "README.md", "manifest.json")
    )
    assert [s["id"] for s in client.get(f"/api/v1/datasets/?project={project.pk}").json()] == [snapshot_id]


def test_redelivered_build_does_nothing_twice(project, annotator, annotator2, researcher):
    label_everything(project, annotator, annotator2)
    snapshot_id = create(api_client(researcher), project, kind="sft").json()["id"]
    snapshot_build_task.apply(args=[snapshot_id])
    first = api_client(researcher).get(f"/api/v1/datasets/{snapshot_id}/").json()
    snapshot_build_task.apply(args=[snapshot_id])
    assert api_client(researcher).get(f"/api/v1/datasets/{snapshot_id}/").json() == first


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "everything"}, "kind"),
        ({"kind": "sft", "format": "csv"}, "format"),
        ({"kind": "sft", "filters": {"date_from": "soon"}}, "date_from"),
        ({"kind": "sft", "project": 999}, "project"),
    ],
)
def test_bad_requests_name_the_field(project, researcher, body, field):
    response = api_client(researcher).post("/api/v1/datasets/", {"project": project.pk, **body}, format="json")
    assert response.status_code == (404 if field == "project" else 400)  # a project that is not there
    assert field in response.json()["errors"]


def test_not_ready_snapshot_is_not_downloadable(project, researcher):
    snapshot_id = create(api_client(researcher), project, kind="sft").json()["id"]
    assert api_client(researcher).get(f"/api/v1/datasets/{snapshot_id}/files/sft.jsonl").status_code == 409


def test_only_researchers_and_admins_export_and_researchers_cannot_label(
    project, annotator, researcher, admin_user, outsider
):
    assert create(api_client(annotator), project, kind="sft").status_code == 403
    assert create(api_client(outsider), project, kind="sft").status_code == 403
    assert create(APIClient(), project, kind="sft").status_code == 401
    assert create(api_client(admin_user), project, kind="sft").status_code == 202
    client = api_client(researcher)
    assert client.get(f"/api/v1/tasks/next/?project={project.pk}").status_code == 403
    assert (
        client.post(
            "/api/v1/tasks/1/demonstration/",
            {"text": "x", "client_id": "6f0c3c52-5a59-4d0e-9a8e-7d1b0c1e5a11"},
            format="json",
        ).status_code
        == 403
    )
    assert client.delete("/api/v1/datasets/1/").status_code == 405
    assert not Demonstration.objects.exists() and not Ranking.objects.exists()


def test_datasets_api_is_in_the_schema(researcher):
    schema = api_client(researcher).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert "/api/v1/datasets/" in schema.content.decode()
