"""The language of the pages, per person.

Django's LocaleMiddleware picks a language for every request from the language cookie, else the
browser's Accept-Language (zh-TW → zh-hant through Django's fallbacks), else LANGUAGE_CODE. A
signed-in user who chose a language with the switch in the page header has it stored
(UserSettings.language): it is copied into the session when they log in, and UserLanguageMiddleware
applies it to each of their requests, so it holds on every device and across logins, whatever the
browser says. The middleware also keeps the cookie in step, so the login page after a logout stays
in the same language. Token-authenticated API requests have no session: they follow
Accept-Language.
"""

from django.conf import settings
from django.utils import translation

from labeling.models import UserSettings

SESSION_KEY = "yushan_language"


def language_supported(code: str | None) -> str | None:
    """The code as one of settings.LANGUAGES, or None (a stale or forged value is ignored)."""
    code = (code or "").strip().lower()
    return code if code in dict(settings.LANGUAGES) else None


def user_language(*, user) -> str | None:
    stored = UserSettings.objects.filter(user=user).values_list("language", flat=True).first()
    return language_supported(stored)


def user_language_set(*, user, language: str) -> None:
    """Remember a user's choice of language (one of settings.LANGUAGES)."""
    if language_supported(language) is None:
        raise ValueError(f"unsupported language {language!r}")
    UserSettings.objects.update_or_create(user=user, defaults={"language": language})


def session_language_restore(sender, request, user, **kwargs) -> None:
    """user_logged_in: the user's stored language becomes the session's (no query per request)."""
    language = user_language(user=user)
    if language:
        request.session[SESSION_KEY] = language
    else:
        request.session.pop(SESSION_KEY, None)


class UserLanguageMiddleware:
    """After LocaleMiddleware and AuthenticationMiddleware: a signed-in user's stored language wins
    over the cookie and the browser."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        language = language_supported(session.get(SESSION_KEY)) if session is not None else None
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self.get_response(request)
        if language and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != language:
            language_cookie_set(response, language)
        return response


def language_cookie_set(response, language: str) -> None:
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,
    )
