"""Helpers that test modules import: users, tasks, clients, labels, Redis queues and round data.

Fixtures do not live here. The named role users, `project` and `fresh_cache` are in
tests/conftest.py; the tiny-model fixtures in tests/ml_fixtures.py; the Redis queue fixtures in
tests/queue_fixtures.py. conftest.py declares both fixture modules in `pytest_plugins`, so a test
takes any of them as an argument and imports nothing for it. Everything a test imports comes from
here: no test module imports another.
"""

import os
import shutil
import time
import uuid

import pytest
import redis
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from labeling import leases, roles, services, submissions
from worker.celery import app

IN_CI = os.environ.get("CI", "").lower() == "true"
PASSWORD = "correct-horse-battery"


def service_missing(reason: str):
    """Skip a test whose service is absent on a laptop; in CI (CI=true) the same absence fails it."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)


# --- users, tasks and clients -------------------------------------------------------------------


def make_user(username: str, *, role: str | None = None, staff: bool = False):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=staff)
    if role:
        roles.role_grant(user=user, role=role)
    return user


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


# --- labels for the snapshot tests --------------------------------------------------------------

DEMO_TEXT = {"alice": "玉山。", "bob": "玉山，3,952 公尺。"}


def label_everything(project, annotator, annotator2):
    """Alice and Bob each write one demonstration and rank one task: Alice [[best], [tie, tie]], Bob in order."""
    add_demonstration_task(project, "台灣第一高峰是那一座？")
    add_ranking_task(
        project, "What is the highest mountain in the world?", answers=["Everest", "K2", "Everest, aka K2"]
    )
    texts = {}
    for user in (annotator, annotator2):
        for _ in range(2):
            lease = leases.task_next_for(annotator=user, project=project)
            if lease.task.kind == "demonstration":
                submissions.demonstration_submit(
                    annotator=user, task_id=lease.task_id, text=DEMO_TEXT[user.username], client_id=new_client_id()
                )
                continue
            by_text = {c.text: c.public_id for c in lease.task.candidates.all()}
            texts.update({v: k for k, v in by_text.items()})
            everest, k2, aka = by_text["Everest"], by_text["K2"], by_text["Everest, aka K2"]
            groups = [[everest], [k2, aka]] if user == annotator else [[everest], [aka], [k2]]
            submissions.ranking_submit(
                annotator=user,
                task_id=lease.task_id,
                ranking=groups,
                ratings={everest: 7, k2: 1},
                flags={k2: ["factually_wrong"]},
                client_id=new_client_id(),
            )
    return texts


# --- Celery over Redis --------------------------------------------------------------------------

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WAIT_SECONDS = 30


def wait_until(condition, *, seconds: float = WAIT_SECONDS, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"gave up after {seconds}s waiting for {what}")


def forget_connections() -> None:
    # The app keeps a pool of broker connections: drop it so the next send uses the current URL.
    app._pool = None
    app.amqp._producer_pool = None


def redis_queue_delete(queue: str) -> None:
    """Leave no trace in Redis: the queue, and the bindings kombu keeps for it."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)
    for member in client.zrange("_kombu.binding_deadlines", 0, -1):
        if queue in member.decode():
            client.zrem("_kombu.binding_deadlines", member)


# --- models and training rounds -----------------------------------------------------------------


def register_copy(project, source, *, name: str, store, parent=None, round_number=None, deploy: bool = False):
    """Copy a checkpoint into the model store and register it as a policy version of `project`."""
    from training.registry import services

    destination = store / "policies" / f"{project.pk}-{name.replace(' ', '-')}"
    shutil.copytree(source, destination)
    version, _ = services.model_version_register(
        project=project, path=destination, name=name, parent=parent, round_number=round_number
    )
    if deploy:
        services.policy_deploy(version=version)
    return version


DEMOS = "\n".join(
    f'{{"messages": [{{"role": "user", "content": "Question {i}: how tall is Yushan?"}}, '
    f'{{"role": "assistant", "content": "Yushan is 3,952 m tall ({i})."}}]}}'
    for i in range(6)
)
PREFERENCES = "\n".join(
    f'{{"prompt": [{{"role": "user", "content": "Question {i}: capital of Taiwan?"}}], '
    f'"chosen": [{{"role": "assistant", "content": "Taipei ({i})."}}], '
    f'"rejected": [{{"role": "assistant", "content": "No idea ({i})."}}]}}'
    for i in range(6)
)
TINY = {  # a few steps of everything, on a tiny model: seconds, not minutes
    "sft": {"epochs": 1, "max_length": 64, "eval_fraction": 0.0},
    "reward": {"epochs": 1, "eval_fraction": 0.2, "max_prompt_tokens": 64, "max_answer_tokens": 16},
    "policy": {"steps": 2, "prompts_per_step": 2, "generations_per_prompt": 2, "max_completion_length": 6},
    "evaluate": {"prompts": 2, "max_new_tokens": 6},
}

# --- stage executors ----------------------------------------------------------------------------

REWARD = {  # a tiny reward model stage: a few steps of a few rankings
    "epochs": 1,
    "rankings_per_step": 3,
    "eval_fraction": 0.2,
    "max_prompt_tokens": 64,
    "max_answer_tokens": 16,
}


def rankings(count: int) -> list[dict]:
    """`count` rankings of three answers, as a reward model stage reads them."""
    return [
        {
            "prompt": [{"role": "user", "content": f"Question {i}: what is the capital of Taiwan?"}],
            "completions": [f"Taipei ({i}).", f"No idea ({i}).", f"Maybe Tainan, maybe not ({i})."],
            "ranks": [1, 3, 2],
        }
        for i in range(count)
    ]


class Recorder:
    """A stage reporter (training.rounds.executors.Reporter) that keeps what it is told;
    `on_progress(recorder)` runs after each report."""

    def __init__(self, on_progress=None, stop=lambda: False):
        self.points, self.lines = [], []
        self.on_progress, self.stop = on_progress, stop

    def progress(self, step, total, metrics):
        self.points.append((step, total, metrics))
        if self.on_progress:
            self.on_progress(self)

    def should_stop(self):
        return self.stop()

    def log(self, line):
        self.lines.append(line)

    def losses(self) -> list[float]:
        return [metrics["loss"] for _, _, metrics in self.points if "loss" in metrics]
