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
from functools import lru_cache

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from labeling import sql, validation
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
BIGGEST_ID = 2**63 - 1  # ids are 64-bit integers


_EVENT_INTO = "INSERT INTO labeling_event (actor_id, verb, project_id, task_id, payload, created_at)"
_EVENT_INSERT_SQL = (
    f"{_EVENT_INTO} VALUES (%(actor)s, %(verb)s, %(project)s, %(task)s, %(payload)s, %(at)s) RETURNING id"
)


def event_record(*, actor, verb: str, project=None, task=None, payload: dict | None = None) -> Event:
    """The audit row of one accepted write (written out as SQL: leases and submissions record one each)."""
    event = Event(actor=actor, verb=verb, project=project, task=task, payload=payload or {}, created_at=timezone.now())
    params = {
        "actor": event.actor_id,
        "verb": verb,
        "project": event.project_id,
        "task": event.task_id,
        "payload": sql.db_json(event.payload),
        "at": sql.db_time(event.created_at),
    }
    (event.pk,) = sql.one(_EVENT_INSERT_SQL, params)
    event._state.adding = False
    return event


@lru_cache(maxsize=8)
def _insert_with_event_sql(insert: str, updates: tuple[str, ...], id_key: str) -> str:
    """One PostgreSQL statement: `insert` (RETURNING id), then `updates`, then the audit row, whose
    payload names the new row's id under `id_key`."""
    steps = ", ".join([f"new AS ({insert})", *(f"step{i} AS ({update})" for i, update in enumerate(updates))])
    return f"""
        WITH {steps}
        {_EVENT_INTO}
        SELECT %(actor)s, %(verb)s, %(project)s, %(task)s, jsonb_build_object('{id_key}', new.id) || %(payload)s, %(at)s
        FROM new
        RETURNING (SELECT id FROM new)
    """


def _insert_with_event(
    insert: str, *updates: str, params: dict, id_key: str, actor, verb: str, project, task, payload: dict
) -> int:
    """Insert one row, run `updates` (all with `params`) and record the audit event that names the
    new row; returns its id. A lease and a submission are such writes: on PostgreSQL they are one
    statement each, elsewhere one statement per step."""
    if not sql.postgres():
        (new_id,) = sql.one(insert, params)
        for update in updates:
            sql.run(update, params)
        event_record(actor=actor, verb=verb, project=project, task=task, payload={id_key: new_id, **payload})
        return new_id
    event = {"actor": actor.pk, "verb": verb, "project": project.pk, "task": task.pk, "at": params["now"]}
    statement = _insert_with_event_sql(insert, updates, id_key)
    (new_id,) = sql.one(statement, {**params, **event, "payload": sql.db_json(payload)})
    return new_id


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


# Asking for a task and submitting one are what every annotator does all day, so their statements
# are written out (labeling.sql) rather than built with the ORM: building and compiling them cost
# several times the CPU that the database needs to run them (see benchmarks/annotate_load.py).
_PROJECT = sql.Columns(Project, "p")
_TASK = sql.Columns(Task, "t")
_PROMPT = sql.Columns(Prompt, "pr")
_ASSIGNMENT = sql.Columns(Assignment, "a")
_CANDIDATE = sql.Columns(Candidate, "c")

# A task's overlap slot is held by a submitted assignment or a lease that has not expired.
_HOLDS_SLOT = "(a.state = %(submitted)s OR (a.state = %(leased)s AND a.lease_expires_at > %(now)s))"

# The project, and the lease I hold in it now if any (a reload, a retry): most requests come from
# an annotator who holds none, and then go straight on to choosing a task.
_PROJECT_SQL = f"""
    SELECT {_PROJECT.sql},
           (SELECT a.id FROM labeling_assignment a JOIN labeling_task t ON t.id = a.task_id
            WHERE a.annotator_id = %(me)s AND a.state = %(leased)s AND a.lease_expires_at > %(now)s
              AND t.project_id = p.id
            ORDER BY a.id LIMIT 1)
    FROM labeling_project p WHERE p.id = %(project)s
"""

