"""Every API error is a JSON object with a `detail` message and, where it applies, `errors`
keyed by field — and never a 500 for bad input."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.utils.translation import gettext
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from labeling.errors import LabelingError


def _too_big(exc) -> Response:
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return Response(
            {
                "detail": gettext("The request has more than %(limit)s form fields.") % {"limit": limit},
                "code": "too_many_fields",
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return Response(
        {
            "detail": gettext("The request body is larger than %(limit)s MiB.") % {"limit": f"{limit / 2**20:g}"},
            "code": "too_large",
        },
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def _only_unique_failed(exc) -> bool:
    """A validation error whose every failure is a uniqueness check (UniqueValidator)."""
    if not isinstance(exc, ValidationError):
        return False
    codes = exc.get_codes()
    flat = [c for v in codes.values() for c in (v if isinstance(v, list) else [v])] if isinstance(codes, dict) else []
    return bool(flat) and all(code == "unique" for code in flat)


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig | TooManyFieldsSent):
        return _too_big(exc)  # Django's own answer would be its HTML 400 page
    if isinstance(exc, LabelingError):
        body = {"detail": exc.message, "code": exc.code}
        errors = {exc.field: [exc.message]} if exc.field else {}
        errors.update({field: [message] for field, message in exc.errors.items()})
        if errors:
            body["errors"] = errors
        return Response(body, status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is not None and _only_unique_failed(exc):
        response.status_code = status.HTTP_409_CONFLICT  # a name already taken: a conflict, not a typo
    if response is not None and response.status_code in (400, 409) and "detail" not in response.data:
        fields = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        first = next(iter(fields.items()), ("", [""]))
        message = first[1][0] if isinstance(first[1], list) and first[1] else str(first[1])
        response.data = {
            "detail": f"{first[0]}: {message}" if first[0] else message,
            "code": "conflict" if response.status_code == 409 else "invalid",
            "errors": fields,
        }
    return response


def not_found(request, exception=None):
    """handler404: under /api/ an address that matches no endpoint (`/api/v1/datasets/-1/`, say)
    is the API's JSON 404, not Django's HTML page."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        return JsonResponse({"detail": gettext("No API endpoint at this address."), "code": "not_found"}, status=404)
    return page_not_found(request, exception)


def server_error(request):
    """handler500: under /api/ even a failure of ours answers in JSON, for the client to show."""
    from django.http import JsonResponse
    from django.views.defaults import server_error as page_server_error

    if request.path.startswith("/api/"):
        body = {"detail": gettext("The server failed on this request; it has been logged."), "code": "server_error"}
        return JsonResponse(body, status=500)
    return page_server_error(request)
