"""Login limits: one policy for the login page and the token endpoint.

Two limits, each from a maintained part rather than our own counters:

- **Per username** (django-axes, its database handler): after LOGIN_FAILURE_LIMIT failures
  within LOGIN_FAILURE_WINDOW_SECONDS the username is locked for that long, whatever address the
  guesses come from; a successful login clears it. The username is normalised the way Django's
  login form normalises it (NFKC, surrounding spaces dropped) and case-folded, so `ａｌｉｃｅ` and
  `' Alice '` count as `alice`. Failures on either endpoint count together, and a locked
  username gets neither a session nor a token. An admin unlocks one early with
  `manage.py axes_reset_username NAME`.
- **Per address** (DRF's throttle): LOGIN_THROTTLE_RATE attempts a minute, any usernames, then
  a 429 with Retry-After until the minute passes. An address is only slowed, never locked, so
  an office behind one NAT keeps working. The address is the socket's, or the one PROXY_COUNT
  proxies in front of the app put into X-Forwarded-For: a client cannot spoof its way past.
"""

import unicodedata
from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

LOCKED_MESSAGE = gettext_lazy("Too many failed attempts for this username. Wait %(minutes)s minutes, then try again.")
THROTTLED_MESSAGE = gettext_lazy("Too many login attempts from your address. Wait %(seconds)s seconds, then try again.")


def normalised_username(username) -> str:
    """NFKC, trimmed, case-folded; without NUL characters, which no username has and which
    PostgreSQL refuses in a query (a 500 before this, from a token request with one)."""
    return unicodedata.normalize("NFKC", str(username or "")).replace("\x00", "").strip().casefold()


def username_key(request, credentials: dict | None) -> str:
    """The name axes counts failures under (AXES_USERNAME_CALLABLE)."""
    if credentials and credentials.get("username") is not None:
        return normalised_username(credentials["username"])
    return normalised_username(getattr(request, "POST", {}).get("username", ""))


def failure_limit(request, credentials) -> int:
    """AXES_FAILURE_LIMIT, read at each attempt so that settings can change it."""
    return settings.LOGIN_FAILURE_LIMIT


def cool_off(request=None) -> timedelta:
    return timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def client_address(request) -> str:
    """The client's address as the throttle sees it (REMOTE_ADDR, or X-Forwarded-For as far as
    PROXY_COUNT proxies vouch for it); axes records the same one with each attempt."""
    return BaseThrottle().get_ident(request)


class LoginLimitBackend(AxesStandaloneBackend):
    """axes' check, for logins over HTTP. Authenticating without a request (a management
    command, Django's test client) is not a login attempt from anyone, so it is not limited."""

    def authenticate(self, request=None, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def locked(request, username) -> bool:
    """Whether this username is locked out now (the token endpoint asks before authenticating)."""
    return AxesProxyHandler.is_locked(request, {"username": username})


def _minutes() -> int:
    return max(1, round(settings.LOGIN_FAILURE_WINDOW_SECONDS / 60))


def api_locked_response() -> JsonResponse:
    seconds = settings.LOGIN_FAILURE_WINDOW_SECONDS
    body = {"detail": LOCKED_MESSAGE % {"minutes": _minutes()}, "code": "locked_out", "retry_after": seconds}
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(seconds)
    return response


def lockout_response(request, original_response=None, credentials=None):
    """What a locked-out attempt gets (AXES_LOCKOUT_CALLABLE): JSON under /api/, else the login
    page with the reason, both 429."""
    if request.path.startswith("/api/"):
        return api_locked_response()
    return login_page_refusal(request, LOCKED_MESSAGE % {"minutes": _minutes()}, settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_page_refusal(request, message: str, retry_after: int):
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    context = {"form": form, "refusal": message, "next": request.POST.get("next", "")}
    response = render(request, "labeling/login.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


class LoginRateThrottle(SimpleRateThrottle):
    """LOGIN_THROTTLE_RATE attempts per client address, on both login endpoints."""

    scope = "login"

    def get_rate(self):
        return settings.LOGIN_THROTTLE_RATE

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def address_refusal(request):
    """None while the address may try again, else the login page's 429."""
    throttle = LoginRateThrottle()
    if throttle.allow_request(request, None):
        return None
    seconds = max(1, round(throttle.wait() or 1))
    return login_page_refusal(request, THROTTLED_MESSAGE % {"seconds": seconds}, seconds)
