"""Checks on untrusted input: conversations, demonstration text, rankings, ratings and flags."""

import uuid

from django.conf import settings

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
    "fails_instruction": "Fails to follow the instruction",
    "factually_wrong": "Factually wrong",
    "harmful": "Harmful",
    "inappropriate": "Inappropriate",
}
RATING_MIN, RATING_MAX = 1, 7
MESSAGE_MAX_CHARS = 100_000
SKIP_REASON_MAX_CHARS = 500


def messages_clean(raw) -> list[dict]:
    """A conversation: a list of {role, content}, ending with a user turn."""
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise LabelingError("messages must be a non-empty list of {role, content}.", field="messages")
    cleaned = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict):
            raise LabelingError(f"message {index} must be an object with role and content.", field="messages")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise LabelingError(f"message {index} has role {role!r}; use one of {', '.join(ROLES)}.", field="messages")
        if not isinstance(content, str) or not content.strip():
            raise LabelingError(f"message {index} needs non-empty text content.", field="messages")
        if len(content) > MESSAGE_MAX_CHARS:
            raise LabelingError(f"message {index} is longer than {MESSAGE_MAX_CHARS} characters.", field="messages")
        if role == "system" and index != 0:
            raise LabelingError("only the first message may be a system message.", field="messages")
        cleaned.append({"role": role, "content": content})
    if cleaned[-1]["role"] != "user":
        raise LabelingError("the conversation must end with a user message.", field="messages")
    return cleaned


def demonstration_text_clean(text) -> str:
    if not isinstance(text, str):
        raise LabelingError("text must be a string.", field="text")
    limit = settings.DEMONSTRATION_MAX_CHARS
    if not text.strip():
        raise LabelingError("The answer is empty. Write the ideal answer before submitting.", field="text")
    if len(text) > limit:
        raise LabelingError(
            f"The answer has {len(text)} characters; the limit is {limit}. Shorten it before submitting.",
            field="text",
        )
    return text


def ranking_clean(groups, known_ids: set[str]) -> list[list[str]]:
    """Groups best to worst; every answer exactly once; a group of several answers is a tie."""
    if not isinstance(groups, list) or not groups:
        raise LabelingError("ranking must be a non-empty list of groups, best first.", field="ranking")
    seen: set[str] = set()
    for group in groups:
        if not isinstance(group, list) or not group:
            raise LabelingError("each group in ranking must be a non-empty list of answer ids.", field="ranking")
        for answer_id in group:
            if not isinstance(answer_id, str):
                raise LabelingError(f"answer ids are strings, not {answer_id!r}.", field="ranking")
            if answer_id not in known_ids:
                raise LabelingError(f"unknown answer id {answer_id!r} in ranking.", field="ranking")
            if answer_id in seen:
                raise LabelingError(f"answer id {answer_id!r} appears more than once in ranking.", field="ranking")
            seen.add(answer_id)
    missing = sorted(known_ids - seen)
    if missing:
        raise LabelingError(f"ranking leaves out answers: {', '.join(missing)}.", field="ranking")
    return [list(group) for group in groups]


def ratings_clean(ratings, known_ids: set[str]) -> dict[str, int]:
    if ratings is None:
        return {}
    if not isinstance(ratings, dict):
        raise LabelingError("ratings must be an object of answer id to a number 1-7.", field="ratings")
    for answer_id, value in ratings.items():
        if answer_id not in known_ids:
            raise LabelingError(f"unknown answer id {answer_id!r} in ratings.", field="ratings")
        if isinstance(value, bool) or not isinstance(value, int) or not RATING_MIN <= value <= RATING_MAX:
            raise LabelingError(
                f"rating of {answer_id!r} must be a whole number from {RATING_MIN} to {RATING_MAX}.", field="ratings"
            )
    return dict(ratings)


def flags_clean(flags, known_ids: set[str]) -> dict[str, list[str]]:
    if flags is None:
        return {}
    if not isinstance(flags, dict):
        raise LabelingError("flags must be an object of answer id to a list of flags.", field="flags")
    cleaned = {}
    for answer_id, names in flags.items():
        if answer_id not in known_ids:
            raise LabelingError(f"unknown answer id {answer_id!r} in flags.", field="flags")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise LabelingError(f"flags of {answer_id!r} must be a list of flag names.", field="flags")
        unknown = [name for name in names if name not in FLAGS]
        if unknown:
            raise LabelingError(f"unknown flag {unknown[0]!r}; use {', '.join(FLAGS)}.", field="flags")
        if names:
            cleaned[answer_id] = sorted(set(names))
    return cleaned


def skip_reason_clean(reason) -> str:
    if reason is None:
        return ""
    if not isinstance(reason, str):
        raise LabelingError("reason must be a string.", field="reason")
    if len(reason) > SKIP_REASON_MAX_CHARS:
        raise LabelingError(f"reason is longer than {SKIP_REASON_MAX_CHARS} characters.", field="reason")
    return reason.strip()


def client_id_clean(client_id) -> uuid.UUID:
    """The UUID a client chose for a write, which makes its retries idempotent."""
    try:
        return uuid.UUID(str(client_id))
    except (TypeError, ValueError, AttributeError):
        raise LabelingError("client_id must be a UUID chosen by the client.", field="client_id") from None
