"""Settings read the environment once, at import, so each case runs Django in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL_KEY = "a-secret-of-our-own-" + "k" * 40
# What the process inherits must not decide the outcome: CI sets DATABASE_URL, for one.
CLEARED = ("DEBUG", "SECRET_KEY", "YUSHAN_PRODUCTION", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")


def django_run(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {name: value for name, value in os.environ.items() if name not in CLEARED}
    base.update(DJANGO_SETTINGS_MODULE="feedback_site.settings", YUSHAN_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        env=base,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_debug(tmp_path):
    result = django_run("", tmp_path, YUSHAN_PRODUCTION="1", DEBUG="1", SECRET_KEY=REAL_KEY)
    assert result.returncode != 0
    assert "ImproperlyConfigured: YUSHAN_PRODUCTION=1 requires DEBUG=0." in result.stderr


def test_debug_off_refuses_the_default_secret_key(tmp_path):
    for env in ({"DEBUG": "0"}, {"DEBUG": "0", "YUSHAN_PRODUCTION": "1"}):
        result = django_run("", tmp_path, **env)
        assert result.returncode != 0, env
        assert "ImproperlyConfigured: Set SECRET_KEY to a secret of your own when DEBUG is off." in result.stderr


def test_production_starts_with_a_real_key(tmp_path):
    code = "from django.conf import settings as s; print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)"
    result = django_run(code, tmp_path, YUSHAN_PRODUCTION="1", DEBUG="0", SECRET_KEY=REAL_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True"]


def test_development_defaults_start_without_configuration(tmp_path):
    result = django_run("from django.conf import settings as s; print(s.DEBUG)", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_database_url_switches_engines(tmp_path):
    code = "from django.conf import settings as s; d = s.DATABASES['default']; print(d['ENGINE'], d['NAME'])"
    default = django_run(code, tmp_path)
    postgres = django_run(code, tmp_path, DATABASE_URL="postgres://yushan:pw@db.example:5432/yushan")
    assert default.stdout.split() == ["django.db.backends.sqlite3", str(tmp_path / "yushan.sqlite3")]
    assert postgres.stdout.split() == ["django.db.backends.postgresql", "yushan"]


def test_sqlite_uses_wal_and_takes_the_write_lock_at_begin(tmp_path):
    # Inside atomic(), before any write, a second writer must already be locked out (IMMEDIATE);
    # a reader must still get through (WAL).
    code = """
import sqlite3
from django.db import connection, transaction
with connection.cursor() as cursor:
    cursor.execute("PRAGMA journal_mode")
    print(cursor.fetchone()[0])
other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
with transaction.atomic():
    print(other.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] >= 0)
    try:
        other.execute("BEGIN IMMEDIATE")
        print("second-writer-got-in")
    except sqlite3.OperationalError as error:
        print(str(error).replace(" ", "-"))
"""
    result = django_run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "True", "database-is-locked"]


def test_debug_off_refuses_a_weak_secret_key(tmp_path):
    for weak in ("x", "short-but-not-default", "ab" * 40):
        result = django_run("", tmp_path, DEBUG="0", SECRET_KEY=weak)
        assert result.returncode != 0, weak
        assert "SECRET_KEY is too weak" in result.stderr


def test_production_is_https_only_with_hsts(tmp_path):
    code = (
        "from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE)"
    )
    for env in ({"DEBUG": "0"}, {"DEBUG": "0", "YUSHAN_PRODUCTION": "1"}):
        result = django_run(code, tmp_path, SECRET_KEY=REAL_KEY, **env)
        assert result.stdout.split() == ["True", "31536000", "True", "True"], result.stderr
    plain = django_run(code, tmp_path, DEBUG="0", HTTPS_ONLY="0", SECRET_KEY=REAL_KEY)
    assert plain.stdout.split() == ["False", "0", "True", "False"]


def test_check_deploy_is_clean_under_the_production_settings(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in CLEARED}, "YUSHAN_VAR_DIR": str(tmp_path)}
    env.update(DEBUG="0", YUSHAN_PRODUCTION="1", SECRET_KEY=REAL_KEY, BEHIND_TLS_PROXY="1")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
