"""Every write that matters: one atomic function each, recording an Event (who, what, when).

Concurrency: every change to a task's slots (lease, submit, skip) first locks the task row, so
counting the slots in use and taking one happen under the same lock. On PostgreSQL that is
SELECT … FOR UPDATE (SKIP LOCKED when choosing); on SQLite the IMMEDIATE transactions in
settings serialise writers. Either way no task is completed by more annotators than its overlap.
"""

import hashlib
import json
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import prefetch_related_objects
from django.utils import timezone

from labeling import validation
from labeling.errors import Conflict, Forbidden, LabelingError, NotFound
from labeling.models import (
    Assignment,
    Candidate,
    Demonstration,
    Event,
    Project,
    Prompt,
    Ranking,
    Task,
    new_public_id,
)

CHOOSE_ATTEMPTS = 8


def event_record(*, actor, verb: str, project=None, task=None, payload: dict | None = None) -> Event:
    return Event.objects.create(actor=actor, verb=verb, project=project, task=task, payload=payload or {})


# --- prompts and tasks ---------------------------------------------------------------------------


def messages_hash(messages: list[dict]) -> str:
    canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@transaction.atomic
def prompt_create(
    *, project: Project, messages, source: str = "", actor=None, demonstration_task: bool = True
) -> tuple[Prompt, bool]:
    """Add a prompt (deduplicated by content) and, by default, a demonstration task for it."""
    messages = validation.messages_clean(messages)
    prompt, created = Prompt.objects.get_or_create(
        project=project,
        content_hash=messages_hash(messages),
        defaults={"messages": messages, "source": source},
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
    *, prompt: Prompt, answers: list[dict], actor=None, k: int | None = None, metadata: dict | None = None
) -> Task:
    """A ranking task over K answers, each {"text", "source", optional "generation", "demonstration",
    "model_version"}. K is the project's unless given (the arena's pairwise votes are K=2);
    `metadata` (e.g. the generation job) goes into the audit event."""
    project = prompt.project
    k = project.k if k is None else k
    texts = [answer["text"] for answer in answers]
    if len(answers) != k:
        raise LabelingError(f"a ranking task in {project.name} needs {k} answers, got {len(answers)}.", field="answers")
    if len(set(texts)) != len(texts):
        raise LabelingError("the answers of a ranking task must differ from each other.", field="answers")
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise LabelingError("every answer needs non-empty text.", field="answers")
    task = Task.objects.create(project=project, prompt=prompt, kind=Task.Kind.RANKING)
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
def project_pause(*, project: Project, paused: bool, actor) -> Project:
    Project.objects.filter(pk=project.pk).update(paused=paused)
    project.paused = paused
    event_record(actor=actor, verb="project.paused" if paused else "project.resumed", project=project)
    return project


# --- leases --------------------------------------------------------------------------------------


def _lease_until(project: Project, now):
    return now + timedelta(seconds=project.lease_seconds)


# Choosing a task runs two statements on every request for one, written out rather than built with
# the ORM: building and compiling them costs several times the CPU that PostgreSQL needs to run
# them (about 2.5 ms for the queue query alone; see benchmarks/annotate_load.py).
#
# A task's overlap slot is held by a submitted assignment or a lease that has not expired.
_HOLDS_SLOT = "(a.state = %(submitted)s OR (a.state = %(leased)s AND a.lease_expires_at > %(now)s))"

# The first task in queue order (most completions first, then oldest) that I may take.
_NEXT_TASK_SQL = f"""
    SELECT t.* FROM labeling_task t
    WHERE t.project_id = %(project)s AND t.state = %(open)s
      AND (SELECT COUNT(*) FROM labeling_assignment a WHERE a.task_id = t.id AND {_HOLDS_SLOT}) < %(overlap)s
      -- Submitted or skipped by me: never again. An expired lease of mine may come back to me.
      -- (OFFSET 0 keeps each NOT EXISTS a probe of one index per queued task: as a join, PostgreSQL
      -- with stale statistics scanned all of my assignments for every task it passed.)
      AND NOT EXISTS (SELECT 1 FROM labeling_assignment a
                      WHERE a.task_id = t.id AND a.annotator_id = %(me)s AND a.state IN (%(submitted)s, %(skipped)s)
                      LIMIT 1 OFFSET 0)
      -- One of the answers is my own demonstration: never mine to rank.
      AND NOT EXISTS (SELECT 1 FROM labeling_candidate c JOIN labeling_demonstration d ON d.id = c.demonstration_id
                      WHERE c.task_id = t.id AND d.annotator_id = %(me)s
                      LIMIT 1 OFFSET 0)
    ORDER BY t.completions DESC, t.id
    LIMIT 1
"""

