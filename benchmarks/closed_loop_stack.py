"""The throwaway Yushan of benchmarks/closed_loop.py: its own SQLite database, model store, queue
folders and logs under one folder; migrations, an admin and the teachers' accounts, the project,
the prompts and the base policy; then the web server and the two Celery workers of scripts/run.sh
(queues default + beat, and gpu). `Stack.stop()` ends the processes it started (only those, by
process group), also on Ctrl-C; the folder is deleted unless the caller keeps it.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ("closedloop-admin", "closed-loop-admin-password")
TEACHER_PASSWORD = "closed-loop-teacher-password"
GUIDELINES = "Simulated teachers rank answers by a known rule (benchmarks/closed_loop.py)."
BANK = ROOT / "benchmarks" / "closed_loop_prompts.jsonl"
PROJECT = "Closed loop"
# K = 4 answers per ranking task, one teacher per task, half the prompts in the frozen evaluation split.
PROJECT_SETTINGS = {"k": 4, "overlap": 1, "held_out_share": 0.5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stack_environment(folder: Path) -> dict[str, str]:
    """Everything the settings read from the environment that must point into `folder`."""
    return {
        "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
        "MODEL_STORE": str(folder / "models"),
        "SNAPSHOT_STORE": str(folder / "snapshots"),
        "YUSHAN_VAR_DIR": str(folder / "var"),  # the filesystem broker's queue folders, static files
        "CELERY_BROKER_URL": "filesystem://",  # never a Redis the caller's shell happens to name
        "CACHE_URL": "",
        "DJANGO_SETTINGS_MODULE": "feedback_site.settings",
    }


class ApiError(RuntimeError):
    pass


class Api:
    """JSON over HTTP with one account's token."""

    def __init__(self, base_url: str, username: str, password: str):
        self.base_url, self.username = base_url, username
        self.session = requests.Session()
        token = self.post("/api/v1/auth/token/", {"username": username, "password": password}, expect=(200,))
        self.session.headers["Authorization"] = f"Token {token['token']}"

    def request(self, method: str, path: str, *, expect=(200, 201, 202), **kwargs):
        response = self.session.request(method, self.base_url + path, timeout=120, **kwargs)
        if response.status_code not in expect:
            raise ApiError(f"{method} {path} as {self.username}: {response.status_code} {response.text[:2000]}")
        return None if response.status_code == 204 else response.json()

    def get(self, path: str, *, params=None, expect=(200,)):
        return self.request("GET", path, params=params, expect=expect)

    def post(self, path: str, body: dict, *, expect=(200, 201, 202)):
        return self.request("POST", path, json=body, expect=expect)