# The first task in queue order (most completions first, then oldest) that I may take, with its
# prompt.
_NEXT_TASK_SQL = f"""
    SELECT {_TASK.sql}, {_PROMPT.sql}
    FROM labeling_task t JOIN labeling_prompt pr ON pr.id = t.prompt_id
    WHERE t.project_id = %(project)s AND t.state = %(open)s
      -- A slot is free, and I never submitted or skipped it (an expired lease of mine may come
      -- back to me): my own such assignment counts as a whole overlap. One probe of the task's
      -- few assignments per queued task, by task id only: a probe by (task, me) was planned
      -- through all of my assignments per task when statistics were missing (a new project),
      -- which grew with every task I did.
      AND (SELECT COUNT(*) FILTER (WHERE {_HOLDS_SLOT})
                  + %(overlap)s * COUNT(*) FILTER (WHERE a.annotator_id = %(me)s
                                                     AND a.state IN (%(submitted)s, %(skipped)s))
           FROM labeling_assignment a WHERE a.task_id = t.id) < %(overlap)s
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

_CANDIDATES_SQL = f"SELECT {_CANDIDATE.sql} FROM labeling_candidate c WHERE c.task_id = %(task)s ORDER BY c.id"

_ASSIGNMENT_INSERT_SQL = """
    INSERT INTO labeling_assignment
        (task_id, annotator_id, state, leased_at, lease_expires_at, candidate_order, draft_text, skip_reason)
    VALUES (%(task)s, %(me)s, %(leased)s, %(now)s, %(until)s, %(order)s, '', '')
    RETURNING id
"""

# The task and my assignment on it, both locked (task first, as everywhere: no deadlocks), with
# the project and the task's answer ids that a submission is checked against.
_LOCKED_LEASE_SQL = f"""
    SELECT {_TASK.sql}, {_PROJECT.sql}, {_ASSIGNMENT.sql},
           (SELECT {{join_ids}} FROM labeling_candidate c WHERE c.task_id = t.id)
    FROM labeling_task t
    JOIN labeling_project p ON p.id = t.project_id
    JOIN labeling_assignment a ON a.task_id = t.id AND a.annotator_id = %(me)s
    WHERE t.id = %(task)s
