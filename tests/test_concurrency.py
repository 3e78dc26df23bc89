"""Many annotators at once, on whichever database the tests run on (PostgreSQL in CI, SQLite by
default): no task is completed by more annotators than its overlap, and no accepted submission is
lost. Threads use their own database connections, like gunicorn workers. The row-lock test is
PostgreSQL's alone (marked postgres)."""

import threading
from collections import Counter

import pytest
from django.db import connection

from labeling.models import Assignment, Demonstration, Ranking, Task
from tests.factories import (
    add_demonstration_task,
    add_ranking_task,
    api_client,
    make_user,
    new_client_id,
    service_missing,
)

pytestmark = pytest.mark.django_db(transaction=True)

ANNOTATORS = 12
TASKS = 24


def run_in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as error:  # surfaced by the assertion below
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    return results


def label_until_done(client, project_id: int) -> list[tuple[str, int, str]]:
    """Loop next → submit like an annotator; return (kind, task id, client_id) of every 201."""
    accepted = []
    while True:
        response = client.get(f"/api/v1/tasks/next/?project={project_id}")
        assert response.status_code in (200, 204), response.content
        if response.status_code == 204:
            return accepted
        task = response.json()
        client_id = new_client_id()
        if task["kind"] == "ranking":
            body = {"ranking": [[c["id"]] for c in task["candidates"]], "client_id": client_id}
        else:
            body = {"text": f"answer to {task['id']}", "client_id": client_id}
        reply = client.post(f"/api/v1/tasks/{task['id']}/{task['kind']}/", body, format="json")
        assert reply.status_code == 201, reply.content
        accepted.append((task["kind"], task["id"], client_id))


def test_concurrent_annotators_never_exceed_overlap_and_lose_nothing(project):
    project.overlap = 3
    project.save()
    for i in range(TASKS // 2):
        add_demonstration_task(project, f"prompt {i}")
        add_ranking_task(project, f"ranked prompt {i}")
    users = [make_user(f"annotator{i}", role="annotator") for i in range(ANNOTATORS)]

    results = run_in_threads(ANNOTATORS, lambda i: label_until_done(api_client(users[i]), project.pk))

    accepted = [item for result in results for item in result]
    per_task = Counter(task_id for _, task_id, _ in accepted)
    assert len(per_task) == TASKS
    assert set(per_task.values()) == {project.overlap}  # every task done exactly `overlap` times
    stored = set(Demonstration.objects.values_list("client_id", flat=True)) | set(
        Ranking.objects.values_list("client_id", flat=True)
    )
    assert {client_id for _, _, client_id in accepted} == {str(c) for c in stored} and len(stored) == len(accepted)
    assert set(Task.objects.values_list("state", "completions")) == {(Task.State.COMPLETED, project.overlap)}
    assert Assignment.objects.filter(state=Assignment.State.LEASED).count() == 0


def test_concurrent_retries_with_one_client_id_store_one_record(project, annotator):
    add_demonstration_task(project)
    client = api_client(annotator)
    task = client.get(f"/api/v1/tasks/next/?project={project.pk}").json()
    body = {"text": "同一個答案", "client_id": new_client_id()}

    def submit(_):
        response = api_client(annotator).post(f"/api/v1/tasks/{task['id']}/demonstration/", body, format="json")
        return response.status_code, response.json().get("id")

    results = run_in_threads(8, submit)
    assert {status for status, _ in results} == {201}
    assert len({record_id for _, record_id in results}) == 1
    assert Demonstration.objects.count() == 1


def test_many_annotators_racing_for_one_slot(project):
    project.overlap = 1
    project.save()
    add_demonstration_task(project)
    users = [make_user(f"racer{i}", role="annotator") for i in range(10)]

    def ask(i):
        return api_client(users[i]).get(f"/api/v1/tasks/next/?project={project.pk}").status_code

    statuses = Counter(run_in_threads(10, ask))
    assert statuses == Counter({200: 1, 204: 9})


@pytest.mark.postgres
def test_the_sweeper_passes_over_a_lease_whose_task_a_submission_holds(project, annotator):
    """A submission locks the task, then the assignment. The sweeper must not lock the assignment
    and then wait for the task (as its audit row's foreign key check did): the two would deadlock
    and PostgreSQL would abort one of them."""
    from datetime import timedelta

    from django.utils import timezone

    from labeling import leases
    from labeling.models import Event

    if connection.vendor != "postgresql":
        service_missing(
            "row locks are PostgreSQL's; SQLite serialises whole transactions (set DATABASE_URL=postgres://…)"
        )
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    holding, release = threading.Event(), threading.Event()

    def submission_in_progress(_):
        from django.db import transaction

        with transaction.atomic():
            Task.objects.select_for_update().get(pk=lease.task_id)
            holding.set()
            release.wait(30)

    worker = threading.Thread(target=run_in_threads, args=(1, submission_in_progress))
    worker.start()
    assert holding.wait(30)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # waiting at all would fail the test, not hang it
        assert leases.leases_return_expired() == 0
    finally:
        release.set()
        worker.join(30)
    assert leases.leases_return_expired() == 1
    assert Assignment.objects.get(pk=lease.pk).state == Assignment.State.EXPIRED
    assert Event.objects.filter(verb="lease.expired").count() == 1
