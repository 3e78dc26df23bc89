"""Celery tasks: take ids, re-fetch rows, call one service."""

from celery import shared_task

from labeling import services


@shared_task(name="worker.tasks.leases_return_expired", acks_late=True)
def leases_return_expired() -> int:
    """Periodic: mark expired leases so their slots return to the pool and show on admin pages."""
    return services.leases_return_expired()


@shared_task(name="worker.tasks.snapshot_build_task", acks_late=True, soft_time_limit=6 * 3600)
def snapshot_build_task(snapshot_id: int) -> None:
    """Build a dataset snapshot. Claims its row first, so a redelivered message does nothing."""
    from training.snapshots import snapshot_build

    snapshot_build(snapshot_id=snapshot_id)
