"""Fixtures for the tests that run a real Celery worker over Redis: the project's app sending to,
and a worker consuming from, a queue of the test's own, removed from Redis afterwards.

tests/conftest.py lists this module in `pytest_plugins`: a test takes `redis_queue` (the default
queue), `redis_gpu_queue` (the gpu_* route) or `redis_interactive_queue` (the interactive_* route)
as an argument and imports nothing. The helpers they share with tests (REDIS_URL, wait_until,
forget_connections, redis_queue_delete) live in tests/factories.py.
"""

import uuid
from contextlib import contextmanager

import pytest
import redis
from celery.signals import task_postrun
from django.db import connections

from tests.factories import REDIS_URL, forget_connections, redis_queue_delete, service_missing
from worker.celery import app


def close_connections(**kwargs) -> None:
    connections.close_all()


def redis_reachable() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        service_missing(f"Redis is not reachable at {REDIS_URL} (set TEST_REDIS_URL)")


@contextmanager
def _app_on_redis(queue: str, **overrides):
    """The project's Celery app sending to Redis with these settings, put back afterwards."""
    overrides = {"broker_url": REDIS_URL, "broker_transport": None, "broker_transport_options": {}, **overrides}
    saved = {key: app.conf[key] for key in overrides}
    app.conf.update(overrides)  # Celery rebuilds its router when task_routes changes
    forget_connections()
    # The worker thread opens its own database connection: close it after each task, or it
    # outlives the test and PostgreSQL refuses to drop the test database.
    task_postrun.connect(close_connections)
    try:
        yield queue
    finally:
        task_postrun.disconnect(close_connections)
        app.conf.update(saved)
        forget_connections()
        redis_queue_delete(queue)


@pytest.fixture
def redis_queue():
    """The project's Celery app, sending to and consuming from a queue of this test's own on Redis."""
    redis_reachable()
    queue = f"test-{uuid.uuid4().hex}"
    # task_default_queue is where .delay() sends a task that has no route.
    with _app_on_redis(queue, task_default_queue=queue):
        yield queue


@pytest.fixture
def redis_gpu_queue():
    """The app sending to Redis; gpu_* tasks routed to a gpu queue of this test's own."""
    redis_reachable()
    queue = f"gpu-test-{uuid.uuid4().hex}"
    with _app_on_redis(queue, task_routes={"worker.tasks.gpu_*": {"queue": queue}}):
        assert app.amqp.router.route({}, "worker.tasks.gpu_generate_candidates")["queue"].name == queue
        yield queue


@pytest.fixture
def redis_interactive_queue():
    """The app sending to Redis; interactive_* tasks (playground, arena) to a queue of this test's own."""
    redis_reachable()
    queue = f"interactive-test-{uuid.uuid4().hex}"
    with _app_on_redis(queue, task_routes={"worker.tasks.interactive_*": {"queue": queue}}):
        assert app.amqp.router.route({}, "worker.tasks.interactive_arena_battle")["queue"].name == queue
        yield queue