# Under the task's lock: its slots in use, and my own assignment on it (an expired lease) if any.
_SLOTS_SQL = f"""
    SELECT COUNT(*) FILTER (WHERE {_HOLDS_SLOT}), MAX(a.id) FILTER (WHERE a.annotator_id = %(me)s)
    FROM labeling_assignment a WHERE a.task_id = %(task)s
"""


def _sql_params(*, annotator, now, **more) -> dict:
    return {
        "me": annotator.pk,
        "now": connection.ops.adapt_datetimefield_value(now),
        "open": Task.State.OPEN.value,
        "submitted": Assignment.State.SUBMITTED.value,
        "leased": Assignment.State.LEASED.value,
        "skipped": Assignment.State.SKIPPED.value,
        **more,
    }


def _next_task_locked(*, annotator, project: Project, now, wait: bool) -> Task | None:
    """The next task I may take, locked: with wait=False one no one else is choosing right now.

    SKIP LOCKED (PostgreSQL) passes over tasks that concurrent requests hold; wait=True waits for
    them instead (the caller counts the task's slots again once it has the lock). SQLite has no
    row locks, but its IMMEDIATE transactions serialise whole requests instead."""
    sql = _NEXT_TASK_SQL
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE OF t" if wait else " FOR UPDATE OF t SKIP LOCKED"
    params = _sql_params(annotator=annotator, now=now, project=project.pk, overlap=project.overlap)
    return next(iter(Task.objects.raw(sql, params)), None)