class Stack:
    def __init__(self, folder: Path, *, teachers: int, settings: dict[str, str] | None = None):
        """settings: more of the environment the stack's processes read (TORCH_CPU_THREADS …)."""
        self.folder, self.teachers = folder, [f"teacher{i + 1}" for i in range(teachers)]
        self.env = {**os.environ, **(settings or {}), **stack_environment(folder), "PYTHONUNBUFFERED": "1"}
        self.logs = folder / "logs"
        self.processes: dict[str, subprocess.Popen] = {}
        self.base_url = ""

    # --- set-up -----------------------------------------------------------------------------

    def manage(self, *args: str) -> str:
        """Run manage.py in the stack's environment; its output, or exit with it on failure."""
        command = [sys.executable, "manage.py", *args]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return done.stdout

    def migrate(self) -> None:
        for name in ("models", "snapshots", "var", "logs"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        self.manage("migrate", "--noinput")

    def users_create(self) -> None:
        """The admin (staff) and the teachers (group `annotator`), as seed_demo grants roles."""
        from django.contrib.auth import get_user_model
        from django.db import connections

        from labeling import roles

        User = get_user_model()
        User.objects.create_user(ADMIN[0], password=ADMIN[1], is_staff=True, is_superuser=True)
        for username in self.teachers:
            teacher = User.objects.create_user(username, password=TEACHER_PASSWORD)
            roles.role_grant(user=teacher, role=roles.ANNOTATOR)
        connections.close_all()

    def base_model_register(self, project_name: str, model: Path | None) -> str:
        source = ["--hf", str(model)] if model is not None else []
        return self.manage("register_base_model", "--project", project_name, *source, "--deploy")

    # --- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        # A session of its own: stop() signals the whole group (a Celery worker's pool children too).
        self.processes[name] = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start(self) -> None:
        """The web server and the two workers of scripts/run.sh."""
        celery = [sys.executable, "-m", "celery", "-A", "worker.celery", "worker", "--concurrency", "1"]
        self._spawn(
            "worker",
            celery
            + ["--queues", "default", "--beat", "--schedule", str(self.folder / "var" / "celerybeat-schedule")]
            + ["--hostname", "closedloop-default@%h", "--loglevel", "INFO"],
        )
        self._spawn("gpu-worker", celery + ["--queues", "gpu", "--hostname", "closedloop-gpu@%h", "--loglevel", "INFO"])
        port = free_port()
        self._spawn("web", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"])
        self.base_url = f"http://127.0.0.1:{port}"
        self._wait_for_web()

    def _wait_for_web(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                requests.get(self.base_url + "/api/v1/projects/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.5)
        raise RuntimeError(f"the web server did not answer within 60 s; see {self.logs / 'web.log'}")

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} stopped (status {process.returncode}); see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        """SIGTERM to each group; whatever still runs after 15 s (a worker finishing a long stage) is killed."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            try:  # a pool child the worker left behind is still in its group
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def django_setup(folder: Path) -> None:
    """Point this process's Django at the stack (before anything imports the settings)."""
    os.environ.update(stack_environment(folder))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two of the API's ISO timestamps (None if either is missing)."""
    from datetime import datetime

    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# --- the project --------------------------------------------------------------------------------


def project_create(admin: Api) -> tuple[int, str]:
    """Through the API as an admin; where the API cannot create projects, through the ORM."""
    from django.db import connections

    from labeling.models import Project

    body = {"name": PROJECT, "guidelines": GUIDELINES, **PROJECT_SETTINGS}
    response = admin.session.post(admin.base_url + "/api/v1/projects/", json=body, timeout=60)
    if response.status_code == 201:
        project_id, how = response.json()["id"], "POST /api/v1/projects/"
    else:
        project_id = Project.objects.create(**body).pk
        how = f"the ORM (POST /api/v1/projects/ answered {response.status_code})"
    stored = Project.objects.get(pk=project_id)
    wrong = {key: getattr(stored, key) for key, value in PROJECT_SETTINGS.items() if getattr(stored, key) != value}
    if wrong:  # the API made the project but dropped a setting
        Project.objects.filter(pk=project_id).update(**PROJECT_SETTINGS)
        how += f"; the API left {wrong}, set through the ORM"
    connections.close_all()
    return project_id, how


def stack_prepare(stack: Stack, model: Path | None) -> dict:
    """Database, accounts, web and workers, the project, its prompts and the deployed base policy."""
    log(f"stack in {stack.folder}")
    stack.migrate()
    django_setup(stack.folder)
    stack.users_create()
    stack.start()
    log(f"web at {stack.base_url}; workers started (logs in {stack.logs})")
    admin = Api(stack.base_url, *ADMIN)
    project_id, how = project_create(admin)
    log(f"project {project_id} created through {how}")
    log(stack.manage("import_prompts", str(BANK), "--project", PROJECT).strip())
    started = time.monotonic()
    log(stack.base_model_register(PROJECT, model).strip().replace("\n", "; "))
    setup = {
        "project": project_id,
        "project_created_through": how,
        **prompt_counts(project_id),
        "base_model_seconds": time.monotonic() - started,
    }
    log(f"{setup['prompts']} prompts, {setup['held_out_prompts']} of them held out")
    return {"admin": admin, **setup}


def prompt_counts(project_id: int) -> dict:
    from django.db import connections

    from labeling.models import Prompt

    prompts = Prompt.objects.filter(project_id=project_id)
    counts = {"prompts": prompts.count(), "held_out_prompts": prompts.filter(held_out=True).count()}
    connections.close_all()
    return counts


def held_out_conversations(project_id: int) -> list[list[dict]]:
    """The project's frozen evaluation split, lowest ids first (as rounds read it)."""
    from django.db import connections

    from labeling.models import Prompt

    split = Prompt.objects.filter(project_id=project_id, held_out=True).order_by("id")
    conversations = list(split.values_list("messages", flat=True))
    connections.close_all()
    return conversations