"""
_LOCKED_LEASE_SQL_BY_VENDOR = {
    "postgresql": _LOCKED_LEASE_SQL.format(join_ids="string_agg(c.public_id, ' ')") + " FOR UPDATE OF t, a",
    "sqlite": _LOCKED_LEASE_SQL.format(join_ids="group_concat(c.public_id, ' ')"),
}


def _sql_params(*, annotator, now, **more) -> dict:
    return {
        "me": annotator.pk,
        "now": sql.db_time(now),
        "open": Task.State.OPEN.value,
        "submitted": Assignment.State.SUBMITTED.value,
        "leased": Assignment.State.LEASED.value,
        "skipped": Assignment.State.SKIPPED.value,
        **more,
    }


def _next_task_locked(*, annotator, project: Project, now, wait: bool) -> Task | None:
    """The next task I may take (with its prompt), locked: with wait=False one no one else is
    choosing right now.

    SKIP LOCKED (PostgreSQL) passes over tasks that concurrent requests hold; wait=True waits for
    them instead (the caller counts the task's slots again once it has the lock). SQLite has no
    row locks, but its IMMEDIATE transactions serialise whole requests instead."""
    statement = _NEXT_TASK_SQL
    if connection.features.has_select_for_update_skip_locked:
        statement += " FOR UPDATE OF t" if wait else " FOR UPDATE OF t SKIP LOCKED"
    row = sql.one(statement, _sql_params(annotator=annotator, now=now, project=project.pk, overlap=project.overlap))
    if row is None:
        return None
    task = _TASK.instance(row)
    task.prompt = _PROMPT.instance(row, len(_TASK))
    task.project = project
    return task


def _slots_and_mine(*, task: Task, annotator, now) -> tuple[int, int | None]:
    in_use, mine = sql.one(_SLOTS_SQL, _sql_params(annotator=annotator, now=now, task=task.pk))
    return in_use, mine


def task_next(*, annotator, project_id: int) -> Assignment | None:
    """Lease the next task of a project to this annotator, or give back the lease they already hold."""
    row = sql.one(_PROJECT_SQL, _sql_params(annotator=annotator, now=timezone.now(), project=project_id))
    if row is None:
        raise NotFound(f"There is no project {project_id}.", field="project")
    project, current = _PROJECT.instance(row), row[len(_PROJECT)]
    if project.paused:
        raise Conflict("This project is paused; no tasks are being handed out.")
    if current is not None and (renewed := _lease_renew(assignment_id=current, project=project)) is not None:
        return renewed
    for _ in range(CHOOSE_ATTEMPTS):
        with transaction.atomic():
            now = timezone.now()
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


def task_next_for(*, annotator, project: Project) -> Assignment | None:
    return task_next(annotator=annotator, project_id=project.pk)


def _lease_renew(*, assignment_id: int, project: Project) -> Assignment | None:
    """Extend the lease I hold (a reload or a retry gets the same task back); None if it ended meanwhile."""
    with transaction.atomic():
        now = timezone.now()
        renewed = Assignment.objects.filter(
            pk=assignment_id, state=Assignment.State.LEASED, lease_expires_at__gt=now
        ).update(lease_expires_at=_lease_until(project, now))
        if not renewed:
            return None
        return Assignment.objects.select_related("task__prompt").get(pk=assignment_id)


def _lease(*, task: Task, annotator, project: Project, now, existing_id: int | None) -> Assignment:
    """Lease a task whose lock we hold; existing_id is my assignment on it, counted under that lock."""
    order = []
    if task.kind == Task.Kind.RANKING:  # only ranking tasks have answers to show
        # Kept on the task: they also serve the answer (selectors.assignment_candidates).
        task.candidates_loaded = [_CANDIDATE.instance(row) for row in sql.all_rows(_CANDIDATES_SQL, {"task": task.pk})]
        order = [candidate.public_id for candidate in task.candidates_loaded]
        random.shuffle(order)
    if existing_id is None:
        # No get_or_create needed: an assignment is only ever created under its task's lock, and
        # existing_id was read after we took it, so no other one of mine can appear now.
        assignment = Assignment(
            task=task,
            annotator=annotator,
            leased_at=now,
            lease_expires_at=_lease_until(project, now),
            candidate_order=order,
        )
        params = _sql_params(
            annotator=annotator,
            now=now,
            task=task.pk,
            until=sql.db_time(assignment.lease_expires_at),
            order=sql.db_json(order),
        )
        assignment.pk = _insert_with_event(
            _ASSIGNMENT_INSERT_SQL,
            params=params,
            id_key="assignment_id",
            actor=annotator,
            verb="task.leased",
            project=project,
            task=task,
            payload={},
        )
        assignment._state.adding = False
    else:  # my own lease had expired: renew it and keep the draft
        assignment = Assignment.objects.get(pk=existing_id)
        assignment.state = Assignment.State.LEASED
        assignment.leased_at = now
        assignment.lease_expires_at = _lease_until(project, now)
        assignment.save(update_fields=["state", "leased_at", "lease_expires_at"])
        event_record(
            actor=annotator, verb="task.leased", project=project, task=task, payload={"assignment_id": assignment.pk}
        )
    assignment.task = task
    return assignment


def _locked_lease(*, annotator, task_id, kind: str | None = None) -> tuple[Task, Assignment]:
    """Lock the task then this annotator's assignment; the task comes with its project and, as
    `candidate_ids`, the public ids of its answers."""
    task_id = int(task_id)
    if not 0 < task_id <= BIGGEST_ID:  # no such row, and SQLite cannot even compare with it
        raise NotFound(f"There is no task {task_id}.")
    row = sql.one(_LOCKED_LEASE_SQL_BY_VENDOR[connection.vendor], {"me": annotator.pk, "task": task_id})
    if row is None:
        if not Task.objects.filter(pk=task_id).exists():
            raise NotFound(f"There is no task {task_id}.")
        raise Forbidden("This task is not leased to you. Ask for the next task first.")
    task = _TASK.instance(row)
    task.project = _PROJECT.instance(row, len(_TASK))
    assignment = _ASSIGNMENT.instance(row, len(_TASK) + len(_PROJECT))
    assignment.task = task
    task.candidate_ids = set((row[-1] or "").split())
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
        # Locks each expired lease's task too, and passes over those whose task a request holds
        # this instant (it is leasing or submitting it): the next sweep gets them. Locking only
        # the assignment, then waiting for the task (for the audit row's foreign key), could
        # deadlock with a submission, which locks the task first and then the assignment.
        expired = list(
            Assignment.objects.select_for_update(skip_locked=True, of=("self", "task"))
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


# --- submissions ------------------------------------------------------------------------------


def _client_uuid(client_id) -> uuid.UUID:
    try:
        return uuid.UUID(str(client_id))
    except (TypeError, ValueError, AttributeError):
        raise LabelingError("client_id must be a UUID chosen by the client.", field="client_id") from None


_DEMONSTRATION_INSERT_SQL = """
    INSERT INTO labeling_demonstration (assignment_id, task_id, annotator_id, text, client_id, created_at, updated_at)
    VALUES (%(assignment)s, %(task)s, %(me)s, %(text)s, %(client_id)s, %(now)s, %(now)s)
    RETURNING id
"""
_RANKING_INSERT_SQL = """
    INSERT INTO labeling_ranking
        (assignment_id, task_id, annotator_id, groups, ratings, flags, none_acceptable, client_id, created_at, updated_at)
    VALUES (%(assignment)s, %(task)s, %(me)s, %(groups)s, %(ratings)s, %(flags)s, %(none_acceptable)s, %(client_id)s,
            %(now)s, %(now)s)
    RETURNING id
"""


_ASSIGNMENT_SUBMITTED_SQL = (
    "UPDATE labeling_assignment SET state = %(submitted)s, finished_at = %(now)s WHERE id = %(assignment)s"
)
_TASK_COUNTED_SQL = (
    "UPDATE labeling_task SET completions = %(completions)s, state = %(task_state)s, completed_at = %(completed_at)s"
    " WHERE id = %(task)s"
)


def _submission_store(record, *, verb: str, payload: dict, **values) -> None:
    """Under the task's lock, store a new demonstration or ranking: the record (a duplicate
    client_id raises IntegrityError, as with the ORM), its assignment submitted, the task's
    completions counted (it is completed at the project's overlap), and the audit event that
    names the record."""
    task, assignment, now = record.task, record.assignment, record.created_at
    kind = type(record).__name__.lower()
    assignment.state = Assignment.State.SUBMITTED
    assignment.finished_at = now
    task.completions += 1
    if task.completions >= task.project.overlap:
        task.state = Task.State.COMPLETED
        task.completed_at = now
    params = {
        "assignment": assignment.pk,
        "task": task.pk,
        "me": record.annotator_id,
        "client_id": sql.db_uuid(record.client_id),
        "now": sql.db_time(now),
        "submitted": Assignment.State.SUBMITTED.value,
        "completions": task.completions,
        "task_state": str(task.state),
        "completed_at": sql.db_time(task.completed_at) if task.completed_at else None,
        **values,
    }
    record.pk = _insert_with_event(
        _DEMONSTRATION_INSERT_SQL if kind == "demonstration" else _RANKING_INSERT_SQL,
        _ASSIGNMENT_SUBMITTED_SQL,
        _TASK_COUNTED_SQL,
        params=params,
        id_key=f"{kind}_id",
        actor=record.annotator,
        verb=verb,
        project=task.project,
        task=task,
        payload=payload,
    )
    record._state.adding = False


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
            demonstration = Demonstration(
                assignment=assignment,
                task=task,
                annotator=annotator,
                text=text,
                client_id=client_uuid,
                created_at=now,
                updated_at=now,
            )
            _submission_store(
                demonstration,
                verb="demonstration.submitted",
                payload={"client_id": str(client_uuid), "text": text},
                text=text,
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
            known = task.candidate_ids
            groups = validation.ranking_clean(ranking, known)
            clean_ratings = validation.ratings_clean(ratings, known)
            clean_flags = validation.flags_clean(flags, known)
            now = timezone.now()
            record = Ranking(
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
            _submission_store(
                record,
                groups=sql.db_json(groups),
                ratings=sql.db_json(clean_ratings),
                flags=sql.db_json(clean_flags),
                none_acceptable=none_acceptable,
                verb="ranking.submitted",
                payload={
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
