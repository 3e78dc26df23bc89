"""Imports. Prompt files: JSONL rows with `prompt` (text) or `messages` (a conversation), optionally
`answers` (K strings, making a ranking task) and `gold` (the task's known answer, making it a gold
task: for a ranking task groups of positions in `answers`, best first, e.g. [[2], [0, 1]]; for a
demonstration task the reference answer); or CSV with a `prompt` column and optionally `gold`
(the reference answer). Datasets:
conversations (demonstrations) and preference pairs (finished K=2 rankings), attributed to the
'imported' account. Bad rows are reported with their line numbers and skipped; importing the same
file twice adds nothing."""

import csv
import io
import json
import re
import uuid
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling import services, validation
from labeling.errors import LabelingError
from labeling.events import event_record
from labeling.models import Assignment, Candidate, Demonstration, Project, Prompt, Ranking, Task, new_public_id
from labeling.quality.gold import gold_mark
from labeling.submissions import ranking_record_finished


@dataclass
class ImportReport:
    created: int = 0
    duplicates: int = 0
    ranking_tasks: int = 0
    gold_tasks: int = 0
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
            yield number, None, gettext("not valid JSON (%(error)s)") % {"error": error.msg}


def prompts_import(*, project: Project, text: str, fmt: str, source: str, actor=None) -> ImportReport:
    if fmt not in {"jsonl", "csv"}:
        raise LabelingError(gettext("format must be jsonl or csv."), field="format")
    report = ImportReport()
    for number, row, problem in _rows(text, fmt):
        if problem is None and not isinstance(row, dict):
            problem = gettext("each row must be an object")
        if problem is None:
            problem = _import_row(project=project, row=row, source=source, actor=actor, report=report)
        if problem:
            report.errors.append((number, problem))
    return report


def _import_row(*, project, row: dict, source: str, actor, report: ImportReport) -> str | None:
    messages = row.get("messages") or row.get("prompt")
    if not messages:
        return gettext("needs a `prompt` or `messages` field")
    answers = row.get("answers") or []
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
        return gettext("`answers` must be a list of strings")
    gold = row.get("gold")
    if gold in (None, ""):  # a CSV row without a reference answer has an empty `gold` column
        gold = None
    try:
        # One transaction per row: a prompt whose answers are refused must not stay behind without
        # its ranking task, or importing the corrected file would call it "already present".
        with transaction.atomic():
            prompt, created = services.prompt_create(
                project=project, messages=messages, source=source, actor=actor, demonstration_task=not answers
            )
            task = None
            if created and answers:
                task = services.ranking_task_create(
                    prompt=prompt,
                    answers=[{"text": a, "source": row.get("answer_source", source)} for a in answers],
                    actor=actor,
                )
            elif created:
                task = prompt.tasks.filter(kind=Task.Kind.DEMONSTRATION).first()
            if created and gold is not None:
                _gold_import(task=task, gold=gold, actor=actor)
    except LabelingError as error:
        return f"`gold`: {error.message}" if error.field == "gold" else error.message
    if created:
        report.created += 1
        report.ranking_tasks += bool(answers)
        report.gold_tasks += gold is not None
    else:
        report.duplicates += 1
    return None


def _gold_import(*, task: Task, gold, actor) -> None:
    """Make an imported task gold: `gold` is, for a ranking task, groups of positions in the row's
    `answers` (from 0), best first; for a demonstration task, the reference answer."""
    if task.kind == Task.Kind.DEMONSTRATION:
        if not isinstance(gold, str):
            raise LabelingError(gettext("a prompt's gold answer is its reference answer, as text."), field="gold")
        gold_mark(task=task, text=gold, actor=actor)
        return
    ids = list(task.candidates.order_by("id").values_list("public_id", flat=True))
    if not isinstance(gold, list) or not all(isinstance(group, list) for group in gold):
        raise LabelingError(
            gettext("a ranking's gold answer is groups of positions in `answers`, best first, e.g. [[2], [0, 1]]."),
            field="gold",
        )
    groups = []
    for group in gold:
        positions = [p for p in group if isinstance(p, int) and not isinstance(p, bool) and 0 <= p < len(ids)]
        if len(positions) != len(group):
            raise LabelingError(
                gettext("positions in `answers` are whole numbers from 0 to %(last)s.") % {"last": len(ids) - 1},
                field="gold",
            )
        groups.append([ids[p] for p in positions])
    try:
        gold_mark(task=task, ranking=groups, actor=actor)
    except LabelingError as error:  # ranking_clean's words name answer ids the file never saw
        raise LabelingError(
            gettext("every answer's position must appear exactly once, e.g. [[2], [0, 1]] for three answers."),
            field="gold",
        ) from error


