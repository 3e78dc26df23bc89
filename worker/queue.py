"""The one way the apps put work on the queue: by the task's name, after the transaction commits.

Services call `enqueue("worker.tasks.NAME", id)` inside their transaction; the message leaves
only once the rows it names are committed (a worker never reads a row that is not there yet),
and nothing leaves when the transaction rolls back. Sending by name means the apps never import
worker.tasks, and worker.tasks never imports the apps at import time, so no import cycle exists:
tasks import the services they call inside their bodies. Routing (`gpu_*` to the gpu queue)
applies to messages sent by name as to any other (CELERY_TASK_ROUTES).
"""

from django.db import transaction

from worker.celery import app


def enqueue(task_name: str, *args) -> None:
    """Send `task_name(*args)` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task_name, *args))


def send(task_name: str, *args) -> None:
    """Send now. For callers that are already past their commit."""
    app.send_task(task_name, args=list(args))
