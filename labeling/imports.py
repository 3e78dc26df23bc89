"""Prompt files: JSONL rows with `prompt` (text) or `messages` (a conversation), optionally
`answers` (K strings, making a ranking task); or CSV with a `prompt` column. Bad rows are
reported with their line numbers and skipped; importing the same file twice adds nothing."""

import csv
import io
import json
import re
from dataclasses import dataclass, field

from django.db import transaction

from labeling import services
from labeling.errors import LabelingError
from labeling.models import Project


@dataclass
class ImportReport:
    created: int = 0
    duplicates: int = 0
    ranking_tasks: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def _rows(text: str, fmt: str):
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        reader.fieldnames  # noqa: B018 - reads the header, so line_num points past it
        line = reader.line_num + 1  # a quoted field may span lines: count them as the reader does
        for row in reader:
            yield line, row, None
            line = reader.line_num + 1
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as error:
            yield number, None, f"not valid JSON ({error.msg})"


def prompts_import(*, project: Project, text: str, fmt: str, source: str, actor=None) -> ImportReport:
    if fmt not in {"jsonl", "csv"}:
        raise LabelingError("format must be jsonl or csv.", field="format")
    report = ImportReport()
    for number, row, problem in _rows(text, fmt):
        if problem is None and not isinstance(row, dict):
            problem = "each row must be an object"
        if problem is None:
            problem = _import_row(project=project, row=row, source=source, actor=actor, report=report)
        if problem:
            report.errors.append((number, problem))
    return report


def _import_row(*, project, row: dict, source: str, actor, report: ImportReport) -> str | None:
    messages = row.get("messages") or row.get("prompt")
    if not messages:
        return "needs a `prompt` or `messages` field"
    answers = row.get("answers") or []
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
        return "`answers` must be a list of strings"
    try:
        # One transaction per row: a prompt whose answers are refused must not stay behind without
        # its ranking task, or importing the corrected file would call it "already present".
        with transaction.atomic():
            prompt, created = services.prompt_create(
                project=project, messages=messages, source=source, actor=actor, demonstration_task=not answers
            )
            if created and answers:
                services.ranking_task_create(
                    prompt=prompt,
                    answers=[{"text": a, "source": row.get("answer_source", source)} for a in answers],
                    actor=actor,
                )
    except LabelingError as error:
        return error.message
    if created:
        report.created += 1
        report.ranking_tasks += bool(answers)
    else:
        report.duplicates += 1
    return None


# --- datasets: conversations, preference pairs, Anthropic HH ------------------------------------

DATASET_FORMATS = ("prompts", "conversations", "preferences", "hh")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_parse(transcript: str) -> list[dict]:
    """'\\n\\nHuman: …\\n\\nAssistant: …' → [{role, content}, …]."""
    if not isinstance(transcript, str):
        raise LabelingError("HH transcripts are strings.")
    parts = _HH_TURN.split(transcript)
    if parts[0].strip():
        raise LabelingError("an HH transcript starts with '\\n\\nHuman: '.")
    roles = {"Human": "user", "Assistant": "assistant"}
    turns = [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts) - 1, 2)]
    if not turns:
        raise LabelingError("no '\\n\\nHuman: ' or '\\n\\nAssistant: ' turns found.")
    return turns


def _answer_text(value, name: str) -> str:
    """A completion: plain text, or a conversational list holding one assistant message."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        if (
            value[0].get("role") == "assistant"
            and isinstance(value[0].get("content"), str)
            and value[0]["content"].strip()
        ):
            return value[0]["content"]
    raise LabelingError(f"`{name}` must be text or a list with one assistant message.")


def _split_shared_prefix(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """Implicit-prompt pairs: the turns both share are the prompt; what follows is one answer each."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    # Identical last answers share everything: the prompt still ends before the last turn.
    shared = min(shared, len(chosen) - 1, len(rejected) - 1)
    rest_chosen, rest_rejected = chosen[shared:], rejected[shared:]
    if len(rest_chosen) != 1 or len(rest_rejected) != 1:
        raise LabelingError("chosen and rejected differ before their last answer.")
    if rest_chosen[0]["role"] != "assistant" or rest_rejected[0]["role"] != "assistant":
        raise LabelingError("chosen and rejected must end with an assistant answer.")
    return chosen[:shared], rest_chosen[0]["content"], rest_rejected[0]["content"]


def _preference_from_row(row: dict, fmt: str) -> tuple[list[dict], str, str]:
    if "chosen" not in row or "rejected" not in row:
        raise LabelingError("needs `chosen` and `rejected`.")
    if fmt == "hh":
        return _split_shared_prefix(hh_parse(row["chosen"]), hh_parse(row["rejected"]))
    if "prompt" in row:
        return row["prompt"], _answer_text(row["chosen"], "chosen"), _answer_text(row["rejected"], "rejected")
    if isinstance(row["chosen"], list) and isinstance(row["rejected"], list):
        return _split_shared_prefix(row["chosen"], row["rejected"])
    raise LabelingError("needs `prompt`, or conversational `chosen`/`rejected` that share their prompt.")


def dataset_import(*, project: Project, text: str, fmt: str, source: str, actor=None) -> ImportReport:
    """Bring an existing dataset into a project. Preferences become K=2 rankings and
    conversations become demonstrations, both attributed to the 'imported' source."""
    if fmt not in DATASET_FORMATS:
        raise LabelingError(f"format must be one of {', '.join(DATASET_FORMATS)}.", field="format")
    if fmt == "prompts":
        return prompts_import(project=project, text=text, fmt="jsonl", source=source, actor=actor)
    report = ImportReport()
    for number, row, problem in _rows(text, "jsonl"):
        if problem is None and not isinstance(row, dict):
            problem = "each row must be an object"
        if problem is None:
            try:
                if fmt == "conversations":
                    created = _import_conversation(project=project, row=row, source=source, actor=actor)
                else:
                    prompt, chosen, rejected = _preference_from_row(row, fmt)
                    created = services.imported_preference_create(
                        project=project, messages=prompt, chosen=chosen, rejected=rejected, source=source, actor=actor
                    )
            except LabelingError as error:
                problem = error.message
            else:
                report.created += created
                report.duplicates += not created
        if problem:
            report.errors.append((number, problem))
    return report


def _import_conversation(*, project, row: dict, source: str, actor) -> bool:
    messages = row.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        raise LabelingError("needs `messages`: a conversation ending with the assistant's answer.")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise LabelingError("the last message must be the assistant's answer.")
    return services.imported_demonstration_create(
        project=project, messages=messages[:-1], text=last.get("content"), source=source, actor=actor
    )
