"""Projects, prompts and tasks: adding prompts (deduplicated by content) and ranking tasks over
their answers, and pausing a project. One atomic function each, recording an Event (who, what,
when; labeling.events).

The rest of labeling's writes: labeling.leases (asking for a task, heartbeat, draft, skip,
expired leases), labeling.submissions (submit, edit, finished rankings), labeling.imports
(prompt files and labels from other datasets).
"""

import hashlib
import json

from django.db import transaction
from django.utils.translation import gettext

from labeling import validation
from labeling.errors import LabelingError
from labeling.events import event_record
from labeling.models import Candidate, Project, Prompt, Task, new_public_id

# --- prompts and tasks ---------------------------------------------------------------------------


def messages_hash(messages: list[dict]) -> str:
    canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def prompt_held_out(*, project: Project, content_hash: str) -> bool:
    """Whether a prompt belongs to the frozen evaluation split: decided once, when it is created,
    from its content hash (the same text is held out in every installation at the same share)."""
    return int(content_hash[:15], 16) / 16**15 < project.held_out_share


def prompt_create(
    *, project: Project, messages, source: str = "", actor=None, demonstration_task: bool = True
) -> tuple[Prompt, bool]:
    """Add a prompt (deduplicated by content) and, by default, a demonstration task for it."""
    messages = validation.messages_clean(messages)
    content_hash = messages_hash(messages)
    prompt, created = Prompt.objects.get_or_create(
        project=project,
        content_hash=content_hash,
        defaults={
            "messages": messages,
            "source": source,
            "held_out": prompt_held_out(project=project, content_hash=content_hash),
        },
    )
    if created:
        if demonstration_task:
            Task.objects.create(project=project, prompt=prompt, kind=Task.Kind.DEMONSTRATION)
        event_record(
            actor=actor, verb="prompt.created", project=project, payload={"prompt_id": prompt.pk, "source": source}
        )
    return prompt, created


@transaction.atomic
def ranking_task_create(
    *,
    prompt: Prompt,
    answers: list[dict],
    actor=None,
    k: int | None = None,
    metadata: dict | None = None,
    priority: int = 0,
) -> Task:
    """A ranking task over K answers, each {"text", "source", optional "generation", "demonstration",
    "model_version"}. K is the project's unless given (the arena's pairwise votes are K=2);
    `metadata` (e.g. the generation job) goes into the audit event."""
    project = prompt.project
    k = project.k if k is None else k
    texts = [answer["text"] for answer in answers]
    if len(answers) != k:
        raise LabelingError(
            gettext("a ranking task in %(project)s needs %(k)s answers, got %(answers_length)s.")
            % {"project": project.name, "k": k, "answers_length": len(answers)},
            field="answers",
        )
    if len(set(texts)) != len(texts):
        raise LabelingError(gettext("the answers of a ranking task must differ from each other."), field="answers")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise LabelingError(gettext("every answer needs non-empty text."), field="answers")
    task = Task.objects.create(project=project, prompt=prompt, kind=Task.Kind.RANKING, priority=priority)
    Candidate.objects.bulk_create(
        Candidate(
            task=task,
            public_id=new_public_id(),
            text=answer["text"],
            source=answer.get("source", ""),
            generation=answer.get("generation", {}),
            demonstration=answer.get("demonstration"),
            model_version=answer.get("model_version"),
        )
        for answer in answers
    )
    event_record(
        actor=actor, verb="task.created", project=project, task=task, payload={"kind": task.kind, **(metadata or {})}
    )
    return task


@transaction.atomic
def project_create(*, fields: dict, actor) -> Project:
    """A new project from validated fields (the API's ProjectSerializer)."""
    project = Project.objects.create(**fields)
    event_record(actor=actor, verb="project.created", project=project, payload={"name": project.name})
    return project


@transaction.atomic
def project_pause(*, project: Project, paused: bool, actor) -> Project:
    Project.objects.filter(pk=project.pk).update(paused=paused)
    project.paused = paused
    event_record(actor=actor, verb="project.paused" if paused else "project.resumed", project=project)
    return project
