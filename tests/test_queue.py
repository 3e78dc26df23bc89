"""Celery through real workers: over Redis (production) and over the embedded filesystem broker
(`make run`). A task is only done when a worker has consumed the message and the database shows it."""

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from labeling import leases
from labeling.models import Assignment, Project
from tests.factories import add_demonstration_task, wait_until
from worker.celery import app
from worker.tasks import leases_return_expired

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_expired_lease_returns_through_a_redis_worker(redis_queue, annotator, annotator2):
    project = Project.objects.create(name="One slot", k=3, overlap=1, lease_seconds=300)
    add_demonstration_task(project)
    lease = leases.task_next_for(annotator=annotator, project=project)
    Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    with start_worker(app, queues=[redis_queue], perform_ping_check=False, shutdown_timeout=30):
        leases_return_expired.delay()
        wait_until(lambda: Assignment.objects.get(pk=lease.pk).state == "expired", what="the lease to expire")

    second = leases.task_next_for(annotator=annotator2, project=project)
    assert second is not None and second.task_id == lease.task_id


def subprocess_env(var_dir: Path) -> dict[str, str]:
    """`make run`'s configuration: no broker URL (so filesystem://), SQLite under var_dir."""
    env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "CACHE_URL", "DEBUG"}}
    env.update(
        YUSHAN_VAR_DIR=str(var_dir),
        DATABASE_URL=f"sqlite:///{var_dir / 'yushan.sqlite3'}",
        DJANGO_SETTINGS_MODULE="feedback_site.settings",
    )
    return env


def run_python(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


SEND_EXPIRED_LEASE = """
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from labeling import leases, roles, services
from labeling.models import Assignment, Project
from worker.tasks import leases_return_expired

annotator = get_user_model().objects.create_user("alice", password="correct-horse-battery")
roles.role_grant(user=annotator, role=roles.ANNOTATOR)
project = Project.objects.create(name="One slot", k=3, overlap=1, lease_seconds=300)
services.prompt_create(project=project, messages="台灣第一高峰是那一座？")
lease = leases.task_next_for(annotator=annotator, project=project)
Assignment.objects.filter(pk=lease.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
leases_return_expired.delay()
print(lease.pk)
"""


@pytest.fixture
def filesystem_worker(tmp_path):
    """A real `celery worker` process on the embedded broker, stopped (and gone) after the test."""
    env = subprocess_env(tmp_path)
    run_python(["manage.py", "migrate", "--noinput"], env)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", *"celery -A worker.celery worker --pool solo --queues default --loglevel INFO".split()],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield env, tmp_path
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    log.close()


def test_expired_lease_returns_through_the_embedded_broker(filesystem_worker):
    env, var_dir = filesystem_worker
    lease_id = int(run_python(["-c", "import django; django.setup()\n" + SEND_EXPIRED_LEASE], env))

    db = sqlite3.connect(var_dir / "yushan.sqlite3")

    def lease_state() -> str:
        return db.execute("SELECT state FROM labeling_assignment WHERE id = ?", (lease_id,)).fetchone()[0]

    try:
        wait_until(lambda: lease_state() == "expired", seconds=60, what=f"the worker (log: {var_dir / 'worker.log'})")
        events = db.execute("SELECT count(*) FROM labeling_event WHERE verb = 'lease.expired'").fetchone()[0]
    finally:
        db.close()
    assert events == 1
    assert "leases_return_expired" in (var_dir / "worker.log").read_text()


def filesystem_channel(folder: Path):
    """A channel of the embedded broker's transport, as the settings configure it, on a folder of its own."""
    from kombu import Connection

    from worker.broker import Transport

    connection = Connection(
        "filesystem://",
        transport=Transport,
        transport_options={"data_folder_in": str(folder), "data_folder_out": str(folder), "store_processed": False},
    )
    return connection, connection.default_channel


def test_make_runs_broker_is_the_one_whose_messages_appear_whole(tmp_path):
    env = subprocess_env(tmp_path)
    code = "from worker.celery import app\nwith app.connection_for_write() as c: print(type(c.transport).__module__)"
    assert run_python(["-c", code], env).strip() == "worker.broker"


def test_a_worker_polling_while_a_message_is_written_finds_it_whole_or_not_at_all(tmp_path, monkeypatch):
    """kombu's own channel creates the file, then writes it: a worker polling in between read an empty
    file and died on the JSON error, losing the message. Here a poll in the middle of the write finds
    nothing, and the poll after it the whole message."""
    from queue import Empty

    import kombu.transport.filesystem

    import worker.broker

    connection, channel = filesystem_channel(tmp_path)
    seen_mid_write = []

    class PollingBeforeEachWrite:
        def __init__(self, *args, **kwargs):
            self.file = open(*args, **kwargs)

        def write(self, data):
            try:
                seen_mid_write.append(channel._get("gpu"))
            except Empty:
                seen_mid_write.append(None)
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    for module in (worker.broker, kombu.transport.filesystem):  # whichever channel writes, through its `open`
        monkeypatch.setattr(module, "open", PollingBeforeEachWrite, raising=False)
    message = {"body": "x" * 100_000, "headers": {"task": "worker.tasks.gpu_round_stage_run"}}
    channel._put("gpu", message)
    monkeypatch.undo()
    assert seen_mid_write == [None]
    assert channel._get("gpu") == message
    assert not os.listdir(tmp_path)  # taken, and no partial file left behind
    connection.release()
