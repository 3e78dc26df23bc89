"""Named role users and small factories, so permission tests read like a matrix."""

import os
import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from labeling import roles, services
from labeling.models import Project

IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct-horse-battery"


def make_user(username: str, *, role: str | None = None, staff: bool = False):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=staff)
    if role:
        roles.role_grant(user=user, role=role)
    return user


@pytest.fixture(autouse=True)
def fresh_cache():
    """Login rate limits live in the cache: one test's failed logins must not lock out the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def annotator(db):
    return make_user("alice", role=roles.ANNOTATOR)


@pytest.fixture
def annotator2(db):
    return make_user("bob", role=roles.ANNOTATOR)


@pytest.fixture
def researcher(db):
    return make_user("rita", role=roles.RESEARCHER)


@pytest.fixture
def admin_user(db):
    return make_user("ada", staff=True)


@pytest.fixture
def outsider(db):
    return make_user("olga")


@pytest.fixture
def project(db):
    return Project.objects.create(name="Mountains", guidelines="# Be *kind*", k=3, overlap=2, lease_seconds=300)


def add_demonstration_task(project, text="台灣第一高峰是那一座？"):
    prompt, _ = services.prompt_create(project=project, messages=text)
    return prompt.tasks.get()


def add_ranking_task(project, text="What is the highest mountain in the world?", answers=None):
    prompt, _ = services.prompt_create(project=project, messages=text, demonstration_task=False)
    answers = answers or [f"answer {i} to {text}" for i in range(project.k)]
    return services.ranking_task_create(prompt=prompt, answers=[{"text": a, "source": "test"} for a in answers])


def api_client(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def new_client_id() -> str:
    return str(uuid.uuid4())


def service_missing(reason: str):
    """Skip a test whose service is absent on a laptop; in CI (CI=true) the same absence fails it."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)
