"""docker-compose.yml describes production. No Docker engine runs in CI, so these tests read the
file and check that everything it names exists in the project: the Celery app and its queues,
the WSGI application, the manage.py commands, the Dockerfile, the environment the settings read,
and that the production settings accept that environment."""

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
APP_SERVICES = ("web", "worker", "gpu-worker", "interactive-worker")
# Read by programs other than our config files: Django itself and the images we run.
ENV_READ_ELSEWHERE = {"DJANGO_SETTINGS_MODULE", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"}
ENV_REFERENCE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def service(compose, name: str) -> dict:
    return compose["services"][name]


def command_words(spec: dict) -> list[str]:
    command = spec["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def shell_steps(words: list[str]) -> list[list[str]]:
    """`sh -c "a && b && exec c"` → [[a…], [b…], [c…]]; any other command is one step."""
    if words[:2] == ["sh", "-c"]:
        steps = [shlex.split(step) for step in words[2].split("&&")]
        return [step[1:] if step[0] == "exec" else step for step in steps]
    return [words]


def option(words: list[str], name: str) -> str:
    return words[words.index(name) + 1]


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, enough for our file."""

    def replace(match):
        name, kind, rest = match.groups()
        if variables.get(name):
            return variables[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest if kind == "-" else ""

    return ENV_REFERENCE.sub(replace, str(value))


def env_names_read_by(path: Path) -> set[str]:
    source = path.read_text()
    return set(re.findall(r"""(?:environ\.get|environ\[|getenv|env_\w+)\(?\s*["'](\w+)["']""", source))


def test_production_services_exist(compose):
    assert {"postgres", "redis", *APP_SERVICES} <= set(compose["services"])
    assert service(compose, "postgres")["image"].startswith("postgres:16")
    assert service(compose, "postgres")["healthcheck"]["test"]
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in service(compose, "postgres")["volumes"])
    assert service(compose, "redis")["image"].startswith("redis:7")


def test_workers_consume_their_queues_and_the_app_routes_to_them(compose):
    from worker.celery import app

    cpu = command_words(service(compose, "worker"))
    gpu = command_words(service(compose, "gpu-worker"))
    interactive = command_words(service(compose, "interactive-worker"))
    assert cpu[:4] == gpu[:4] == interactive[:4] == ["celery", "-A", "worker.celery", "worker"]
    assert option(cpu, "--queues").split(",") == ["default"]
    assert option(gpu, "--queues").split(",") == ["gpu"]
    assert option(interactive, "--queues").split(",") == ["interactive"]
    assert "--beat" in cpu and "--beat" not in gpu + interactive  # one beat, or every periodic task runs twice
    assert option(gpu, "--concurrency") == "1"
    # The queue names are the ones the app sends to.
    assert app.conf.task_default_queue == "default"
    assert {"gpu", "interactive"} <= {route["queue"] for route in app.conf.task_routes.values()}


def test_gpu_worker_reserves_an_nvidia_gpu(compose):
    devices = service(compose, "gpu-worker")["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)


def test_web_command_names_real_commands_and_modules(compose):
    steps = shell_steps(command_words(service(compose, "web")))
    manage = [step for step in steps if step[:2] == ["python", "manage.py"]]
    assert [step[2] for step in manage] == ["migrate", "collectstatic"]
    for step in manage:
        assert step[2] in get_commands(), step
    gunicorn = next(step for step in steps if step[0] == "gunicorn")
    module, attribute = gunicorn[1].split(":")
    assert callable(getattr(importlib.import_module(module), attribute))
    if "-c" in gunicorn:
        assert (ROOT / option(gunicorn, "-c")).is_file()


def test_every_app_service_is_built_from_the_dockerfile(compose):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert re.search(r"^COPY requirements\.txt ", dockerfile, re.MULTILINE)
    assert "pip install -r requirements.txt" in dockerfile
    for name in APP_SERVICES:
        assert service(compose, name)["build"] == "."


def test_app_services_share_settings_and_the_model_store(compose):
    for name in APP_SERVICES:
        spec = service(compose, name)
        env = spec["environment"]
        assert env["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}"
        assert env["DEBUG"] == "0" and env["YUSHAN_PRODUCTION"] == "1"
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert env["CACHE_URL"] == "redis://redis:6379/1"
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        mounts = {volume.split(":")[1] for volume in spec["volumes"]}
        assert env["MODEL_STORE"] == "/data/models" and "/data/models" in mounts, name
        assert env["SNAPSHOT_STORE"] == "/data/snapshots" and "/data/snapshots" in mounts, name


def test_every_environment_name_is_read_by_the_project(compose):
    read = env_names_read_by(ROOT / "feedback_site" / "settings.py")
    read_by_gunicorn = env_names_read_by(ROOT / "gunicorn.conf.py") if (ROOT / "gunicorn.conf.py").exists() else set()
    for name in APP_SERVICES:
        known = read | ENV_READ_ELSEWHERE | (read_by_gunicorn if name == "web" else set())
        unknown = set(service(compose, name)["environment"]) - known
        assert not unknown, f"{name} sets {sorted(unknown)}, which nothing reads"


def test_compose_refuses_to_start_without_a_secret_key(compose):
    with pytest.raises(KeyError, match="SECRET_KEY"):
        interpolate(service(compose, "web")["environment"]["SECRET_KEY"], {})


def test_production_settings_accept_the_compose_environment(compose, tmp_path):
    given = {"SECRET_KEY": "a-real-secret-" + "x" * 40, "POSTGRES_PASSWORD": "pw"}
    env = {name: interpolate(value, given) for name, value in service(compose, "web")["environment"].items()}
    env = {**os.environ, **env, "YUSHAN_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "feedback_site.settings"}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DEBUG, s.CACHES['default']['BACKEND'], s.MODEL_STORE)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "False",
        "django.core.cache.backends.redis.RedisCache",
        "/data/models",
    ]
