"""The interactive queue: playground turns and arena battles are answered by a worker of their own.

A web process never generates. It checks the request, counts it against the person's rate, stores
a row (queued) and sends its id to the `interactive` queue; the page polls the row until the
worker has answered. The queue is separate from `gpu`, so a training round that holds the gpu
worker for hours does not keep a person waiting for a chat reply, and a slow answer never holds a
web thread.

Each row is claimed with a conditional update (queued -> running), so a redelivered message does
nothing. A row not finished INTERACTIVE_TIMEOUT_SECONDS after it was made (no worker took it, or
its worker died) is marked failed the next time anyone looks, and a late worker no longer claims it.
"""

import logging
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext
from rest_framework.throttling import SimpleRateThrottle

from labeling.errors import Conflict, TooManyRequests
from training.arena.models import InteractiveWork
from training.registry.models import ModelVersion
from training.registry.services import model_version_available

log = logging.getLogger(__name__)

# A queued row older than this tells the person that no worker seems to be taking it.
SLOW_QUEUE_SECONDS = 20


class InteractiveGenerationThrottle(SimpleRateThrottle):
    """settings.INTERACTIVE_GENERATION_RATE per user, for the playground and the arena together."""

    scope = "interactive-generation"

    def get_rate(self):
        return settings.INTERACTIVE_GENERATION_RATE

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


def interactive_generation_allow(user) -> None:
    """Count one playground turn or arena battle for `user`, or refuse it (429) over the rate."""
    throttle = InteractiveGenerationThrottle()
    if not throttle.allow_request(SimpleNamespace(user=user), None):
        count, seconds = throttle.parse_rate(throttle.get_rate())
        wait = max(1, round(throttle.wait() or 1))
        raise TooManyRequests(
            gettext(
                "You asked for %(count)s answers in the last %(seconds)s seconds, the most there may be; wait %(wait)s s, then try again."
            )
            % {"count": count, "seconds": seconds, "wait": wait}
        )


def servable(version: ModelVersion) -> None:
    if version.kind != ModelVersion.Kind.POLICY or version.status != ModelVersion.Status.READY:
        raise Conflict(gettext("%(version)s is not a ready policy.") % {"version": version})
    if not model_version_available(version):  # here, or in MODEL_STORE_URL for the worker to fetch
        raise Conflict(gettext("The files of %(version)s are missing from the model store.") % {"version": version})


def _timeout() -> timedelta:
    return timedelta(seconds=settings.INTERACTIVE_TIMEOUT_SECONDS)


def work_expire(row: InteractiveWork) -> InteractiveWork:
    """Fail `row` if it is still unfinished past its deadline; the row as it now stands."""
    if row.finished or timezone.now() - row.created_at < _timeout():
        return row
    waited = "No interactive worker took it" if row.status == row.Status.QUEUED else "Its worker stopped"
    error = (
        f"{waited} within {settings.INTERACTIVE_TIMEOUT_SECONDS} s. Try again; if it happens again, "
        "ask an admin to check the interactive worker (var/interactive-worker.log)."
    )
    type(row).objects.filter(pk=row.pk, status=row.status).update(
        status=row.Status.FAILED, error=error, finished_at=timezone.now()
    )
    row.refresh_from_db()
    return row


def work_progress(row: InteractiveWork) -> dict:
    """What the page shows while it waits, and whether to stop polling."""
    row = work_expire(row)
    waited = round((timezone.now() - row.created_at).total_seconds())
    if row.status == row.Status.QUEUED:
        waiting_for = gettext("Waiting for the interactive worker (%(seconds)s s).") % {"seconds": waited}
        if waited >= SLOW_QUEUE_SECONDS:
            waiting_for += " " + gettext("It is busy with other people's requests, or not running.")
    elif row.status == row.Status.RUNNING:
        waiting_for = gettext("The model is writing (%(seconds)s s).") % {"seconds": waited}
    else:
        waiting_for = ""
    return {
        "id": row.pk,
        "status": row.status,
        "finished": row.finished,
        "waited_seconds": waited,
        "waiting_for": waiting_for,
        "error": row.error,
    }


def work_run(model: type[InteractiveWork], pk: int, answer: Callable[[InteractiveWork], dict]) -> bool:
    """The worker's side: claim the row, fill it with `answer(row)`'s fields, mark it done.

    False when there was nothing to do (already claimed, finished, expired or deleted). A failure
    is stored on the row, where the person sees it, and not retried: they can simply ask again.
    """
    deadline = timezone.now() - _timeout()
    claimed = model.objects.filter(pk=pk, status=model.Status.QUEUED, created_at__gt=deadline).update(
        status=model.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return False
    row = model.objects.get(pk=pk)
    try:
        fields = answer(row)
    except Exception as error:  # noqa: BLE001 - anything the model raised is the person's answer
        log.exception("interactive %s %s failed", model.__name__, pk)
        message = f"The model could not answer: {type(error).__name__}: {error}"[:2000]
        model.objects.filter(pk=pk, status=model.Status.RUNNING).update(
            status=model.Status.FAILED, error=message, finished_at=timezone.now()
        )
        return True
    model.objects.filter(pk=pk, status=model.Status.RUNNING).update(
        **fields, status=model.Status.DONE, finished_at=timezone.now()
    )
    return True
