"""Login attempt limits: after LOGIN_FAILURE_LIMIT failures for one username or one address
within the window, further attempts are refused until the window passes."""

from django.conf import settings
from django.core.cache import cache


def _keys(request, username: str) -> list[str]:
    address = request.META.get("REMOTE_ADDR", "unknown")
    return [f"login-fail:user:{username.lower()}", f"login-fail:addr:{address}"]


def login_blocked(request, username: str) -> bool:
    limit = settings.LOGIN_FAILURE_LIMIT
    return any((cache.get(key) or 0) >= limit for key in _keys(request, username))


def login_failure_record(request, username: str) -> None:
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    for key in _keys(request, username):
        if cache.add(key, 1, timeout=window):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)


def login_failures_clear(request, username: str) -> None:
    cache.delete(_keys(request, username)[0])
