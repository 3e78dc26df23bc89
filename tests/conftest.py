"""Fixtures every test module may take: the named role users (so permission tests read like a
matrix), a project, and a cache cleared around each test.

`pytest_plugins` makes the fixtures of tests/ml_fixtures.py (tiny models, the model store) and
tests/queue_fixtures.py (Celery queues of a test's own on Redis) available everywhere too, so no
test module imports a fixture. Helpers that tests import (make_user, add_ranking_task, ...) live in
tests/factories.py; fixtures used by one module only stay in that module.
"""

import pytest

from labeling import roles
from labeling.models import Project
from tests.factories import make_user

pytest_plugins = ["tests.ml_fixtures", "tests.queue_fixtures"]


@pytest.fixture(scope="session", autouse=True)
def translations_compiled():
    """The .mo catalogues Django reads, as `make test` builds them, for a pytest run started by
    hand too (up-to-date catalogues are skipped: milliseconds)."""
    from django.core.management import call_command

    call_command("compile_translations", verbosity=0)


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
def reviewer(db):
    return make_user("rosa", role=roles.REVIEWER)


@pytest.fixture
def admin_user(db):
    return make_user("ada", staff=True)


@pytest.fixture
def outsider(db):
    return make_user("olga")


@pytest.fixture
def project(db):
    return Project.objects.create(name="Mountains", guidelines="# Be *kind*", k=3, overlap=2, lease_seconds=300)