# --- datasets: conversations, preference pairs, Anthropic HH ------------------------------------

DATASET_FORMATS = ("prompts", "conversations", "preferences", "hh")
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_parse(transcript: str) -> list[dict]:
    """'\\n\\nHuman: …\\n\\nAssistant: …' → [{role, content}, …]."""
    if not isinstance(transcript, str):
        raise LabelingError(gettext("HH transcripts are strings."))
    parts = _HH_TURN.split(transcript)
    if parts[0].strip():
        raise LabelingError(gettext("an HH transcript starts with '\\n\\nHuman: '."))
    roles = {"Human": "user", "Assistant": "assistant"}
    turns = [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts) - 1, 2)]
    if not turns:
        raise LabelingError(gettext("no '\\n\\nHuman: ' or '\\n\\nAssistant: ' turns found."))
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
    raise LabelingError(gettext("`%(name)s` must be text or a list with one assistant message.") % {"name": name})


def _split_shared_prefix(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """Implicit-prompt pairs: the turns both share are the prompt; what follows is one answer each."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    # Identical last answers share everything: the prompt still ends before the last turn.
    shared = min(shared, len(chosen) - 1, len(rejected) - 1)
    rest_chosen, rest_rejected = chosen[shared:], rejected[shared:]
    if len(rest_chosen) != 1 or len(rest_rejected) != 1:
        raise LabelingError(gettext("chosen and rejected differ before their last answer."))
    if rest_chosen[0]["role"] != "assistant" or rest_rejected[0]["role"] != "assistant":
        raise LabelingError(gettext("chosen and rejected must end with an assistant answer."))
    return chosen[:shared], rest_chosen[0]["content"], rest_rejected[0]["content"]


def _preference_from_row(row: dict, fmt: str) -> tuple[list[dict], str, str]:
    if "chosen" not in row or "rejected" not in row:
        raise LabelingError(gettext("needs `chosen` and `rejected`."))
    if fmt == "hh":
        return _split_shared_prefix(hh_parse(row["chosen"]), hh_parse(row["rejected"]))
    if "prompt" in row:
        return row["prompt"], _answer_text(row["chosen"], "chosen"), _answer_text(row["rejected"], "rejected")
    if isinstance(row["chosen"], list) and isinstance(row["rejected"], list):
        return _split_shared_prefix(row["chosen"], row["rejected"])
    raise LabelingError(gettext("needs `prompt`, or conversational `chosen`/`rejected` that share their prompt."))


def dataset_import(*, project: Project, text: str, fmt: str, source: str, actor=None) -> ImportReport:
    """Bring an existing dataset into a project. Preferences become K=2 rankings and
    conversations become demonstrations, both attributed to the 'imported' source."""
    if fmt not in DATASET_FORMATS:
        raise LabelingError(
            gettext("format must be one of %(formats)s.") % {"formats": ", ".join(DATASET_FORMATS)}, field="format"
        )
    if fmt == "prompts":
        return prompts_import(project=project, text=text, fmt="jsonl", source=source, actor=actor)
    report = ImportReport()
    for number, row, problem in _rows(text, "jsonl"):
        if problem is None and not isinstance(row, dict):
            problem = gettext("each row must be an object")
        if problem is None:
            try:
                if fmt == "conversations":
                    created = _import_conversation(project=project, row=row, source=source, actor=actor)
                else:
                    prompt, chosen, rejected = _preference_from_row(row, fmt)
                    created = imported_preference_create(
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
        raise LabelingError(gettext("needs `messages`: a conversation ending with the assistant's answer."))
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise LabelingError(gettext("the last message must be the assistant's answer."))
    return imported_demonstration_create(
        project=project, messages=messages[:-1], text=last.get("content"), source=source, actor=actor
    )


# --- imported labels ---------------------------------------------------------------------------

IMPORTED_USERNAME = "imported"
_IMPORT_NAMESPACE = uuid.UUID("6f0c3c52-5a59-4d0e-9a8e-7d1b0c1e5a11")


def imported_user():
    """The account imported labels are attributed to. It cannot log in."""
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(username=IMPORTED_USERNAME, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _import_key(project: Project, *parts) -> uuid.UUID:
    """Same content, same project → same client_id, so re-importing a file adds nothing twice."""
    return uuid.uuid5(_IMPORT_NAMESPACE, json.dumps([project.pk, *parts], ensure_ascii=False, sort_keys=True))


def _imported_task(*, project, messages: list[dict], source: str, kind: str, now) -> Task:
    """A task finished at birth, on the prompt with these messages (shared if it exists): nobody is
    ever offered it; its one completion is the imported label."""
    content_hash = services.messages_hash(messages)
    held_out = services.prompt_held_out(project=project, content_hash=content_hash)
    prompt, _ = Prompt.objects.get_or_create(
        project=project,
        content_hash=content_hash,
        defaults={"messages": messages, "source": source, "held_out": held_out},
    )
    return Task.objects.create(
        project=project, prompt=prompt, kind=kind, state=Task.State.COMPLETED, completions=1, completed_at=now
    )


@transaction.atomic
def imported_preference_create(
    *, project: Project, messages, chosen: str, rejected: str, source: str, actor=None
) -> bool:
    """A pairwise preference from another dataset, stored as a finished K=2 ranking. False if already imported."""
    messages = validation.messages_clean(messages)
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(text, str) or not text.strip():
            raise LabelingError(gettext("%(name)s must be non-empty text.") % {"name": name}, field=name)
    if chosen == rejected:
        raise LabelingError(gettext("chosen and rejected are the same answer."), field="rejected")
    client_id = _import_key(project, "preference", messages, chosen, rejected)
    if Ranking.objects.filter(client_id=client_id).exists():
        return False
    now = timezone.now()
    task = _imported_task(project=project, messages=messages, source=source, kind=Task.Kind.RANKING, now=now)
    better, worse = (
        Candidate.objects.create(task=task, public_id=new_public_id(), text=text, source=f"imported:{source}")
        for text in (chosen, rejected)
    )
    ranking_record_finished(
        task=task,
        annotator=imported_user(),
        groups=[[better.public_id], [worse.public_id]],
        client_id=client_id,
        verb="ranking.imported",
        actor=actor,
        payload={"source": source},
        now=now,
    )
    return True


@transaction.atomic
def imported_demonstration_create(*, project: Project, messages, text, source: str, actor=None) -> bool:
    """A finished conversation from another dataset, stored as a demonstration. False if already imported."""
    messages = validation.messages_clean(messages)
    if not isinstance(text, str) or not text.strip():
        raise LabelingError(gettext("the assistant's answer is empty."), field="messages")
    client_id = _import_key(project, "demonstration", messages, text)
    if Demonstration.objects.filter(client_id=client_id).exists():
        return False
    now = timezone.now()
    task = _imported_task(project=project, messages=messages, source=source, kind=Task.Kind.DEMONSTRATION, now=now)
    assignment = Assignment.objects.create(
        task=task,
        annotator=imported_user(),
        state=Assignment.State.SUBMITTED,
        leased_at=now,
        lease_expires_at=now,
        finished_at=now,
    )
    demonstration = Demonstration.objects.create(
        assignment=assignment,
        task=task,
        annotator=assignment.annotator,
        text=text,
        client_id=client_id,
        created_at=now,
        updated_at=now,
    )
    event_record(
        actor=actor,
        verb="demonstration.imported",
        project=project,
        task=task,
        payload={"demonstration_id": demonstration.pk, "source": source},
    )
    return True