def _slots_and_mine(*, task: Task, annotator, now) -> tuple[int, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(_SLOTS_SQL, _sql_params(annotator=annotator, now=now, task=task.pk))
        in_use, mine = cursor.fetchone()
    return in_use, mine


def task_next_for(*, annotator, project: Project) -> Assignment | None:
    """Lease the next task to this annotator, or give back the lease they already hold."""
    if project.paused:
        raise Conflict("This project is paused; no tasks are being handed out.")
    for _ in range(CHOOSE_ATTEMPTS):
        with transaction.atomic():
            now = timezone.now()
            current = _current_lease(annotator=annotator, project=project, now=now)
            if current is not None:
                return current
            task = _next_task_locked(annotator=annotator, project=project, now=now, wait=False)
            if task is None and connection.features.has_select_for_update_skip_locked:
                # Every task left may be one that another request holds this instant (leasing
                # or submitting it) and SKIP LOCKED passed over: wait for it rather than tell
                # this annotator there is nothing left while a slot is still open.
                task = _next_task_locked(annotator=annotator, project=project, now=now, wait=True)
            if task is None:
                return None
            # The candidate query may have read before a concurrent lease committed; count
            # again now that we hold the task's lock.
            in_use, mine = _slots_and_mine(task=task, annotator=annotator, now=now)
            if in_use >= project.overlap:
                continue
            return _lease(task=task, annotator=annotator, project=project, now=now, existing_id=mine)
    return None


def _current_lease(*, annotator, project: Project, now) -> Assignment | None:
    assignment = (
        Assignment.objects.select_related("task__prompt")
        .filter(annotator=annotator, task__project=project, state=Assignment.State.LEASED, lease_expires_at__gt=now)
        .order_by("id")
        .first()
    )
    if assignment is not None:
        assignment.lease_expires_at = _lease_until(project, now)
        assignment.save(update_fields=["lease_expires_at"])
    return assignment


def _lease(*, task: Task, annotator, project: Project, now, existing_id: int | None) -> Assignment:
    """Lease a task whose lock we hold; existing_id is my assignment on it, counted under that lock."""
    order = []
    if task.kind == Task.Kind.RANKING:  # only ranking tasks have answers to show
        prefetch_related_objects([task], "candidates")  # also serves the answer (selectors.assignment_candidates)
        order = [candidate.public_id for candidate in task.candidates.all()]
        random.shuffle(order)
    if existing_id is None:
        # No get_or_create needed: an assignment is only ever created under its task's lock, and
        # existing_id was read after we took it, so no other one of mine can appear now.
        assignment = Assignment.objects.create(
            task=task,
            annotator=annotator,
            leased_at=now,
            lease_expires_at=_lease_until(project, now),
            candidate_order=order,
        )
    else:  # my own lease had expired: renew it and keep the draft
        assignment = Assignment.objects.get(pk=existing_id)
        assignment.state = Assignment.State.LEASED
        assignment.leased_at = now
        assignment.lease_expires_at = _lease_until(project, now)
        assignment.save(update_fields=["state", "leased_at", "lease_expires_at"])
    assignment.task = task
    event_record(
        actor=annotator, verb="task.leased", project=project, task=task, payload={"assignment_id": assignment.pk}
    )
    return assignment


def _locked_lease(*, annotator, task_id, kind: str | None = None) -> tuple[Task, Assignment]:
    """Lock the task then this annotator's assignment (always in that order: no deadlocks)."""
    task = Task.objects.select_for_update().select_related("project").filter(pk=task_id).first()
    if task is None:
        raise NotFound(f"There is no task {task_id}.")
    assignment = Assignment.objects.select_for_update().filter(task=task, annotator=annotator).first()
    if assignment is None:
        raise Forbidden("This task is not leased to you. Ask for the next task first.")
    if kind is not None and task.kind != kind:
        raise LabelingError(f"Task {task.pk} is a {task.kind} task, not a {kind} task.", field="kind")
    if assignment.state == Assignment.State.SUBMITTED:
        raise Conflict("You already submitted this task; edit it from your recent submissions instead.")
    if assignment.state == Assignment.State.SKIPPED:
        raise Conflict("You skipped this task; it is no longer leased to you.")
    now = timezone.now()
    if assignment.state == Assignment.State.EXPIRED or assignment.lease_expires_at <= now:
        raise Conflict(
            f"Your lease on this task expired at {assignment.lease_expires_at:%H:%M:%S} UTC. "
            "Your draft is kept; ask for the next task to lease it again if it is still free."
        )
    return task, assignment


def lease_heartbeat(*, annotator, task_id) -> Assignment:
    with transaction.atomic():
        task, assignment = _locked_lease(annotator=annotator, task_id=task_id)
        assignment.lease_expires_at = _lease_until(task.project, timezone.now())
        assignment.save(update_fields=["lease_expires_at"])
        return assignment


def draft_save(*, annotator, task_id, text) -> Assignment:
    """Autosave: the draft survives a reload, a crash of the browser, or a lost connection."""
    if not isinstance(text, str):
        raise LabelingError("text must be a string.", field="text")
    if len(text) > settings.DEMONSTRATION_MAX_CHARS * 2:
        raise LabelingError("The draft is too long to save.", field="text")
    with transaction.atomic():
        task, assignment = _locked_lease(annotator=annotator, task_id=task_id, kind=Task.Kind.DEMONSTRATION)
        now = timezone.now()
        assignment.draft_text = text
        assignment.draft_saved_at = now
        assignment.lease_expires_at = _lease_until(task.project, now)
        assignment.save(update_fields=["draft_text", "draft_saved_at", "lease_expires_at"])
        return assignment


def task_skip(*, annotator, task_id, reason="") -> Assignment:
    reason = validation.skip_reason_clean(reason)
    with transaction.atomic():
        task, assignment = _locked_lease(annotator=annotator, task_id=task_id)
        assignment.state = Assignment.State.SKIPPED
        assignment.skip_reason = reason
        assignment.finished_at = timezone.now()
        assignment.save(update_fields=["state", "skip_reason", "finished_at"])
        event_record(
            actor=annotator,
            verb="task.skipped",
            project=task.project,
            task=task,
            payload={"assignment_id": assignment.pk, "reason": reason, "draft_chars": len(assignment.draft_text)},
        )
        return assignment


def leases_return_expired(*, now=None) -> int:
    """Mark leases past their expiry as expired, so their slots visibly return to the pool."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            Assignment.objects.select_for_update(skip_locked=True)
            .filter(state=Assignment.State.LEASED, lease_expires_at__lte=now)
            .select_related("task")
        )
        for assignment in expired:
            assignment.state = Assignment.State.EXPIRED
        Assignment.objects.bulk_update(expired, ["state"])
        Event.objects.bulk_create(
            Event(
                actor=None,
                verb="lease.expired",
                project_id=a.task.project_id,
                task=a.task,
                payload={"assignment_id": a.pk, "annotator_id": a.annotator_id},
            )
            for a in expired
        )
    return len(expired)


def _complete_slot(*, task: Task, assignment: Assignment, now) -> None:
    assignment.state = Assignment.State.SUBMITTED
    assignment.finished_at = now
    assignment.save(update_fields=["state", "finished_at"])
    task.completions += 1
    fields = ["completions"]
    if task.completions >= task.project.overlap:
        task.state = Task.State.COMPLETED
        task.completed_at = now
        fields += ["state", "completed_at"]
    task.save(update_fields=fields)


# --- submissions ------------------------------------------------------------------------------


def _client_uuid(client_id) -> uuid.UUID:
    try:
        return uuid.UUID(str(client_id))
    except (TypeError, ValueError, AttributeError):
        raise LabelingError("client_id must be a UUID chosen by the client.", field="client_id") from None


def _replay(model, *, client_id: uuid.UUID, annotator, task_id):
    """The record an earlier request with this client_id stored, if any (idempotent retries)."""
    existing = model.objects.filter(client_id=client_id).first()
    if existing is None:
        return None
    if existing.annotator_id != annotator.pk or existing.task_id != int(task_id):
        raise Conflict("This client_id was already used for another submission.", field="client_id")
    return existing


def demonstration_submit(*, annotator, task_id, text, client_id) -> tuple[Demonstration, bool]:
    client_uuid = _client_uuid(client_id)
    try:
        text = validation.demonstration_text_clean(text)
        with transaction.atomic():
            task, assignment = _locked_lease(annotator=annotator, task_id=task_id, kind=Task.Kind.DEMONSTRATION)
            now = timezone.now()
            demonstration = Demonstration.objects.create(
                assignment=assignment,
                task=task,
                annotator=annotator,
                text=text,
                client_id=client_uuid,
                created_at=now,
                updated_at=now,
            )
            _complete_slot(task=task, assignment=assignment, now=now)
            event_record(
                actor=annotator,
                verb="demonstration.submitted",
                project=task.project,
                task=task,
                payload={"demonstration_id": demonstration.pk, "client_id": str(client_uuid), "text": text},
            )
            return demonstration, True
    except (LabelingError, IntegrityError):
        # A retry of a stored submission fails above (its lease is submitted, or its client_id is
        # taken): answer it as it was answered. Looking only now saves a query on every first try.
        if existing := _replay(Demonstration, client_id=client_uuid, annotator=annotator, task_id=task_id):
            return existing, False
        raise


def ranking_submit(
    *, annotator, task_id, ranking, ratings=None, flags=None, none_acceptable=False, client_id
) -> tuple[Ranking, bool]:
    client_uuid = _client_uuid(client_id)
    try:
        if not isinstance(none_acceptable, bool):
            raise LabelingError("none_acceptable must be true or false.", field="none_acceptable")
        with transaction.atomic():
            task, assignment = _locked_lease(annotator=annotator, task_id=task_id, kind=Task.Kind.RANKING)
            known = set(task.candidates.values_list("public_id", flat=True))
            groups = validation.ranking_clean(ranking, known)
            clean_ratings = validation.ratings_clean(ratings, known)
            clean_flags = validation.flags_clean(flags, known)
            now = timezone.now()
            record = Ranking.objects.create(
                assignment=assignment,
                task=task,
                annotator=annotator,
                groups=groups,
                ratings=clean_ratings,
                flags=clean_flags,
                none_acceptable=none_acceptable,
                client_id=client_uuid,
                created_at=now,
                updated_at=now,
            )
            _complete_slot(task=task, assignment=assignment, now=now)
            event_record(
                actor=annotator,
                verb="ranking.submitted",
                project=task.project,
                task=task,
                payload={
                    "ranking_id": record.pk,
                    "client_id": str(client_uuid),
                    "groups": groups,
                    "ratings": clean_ratings,
                    "flags": clean_flags,
                    "none_acceptable": none_acceptable,
                    "shown_order": assignment.candidate_order,
                },
            )
            return record, True
    except (LabelingError, IntegrityError):  # as in demonstration_submit
        if existing := _replay(Ranking, client_id=client_uuid, annotator=annotator, task_id=task_id):
            return existing, False
        raise


# --- edits within the window ------------------------------------------------------------------


def _check_edit_window(record, annotator) -> None:
    if record.annotator_id != annotator.pk:
        raise NotFound("There is no such submission of yours.")
    window = timedelta(seconds=settings.SUBMISSION_EDIT_WINDOW_SECONDS)
    if timezone.now() - record.created_at > window:
        minutes = settings.SUBMISSION_EDIT_WINDOW_SECONDS // 60
        raise Conflict(f"Submissions can be edited for {minutes} minutes; this one is older.")


def demonstration_edit(*, annotator, demonstration_id, text) -> Demonstration:
    text = validation.demonstration_text_clean(text)
    with transaction.atomic():
        record = (
            Demonstration.objects.select_for_update()
            .select_related("task__project")
            .filter(pk=demonstration_id)
            .first()
        )
        if record is None:
            raise NotFound("There is no such submission of yours.")
        _check_edit_window(record, annotator)
        previous = record.text
        record.text, record.updated_at = text, timezone.now()
        record.save(update_fields=["text", "updated_at"])
        event_record(
            actor=annotator,
            verb="demonstration.edited",
            project=record.task.project,
            task=record.task,
            payload={"demonstration_id": record.pk, "previous_text": previous, "text": text},
        )
        return record


def ranking_edit(*, annotator, ranking_id, ranking, ratings=None, flags=None, none_acceptable=False) -> Ranking:
    if not isinstance(none_acceptable, bool):
        raise LabelingError("none_acceptable must be true or false.", field="none_acceptable")
    with transaction.atomic():
        record = Ranking.objects.select_for_update().select_related("task__project").filter(pk=ranking_id).first()
        if record is None:
            raise NotFound("There is no such submission of yours.")
        _check_edit_window(record, annotator)
        known = set(record.task.candidates.values_list("public_id", flat=True))
        previous = {
            "groups": record.groups,
            "ratings": record.ratings,
            "flags": record.flags,
            "none_acceptable": record.none_acceptable,
        }
        record.groups = validation.ranking_clean(ranking, known)
        record.ratings = validation.ratings_clean(ratings, known)
        record.flags = validation.flags_clean(flags, known)
        record.none_acceptable = none_acceptable
        record.updated_at = timezone.now()
        record.save(update_fields=["groups", "ratings", "flags", "none_acceptable", "updated_at"])
        event_record(
            actor=annotator,
            verb="ranking.edited",
            project=record.task.project,
            task=record.task,
            payload={
                "ranking_id": record.pk,
                "previous": previous,
                "groups": record.groups,
                "ratings": record.ratings,
                "flags": record.flags,
                "none_acceptable": none_acceptable,
            },
        )
        return record


# --- imported labels -------------------------------------------------------------------------

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


def _imported_task(*, project, messages: list[dict], source: str, kind: str, now) -> tuple[Task, Assignment]:
    """A finished task by the 'imported' account, on the prompt with these messages (shared if it exists)."""
    prompt, _ = Prompt.objects.get_or_create(
        project=project, content_hash=messages_hash(messages), defaults={"messages": messages, "source": source}
    )
    task = Task.objects.create(
        project=project, prompt=prompt, kind=kind, state=Task.State.COMPLETED, completions=1, completed_at=now
    )
    assignment = Assignment.objects.create(
        task=task,
        annotator=imported_user(),
        state=Assignment.State.SUBMITTED,
        leased_at=now,
        lease_expires_at=now,
        finished_at=now,
    )
    return task, assignment


@transaction.atomic
def imported_preference_create(
    *, project: Project, messages, chosen: str, rejected: str, source: str, actor=None
) -> bool:
    """A pairwise preference from another dataset, stored as a finished K=2 ranking. False if already imported."""
    messages = validation.messages_clean(messages)
    for name, text in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(text, str) or not text.strip():
            raise LabelingError(f"{name} must be non-empty text.", field=name)
    if chosen == rejected:
        raise LabelingError("chosen and rejected are the same answer.", field="rejected")
    client_id = _import_key(project, "preference", messages, chosen, rejected)
    if Ranking.objects.filter(client_id=client_id).exists():
        return False
    now = timezone.now()
    task, assignment = _imported_task(
        project=project, messages=messages, source=source, kind=Task.Kind.RANKING, now=now
    )
    better, worse = (
        Candidate.objects.create(task=task, public_id=new_public_id(), text=text, source=f"imported:{source}")
        for text in (chosen, rejected)
    )
    ranking = Ranking.objects.create(
        assignment=assignment,
        task=task,
        annotator=assignment.annotator,
        groups=[[better.public_id], [worse.public_id]],
        client_id=client_id,
        created_at=now,
        updated_at=now,
    )
    event_record(
        actor=actor,
        verb="ranking.imported",
        project=project,
        task=task,
        payload={"ranking_id": ranking.pk, "source": source},
    )
    return True


@transaction.atomic
def imported_demonstration_create(*, project: Project, messages, text, source: str, actor=None) -> bool:
    """A finished conversation from another dataset, stored as a demonstration. False if already imported."""
    messages = validation.messages_clean(messages)
    if not isinstance(text, str) or not text.strip():
        raise LabelingError("the assistant's answer is empty.", field="messages")
    client_id = _import_key(project, "demonstration", messages, text)
    if Demonstration.objects.filter(client_id=client_id).exists():
        return False
    now = timezone.now()
    task, assignment = _imported_task(
        project=project, messages=messages, source=source, kind=Task.Kind.DEMONSTRATION, now=now
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
