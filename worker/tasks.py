"""Celery tasks: take ids, re-fetch rows, call one service.

Each task imports its service inside its body: this module imports no app module at import time,
and the apps never import it (they enqueue by name through worker.queue), so no import cycle
exists between labeling, training and worker.
"""

from celery import shared_task
from django.conf import settings


def torch_threads_set() -> int:
    """Every task of the gpu worker runs on settings.TORCH_CPU_THREADS torch threads (0: all cores
    but one). The count is process-wide and outlives a task: set here, a round stage that follows a
    generation job in the same worker process runs on as many threads as one in a fresh process."""
    import torch

    from training.ml.generation import default_cpu_threads

    threads = settings.TORCH_CPU_THREADS or default_cpu_threads()
    torch.set_num_threads(threads)
    return threads


@shared_task(name="worker.tasks.leases_return_expired", acks_late=True)
def leases_return_expired() -> int:
    """Periodic: mark expired leases so their slots return to the pool and show on admin pages."""
    from labeling.leases import leases_return_expired as return_expired

    return return_expired()


@shared_task(name="worker.tasks.snapshot_build_task", acks_late=True, soft_time_limit=6 * 3600)
def snapshot_build_task(snapshot_id: int) -> None:
    """Build a dataset snapshot. Claims its row first, so a redelivered message does nothing."""
    from training.datasets.services import snapshot_build

    snapshot_build(snapshot_id=snapshot_id)


@shared_task(
    name="worker.tasks.gpu_generate_candidates",
    acks_late=True,
    soft_time_limit=settings.GENERATION_TIME_LIMIT_SECONDS,
    time_limit=settings.GENERATION_TIME_LIMIT_SECONDS + 300,
)
def gpu_generate_candidates(job_id: int) -> None:
    """Sample K answers per prompt from the job's policy version and create the ranking tasks.

    The job is claimed with a conditional update, so a redelivered message does no harm; a
    failure is recorded on the job (and not retried: it is rarely transient).
    """
    from training.registry.generation import candidates_generate

    torch_threads_set()
    candidates_generate(job_id=job_id)


@shared_task(
    name="worker.tasks.gpu_round_stage",
    acks_late=True,
    soft_time_limit=settings.ROUND_STAGE_TIME_LIMIT_SECONDS,
    time_limit=settings.ROUND_STAGE_TIME_LIMIT_SECONDS + 300,
)
def gpu_round_stage(round_id: int) -> None:
    """Run a training round's next stage, then queue the one after it.

    The stage is claimed with a conditional update, so a redelivered message runs nothing twice.
    A failure is recorded on the stage and the round (where the admin sees it) and re-raised.
    """
    from training.rounds.runner import round_stage_run

    torch_threads_set()
    round_stage_run(round_id=round_id)


@shared_task(name="worker.tasks.rounds_fail_stale", acks_late=True)
def rounds_fail_stale() -> int:
    """Periodic: a stage whose worker died is failed, so no round stays 'running' forever."""
    from training.rounds.services import rounds_fail_stale as fail_stale

    return fail_stale()


# Playground turns and arena battles: the `interactive` queue, served by a worker of its own so a
# person waiting for a reply never waits behind a training round, and no web process generates.
@shared_task(
    name="worker.tasks.interactive_playground_turn",
    acks_late=True,
    soft_time_limit=settings.INTERACTIVE_TIMEOUT_SECONDS,
    time_limit=settings.INTERACTIVE_TIMEOUT_SECONDS + 60,
)
def interactive_playground_turn(turn_id: int) -> bool:
    from training.arena.services import playground_turn_answer

    return playground_turn_answer(turn_id=turn_id)


@shared_task(
    name="worker.tasks.interactive_arena_battle",
    acks_late=True,
    soft_time_limit=settings.INTERACTIVE_TIMEOUT_SECONDS,
    time_limit=settings.INTERACTIVE_TIMEOUT_SECONDS + 60,
)
def interactive_arena_battle(battle_id: int) -> bool:
    from training.arena.services import arena_battle_answer

    return arena_battle_answer(battle_id=battle_id)
