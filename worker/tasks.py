"""Celery tasks: take ids, re-fetch rows, call one service."""

from celery import shared_task

from labeling import services


@shared_task(name="worker.tasks.leases_return_expired", acks_late=True)
def leases_return_expired() -> int:
    """Periodic: mark expired leases so their slots return to the pool and show on admin pages."""
    return services.leases_return_expired()
