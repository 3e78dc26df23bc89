"""A whole round through a real Celery worker over Redis: each stage is a message on the gpu
route, the worker runs it and queues the next, and the admin sees the round finish. A generation
job queued before the round pauses for it and gives way to the new policy's job."""

import pytest
from celery.contrib.testing.worker import start_worker

from labeling.models import Event, Task
from tests.factories import DEMOS, PREFERENCES, TINY, register_copy, wait_until
from training.registry import generation, selectors
from training.registry.models import GenerationJob
from training.rounds import services as rounds
from training.rounds.models import Round
from worker.celery import app

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.timeout(900)  # six training stages and a generation job, on a shared 2-core CI machine
def test_a_round_runs_end_to_end_through_a_worker(
    redis_gpu_queue,
    project,
    model_store,
    tiny_model_path,
    admin_user,
    settings,
    tmp_path,
):
    from labeling.imports import dataset_import

    settings.SNAPSHOT_STORE = tmp_path / "snapshots"
    settings.GENERATION_MAX_NEW_TOKENS = 8
    dataset_import(project=project, text=DEMOS, fmt="conversations", source="demos")
    dataset_import(project=project, text=PREFERENCES, fmt="preferences", source="prefs")
    base = register_copy(project, tiny_model_path, name="base", store=model_store, deploy=True)
    # Both messages wait on the queue before the worker starts: the generation job's comes first.
    old_job = generation.generation_job_start(project=project, actor=admin_user)
    round_ = rounds.round_start(project=project, config={**TINY, "deploy": {"threshold": 0.0}}, actor=admin_user)
    with start_worker(app, queues=[redis_gpu_queue], pool="solo", perform_ping_check=False, shutdown_timeout=30):
        wait_until(
            lambda: Round.objects.get(pk=round_.pk).status not in ("queued", "running"),
            seconds=600,
            what="the round to finish",
        )
        assert Round.objects.get(pk=round_.pk).status == Round.Status.SUCCEEDED, Round.objects.get(pk=round_.pk).error
        # The loop closes: deploying queued candidate generation from the new policy.
        wait_until(
            lambda: GenerationJob.objects.filter(project=project, status__in=["succeeded", "failed"]).exists(),
            seconds=300,
            what="candidate generation from the new policy",
        )
    round_.refresh_from_db()
    assert round_.status == Round.Status.SUCCEEDED, round_.error
    assert [s.attempts for s in round_.stages.all()] == [1] * 6
    assert selectors.deployed_policy(project=project) == round_.policy_version
    # The older job paused for the round before sampling, then gave way to the new policy's job.
    old_job.refresh_from_db()
    assert (old_job.model_version, old_job.status, old_job.tasks_created) == (base, "cancelled", 0)
    assert Event.objects.filter(verb="generation.paused", payload__generation_job_id=old_job.pk).count() >= 1
    job = GenerationJob.objects.exclude(pk=old_job.pk).get(project=project)
    assert (job.status, job.model_version) == ("succeeded", round_.policy_version), job.error
    new_tasks = Task.objects.filter(project=project, kind="ranking", state="open")
    assert new_tasks.exists()
    assert {c.model_version for t in new_tasks for c in t.candidates.all()} == {round_.policy_version}


@pytest.mark.django_db
def test_every_gpu_task_runs_on_the_configured_torch_threads(settings, monkeypatch):
    """A generation job leaves its thread count in the worker process; the next round stage
    sets the configured count again instead of inheriting it."""
    import torch

    from training.registry import generation
    from training.rounds import runner
    from worker import tasks

    seen = []
    monkeypatch.setattr(generation, "candidates_generate", lambda job_id: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(runner, "round_stage_run", lambda round_id: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        settings.TORCH_CPU_THREADS = 2
        torch.set_num_threads(1)  # what a generation job on 1 thread leaves behind
        tasks.gpu_round_stage.run(1)
        settings.TORCH_CPU_THREADS = 1
        tasks.gpu_generate_candidates.run(1)
        tasks.gpu_round_stage.run(1)
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 1, 1]
