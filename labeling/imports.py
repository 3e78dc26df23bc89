"""Prompt files: JSONL rows with `prompt` (text) or `messages` (a conversation), optionally
`answers` (K strings, making a ranking task); or CSV with a `prompt` column. Bad rows are
reported with their line numbers and skipped; importing the same file twice adds nothing."""

import csv
import io
import json
from dataclasses import dataclass, field

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
        for number, row in enumerate(reader, start=2):  # line 1 is the header
            yield number, row, None
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
    try:
        prompt, created = services.prompt_create(
            project=project, messages=messages, source=source, actor=actor, demonstration_task=not answers
        )
        if created and answers:
            services.ranking_task_create(
                prompt=prompt,
                answers=[{"text": a, "source": row.get("answer_source", source)} for a in answers],
                actor=actor,
            )
            report.ranking_tasks += 1
    except LabelingError as error:
        return error.message
    if created:
        report.created += 1
    else:
        report.duplicates += 1
    return None
