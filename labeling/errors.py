"""Errors that services raise; the API turns them into 4xx answers with the message shown."""


class LabelingError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, errors: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors or {}  # finer-grained messages by field, e.g. "config.sft.epochs"


class NotFound(LabelingError):
    status = 404
    code = "not_found"


class Conflict(LabelingError):
    """The request was well formed but the task's state forbids it (lease expired, already done)."""

    status = 409
    code = "conflict"


class Forbidden(LabelingError):
    status = 403
    code = "forbidden"


class TooManyRequests(LabelingError):
    status = 429
    code = "throttled"
