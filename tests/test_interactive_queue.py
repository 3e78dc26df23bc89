"""Playground turns and arena battles through a real Celery worker on Redis: the web process only
queues them, the interactive worker answers, and the page that polls shows the answer."""

import pytest
from celery.contrib.testing.worker import start_worker

from tests.factories import register_copy, wait_until
from training.arena.models import ArenaBattle, PlaygroundTurn
from worker.celery import app

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def short_answers(settings):
    settings.PLAYGROUND_MAX_NEW_TOKENS = 12


def test_interactive_work_has_a_queue_of_its_own():
    route = app.amqp.router.route
    assert route({}, "worker.tasks.interactive_playground_turn")["queue"].name == "interactive"
    assert route({}, "worker.tasks.interactive_arena_battle")["queue"].name == "interactive"
    assert route({}, "worker.tasks.gpu_round_stage")["queue"].name == "gpu"


@pytest.mark.timeout(300)
def test_the_interactive_worker_answers_what_the_pages_wait_for(
    redis_interactive_queue, client, project, model_store, tiny_model_path, tiny_model_path_b, annotator
):
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    register_copy(project, tiny_model_path_b, name="round 1", store=model_store, parent=base, round_number=1)
    client.force_login(annotator)
    playground = f"/projects/{project.pk}/playground/"
    arena = f"/projects/{project.pk}/arena/"

    # Queued with no worker running: the requests wait, and the pages say for what.
    client.post(playground, {"version": base.pk, "message": "Hello there"})
    battle_url = client.post(arena, {"prompt": "Which mountain is higher?"}).url
    assert "Waiting for the interactive worker" in client.get(playground).content.decode()
    assert "Waiting for the interactive worker" in client.get(battle_url).content.decode()
    turn = PlaygroundTurn.objects.get()
    turn_progress = f"{playground}turns/{turn.pk}/"
    assert client.get(turn_progress).json()["status"] == "queued"

    with start_worker(
        app, queues=[redis_interactive_queue], pool="solo", perform_ping_check=False, shutdown_timeout=30
    ):
        wait_until(lambda: client.get(turn_progress).json()["finished"], seconds=120, what="the playground turn")
        wait_until(lambda: client.get(f"{battle_url}progress/").json()["finished"], seconds=120, what="the battle")

    turn.refresh_from_db()
    assert turn.status == PlaygroundTurn.Status.DONE and turn.generation["model_version"] == base.pk
    client.get(playground)
    state = client.session[f"playground-{project.pk}"]
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"] and "pending" not in state
    battle = ArenaBattle.objects.get()
    assert battle.status == ArenaBattle.Status.DONE and battle.answer_a and battle.answer_b
    assert 'name="vote"' in client.get(battle_url).content.decode()
    client.post(battle_url, {"vote": "a"})
    battle.refresh_from_db()
    assert battle.vote == "a" and battle.task is not None
