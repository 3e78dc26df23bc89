"""Checks on untrusted input: conversations, demonstration text, rankings, ratings and flags."""

import uuid

from django.conf import settings
from django.utils.translation import gettext, gettext_lazy

from labeling.errors import LabelingError

ROLES = ("system", "user", "assistant")
BIGGEST_ID = 2**63 - 1  # ids are 64-bit integers


def row_id(raw) -> int | None:
    """A row id written as text ("42"), or None: ASCII digits only (`str.isdigit()` alone takes
    "²" and "①", which int() refuses) and no bigger than a 64-bit id (SQLite cannot compare one)."""
    text = str(raw)
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= BIGGEST_ID:
        return None
    return int(text)


FLAGS = {
    "fails_instruction": gettext_lazy("Fails to follow the instruction"),
    "factually_wrong": gettext_lazy("Factually wrong"),
    "harmful": gettext_lazy("Harmful"),
    "inappropriate": gettext_lazy("Inappropriate"),
}
RATING_MIN, RATING_MAX = 1, 7
# The 1-7 scale in words, from this one place: the demo's guidelines, the shortcuts list and the
# rating buttons of the ranking board all say it.
RATING_SCALE = gettext_lazy("1 is very bad, 4 is acceptable and 7 is excellent.")
MESSAGE_MAX_CHARS = 100_000
SKIP_REASON_MAX_CHARS = 500


def messages_clean(raw) -> list[dict]:
    """A conversation: a list of {role, content}, ending with a user turn."""
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise LabelingError(gettext("messages must be a non-empty list of {role, content}."), field="messages")
    cleaned = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise LabelingError(
                gettext("message %(index)s must be an object with role and content.") % {"index": index},
                field="messages",
            )
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise LabelingError(
                gettext("message %(index)s has role %(role)s; use one of %(roles)s.")
                % {"index": index, "role": repr(role), "roles": ", ".join(ROLES)},
                field="messages",
            )
        if not isinstance(content, str) or not content.strip():
            raise LabelingError(
                gettext("message %(index)s needs non-empty text content.") % {"index": index}, field="messages"
            )
        if len(content) > MESSAGE_MAX_CHARS:
            raise LabelingError(
                gettext("message %(index)s is longer than %(limit)s characters.")
                % {"index": index, "limit": MESSAGE_MAX_CHARS},
                field="messages",
            )
        if role == "system" and index != 0:
            raise LabelingError(gettext("only the first message may be a system message."), field="messages")
        cleaned.append({"role": role, "content": content})
    if cleaned[-1]["role"] != "user":
        raise LabelingError(gettext("the conversation must end with a user message."), field="messages")
    return cleaned


def demonstration_text_clean(text) -> str:
    if not isinstance(text, str):
        raise LabelingError(gettext("text must be a string."), field="text")
    limit = settings.DEMONSTRATION_MAX_CHARS
    if not text.strip():
        raise LabelingError(gettext("The answer is empty. Write the ideal answer before submitting."), field="text")
    if len(text) > limit:
        raise LabelingError(
            gettext("The answer has %(text_length)s characters; the limit is %(limit)s. Shorten it before submitting.")
            % {"text_length": len(text), "limit": limit},
            field="text",
        )
    return text


def ranking_clean(groups, known_ids: set[str]) -> list[list[str]]:
    """Groups best to worst; every answer exactly once; a group of several answers is a tie."""
    if not isinstance(groups, list) or not groups:
        raise LabelingError(gettext("ranking must be a non-empty list of groups, best first."), field="ranking")
    seen: set[str] = set()
    for group in groups:
        if not isinstance(group, list) or not group:
            raise LabelingError(
                gettext("each group in ranking must be a non-empty list of answer ids."), field="ranking"
            )
        for answer_id in group:
            if not isinstance(answer_id, str):
                raise LabelingError(
                    gettext("answer ids are strings, not %(answer_id)s.") % {"answer_id": repr(answer_id)},
                    field="ranking",
                )
            if answer_id not in known_ids:
                raise LabelingError(
                    gettext("unknown answer id %(answer_id)s in ranking.") % {"answer_id": repr(answer_id)},
                    field="ranking",
                )
            if answer_id in seen:
                raise LabelingError(
                    gettext("answer id %(answer_id)s appears more than once in ranking.")
                    % {"answer_id": repr(answer_id)},
                    field="ranking",
                )
            seen.add(answer_id)
    missing = sorted(known_ids - seen)
    if missing:
        raise LabelingError(
            gettext("ranking leaves out answers: %(missing)s.") % {"missing": ", ".join(missing)}, field="ranking"
        )
    return [list(group) for group in groups]


def ratings_clean(ratings, known_ids: set[str]) -> dict[str, int]:
    if ratings is None:
        return {}
    if not isinstance(ratings, dict):
        raise LabelingError(gettext("ratings must be an object of answer id to a number 1-7."), field="ratings")
    for answer_id, value in ratings.items():
        if answer_id not in known_ids:
            raise LabelingError(
                gettext("unknown answer id %(answer_id)s in ratings.") % {"answer_id": repr(answer_id)}, field="ratings"
            )
        if isinstance(value, bool) or not isinstance(value, int) or not RATING_MIN <= value <= RATING_MAX:
            raise LabelingError(
                gettext("rating of %(answer_id)s must be a whole number from %(low)s to %(high)s.")
                % {"answer_id": repr(answer_id), "low": RATING_MIN, "high": RATING_MAX},
                field="ratings",
            )
    return dict(ratings)


def flags_clean(flags, known_ids: set[str]) -> dict[str, list[str]]:
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise LabelingError(gettext("flags must be an object of answer id to a list of flags."), field="flags")
    cleaned = {}
    for answer_id, names in flags.items():
        if answer_id not in known_ids:
            raise LabelingError(
                gettext("unknown answer id %(answer_id)s in flags.") % {"answer_id": repr(answer_id)}, field="flags"
            )
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise LabelingError(
                gettext("flags of %(answer_id)s must be a list of flag names.") % {"answer_id": repr(answer_id)},
                field="flags",
            )
        unknown = [name for name in names if name not in FLAGS]
        if unknown:
            raise LabelingError(
                gettext("unknown flag %(unknown)s; use %(flags)s.")
                % {"unknown": repr(unknown[0]), "flags": ", ".join(FLAGS)},
                field="flags",
            )
        if names:
            cleaned[answer_id] = sorted(set(names))
    return cleaned


def skip_reason_clean(reason) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise LabelingError(gettext("reason must be a string."), field="reason")
    if len(reason) > SKIP_REASON_MAX_CHARS:
        raise LabelingError(
            gettext("reason is longer than %(limit)s characters.") % {"limit": SKIP_REASON_MAX_CHARS}, field="reason"
        )
    return reason.strip()


def client_id_clean(client_id) -> uuid.UUID:
    """The UUID a client chose for a write, which makes its retries idempotent."""
    try:
        return uuid.UUID(str(client_id))
    except (TypeError, ValueError, AttributeError):
        raise LabelingError(gettext("client_id must be a UUID chosen by the client."), field="client_id") from None
