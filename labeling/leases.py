"""The queue: an annotator asks for the next task and holds it as a lease (heartbeat, draft,
skip) until they submit it (labeling.submissions) or the lease expires.

Concurrency: every change to a task's slots (lease, submit, skip) first locks the task row, so
counting the slots in use and taking one happen under the same lock. On PostgreSQL that is
SELECT … FOR UPDATE (SKIP LOCKED when choosing); on SQLite the IMMEDIATE transactions in
settings serialise writers. Either way no task is completed by more annotators than its overlap.
The statements of the hot path are written out in labeling.sql.
"""

import random
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from labeling import sql, validation
from labeling.errors import Conflict, Forbidden, LabelingError, NotFound
from labeling.events import event_record, insert_with_event
from labeling.models import Assignment, Event, Hold, Project, Task

CHOOSE_ATTEMPTS = 8


def _lease_until(project: Project, now):
    return now + timedelta(seconds=project.lease_seconds)


# A gold task's overlap: every annotator may answer it once, and it is never completed.
GOLD_OVERLAP = 1_000_000
ON_HOLD = gettext_lazy(
    "You are on hold in this project: your answers on its check tasks fell below its threshold. "
    "An admin has been told and will review your work."
)


def _next_task_locked(*, annotator, project: Project, now, wait: bool, gold: bool = False) -> Task | None:
    """The next task I may take (with its prompt), locked: with wait=False one no one else is
    choosing right now (sql.next_task). With wait=True the caller counts the task's slots again
    once it has the lock. gold=True looks in the project's gold tasks instead of its queue."""
    overlap = GOLD_OVERLAP if gold else project.overlap
    row = sql.one(
        sql.next_task(wait=wait),
        sql.queue_params(annotator=annotator, now=now, project=project.pk, overlap=overlap, gold=gold),
    )
    if row is None:
        return None
    task = sql.TASK.instance(row)
    task.prompt = sql.PROMPT.instance(row, len(sql.TASK))
    task.project = project
    return task


def _slots_and_mine(*, task: Task, annotator, now) -> tuple[int, int | None]:
    in_use, mine = sql.one(sql.SLOTS, sql.queue_params(annotator=annotator, now=now, task=task.pk))
    return in_use, mine


def task_next(*, annotator, project_id: int) -> Assignment | None:
    """Lease the next task of a project to this annotator, or give back the lease they already hold."""
    row = sql.one(sql.PROJECT_AND_LEASE, sql.queue_params(annotator=annotator, now=timezone.now(), project=project_id))
    if row is None:
        raise NotFound(gettext("There is no project %(project_id)s.") % {"project_id": project_id}, field="project")
    project, current, on_hold = sql.PROJECT.instance(row), row[len(sql.PROJECT)], row[len(sql.PROJECT) + 1]
    if project.paused:
        raise Conflict(gettext("This project is paused; no tasks are being handed out."))
    if on_hold:
        raise Forbidden(ON_HOLD)
    if current is not None and (renewed := _lease_renew(assignment_id=current, project=project)) is not None:
        return renewed
    # Gold tasks come at the project's rate, at random, so nothing about when one comes tells it
    # apart; with none of them left for me, the queue serves as usual. Only while the queue has a
    # task for me: a task that came after "nothing left for you" would be gold for sure.
    if project.gold_rate > 0 and random.random() < project.gold_rate and _queue_has_task(annotator, project):
        if (gold := _choose(annotator=annotator, project=project, gold=True)) is not None:
            return gold
    return _choose(annotator=annotator, project=project, gold=False)


def _queue_has_task(annotator, project: Project) -> bool:
    """Whether the project's ordinary queue has a task I may take (read only: nothing is locked)."""
    params = sql.queue_params(annotator=annotator, now=timezone.now(), project=project.pk, overlap=project.overlap)
    return sql.one(sql.NEXT_TASK, {**params, "gold": False}) is not None


def _choose(*, annotator, project: Project, gold: bool) -> Assignment | None:
    for _ in range(CHOOSE_ATTEMPTS):
        with transaction.atomic():
            now = timezone.now()
            task = _next_task_locked(annotator=annotator, project=project, now=now, wait=False, gold=gold)
            if task is None and sql.postgres():
                # Every task left may be one that another request holds this instant (leasing
                # or submitting it) and SKIP LOCKED passed over: wait for it rather than tell
                # this annotator there is nothing left while a slot is still open.
                task = _next_task_locked(annotator=annotator, project=project, now=now, wait=True, gold=gold)
            if task is None:
                return None
            # The candidate query may have read before a concurrent lease committed; count
            # again now that we hold the task's lock.
            in_use, mine = _slots_and_mine(task=task, annotator=annotator, now=now)
            if not task.gold and in_use >= project.overlap + task.extra_overlap:
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
        task.candidates_loaded = [
            sql.CANDIDATE.instance(row) for row in sql.all_rows(sql.CANDIDATES, {"task": task.pk})
        ]
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
        params = sql.queue_params(
            annotator=annotator,
            now=now,
            task=task.pk,
            until=sql.db_time(assignment.lease_expires_at),
            order=sql.db_json(order),
        )
        assignment.pk = insert_with_event(
            sql.ASSIGNMENT_INSERT,
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


def lease_lock(*, annotator, task_id, kind: str | None = None) -> tuple[Task, Assignment]:
    """Lock the task then this annotator's assignment; the task comes with its project and, as
    `candidate_ids`, the public ids of its answers."""
    task_id = int(task_id)
    if not 0 < task_id <= validation.BIGGEST_ID:  # no such row, and SQLite cannot even compare with it
        raise NotFound(gettext("There is no task %(task_id)s.") % {"task_id": task_id})
    row = sql.one(sql.locked_lease(), {"me": annotator.pk, "task": task_id})
    if row is None:
        if not Task.objects.filter(pk=task_id).exists():
            raise NotFound(gettext("There is no task %(task_id)s.") % {"task_id": task_id})
        raise Forbidden(gettext("This task is not leased to you. Ask for the next task first."))
    task = sql.TASK.instance(row)
    task.project = sql.PROJECT.instance(row, len(sql.TASK))
    assignment = sql.ASSIGNMENT.instance(row, len(sql.TASK) + len(sql.PROJECT))
    assignment.task = task
    task.candidate_ids = set((row[-1] or "").split())
    if kind is not None and task.kind != kind:
        raise Conflict(
            gettext("Task %(task_pk)s is a %(kind)s task, not a %(kind2)s task.")
            % {"task_pk": task.pk, "kind": task.kind, "kind2": kind}
        )
    if assignment.state == Assignment.State.SUBMITTED:
        raise Conflict(gettext("You already submitted this task; edit it from your recent submissions instead."))
    if assignment.state == Assignment.State.SKIPPED:
        raise Conflict(gettext("You skipped this task; it is no longer leased to you."))
    now = timezone.now()
    if assignment.state == Assignment.State.EXPIRED or assignment.lease_expires_at <= now:
        raise Conflict(
            gettext(
                "Your lease on this task expired at %(lease_expires_at)s UTC. Your draft is kept; ask for the next task to lease it again if it is still free."
            )
            % {"lease_expires_at": format(assignment.lease_expires_at, "%H:%M:%S")}
        )
    return task, assignment


def lease_heartbeat(*, annotator, task_id) -> Assignment:
    with transaction.atomic():
        task, assignment = lease_lock(annotator=annotator, task_id=task_id)
        assignment.lease_expires_at = _lease_until(task.project, timezone.now())
        assignment.save(update_fields=["lease_expires_at"])
        return assignment


def draft_save(*, annotator, task_id, text) -> Assignment:
    """Autosave: the draft survives a reload, a crash of the browser, or a lost connection."""
    if not isinstance(text, str):
        raise LabelingError(gettext("text must be a string."), field="text")
    if len(text) > settings.DEMONSTRATION_MAX_CHARS * 2:
        raise LabelingError(gettext("The draft is too long to save."), field="text")
    with transaction.atomic():
        task, assignment = lease_lock(annotator=annotator, task_id=task_id, kind=Task.Kind.DEMONSTRATION)
        now = timezone.now()
        assignment.draft_text = text
        assignment.draft_saved_at = now
        assignment.lease_expires_at = _lease_until(task.project, now)
        assignment.save(update_fields=["draft_text", "draft_saved_at", "lease_expires_at"])
        return assignment


def task_skip(*, annotator, task_id, reason="") -> Assignment:
    reason = validation.skip_reason_clean(reason)
    with transaction.atomic():
        task, assignment = lease_lock(annotator=annotator, task_id=task_id)
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


def unskip_refusal(*, task: Task, project: Project, in_use: int, on_hold: bool) -> str | None:
    """Why a task I skipped cannot be leased to me again now, or None when it can: I must not be
    on hold in the project, the project must be running, and the task open with a free place
    (`in_use`: the places others hold)."""
    if on_hold:
        return ON_HOLD
    if project.paused:
        return gettext("%(project)s is paused, so no task can be taken back now.") % {"project": project.name}
    if task.state != Task.State.OPEN:
        return gettext("Task %(task)s is completed: other annotators finished it after you skipped it.") % {
            "task": task.pk
        }
    if not task.gold and in_use >= project.overlap + task.extra_overlap:
        return gettext(
            "Every place on task %(task)s is taken by other annotators right now. "
            "Try again later: a place frees up when one of their leases ends."
        ) % {"task": task.pk}
    return None


def task_unskip(*, annotator, task_id) -> tuple[Assignment, bool]:
    """Take back a task I skipped: my assignment on it is leased to me again, with its draft and
    its order of answers, if the task is still open and has a free place. A retry while that lease
    holds answers the same (the bool says whether this call re-opened it)."""
    task_id = int(task_id)
    if not 0 < task_id <= validation.BIGGEST_ID:  # no such row, and SQLite cannot even compare with it
        raise NotFound(gettext("You have not skipped task %(task_id)s.") % {"task_id": task_id})
    with transaction.atomic():
        # The task's lock first, as everywhere: counting its places and taking one happen under it.
        task = Task.objects.select_for_update(of=("self",)).select_related("project").filter(pk=task_id).first()
        assignment = None
        if task is not None:
            assignment = Assignment.objects.select_for_update().filter(task=task, annotator=annotator).first()
        if assignment is None:
            raise NotFound(gettext("You have not skipped task %(task_id)s.") % {"task_id": task_id})
        now = timezone.now()
        if assignment.state == Assignment.State.LEASED and assignment.lease_expires_at > now:
            assignment.task = task
            return assignment, False  # a retry: it is mine already
        if assignment.state == Assignment.State.SUBMITTED:
            raise Conflict(
                gettext("You submitted task %(task_id)s; edit it from your recent submissions instead.")
                % {"task_id": task_id}
            )
        if assignment.state != Assignment.State.SKIPPED:
            raise Conflict(
                gettext(
                    "You did not skip task %(task_id)s: your lease on it ended. Ask for the next task to get it back if it is still free."
                )
                % {"task_id": task_id}
            )
        on_hold = Hold.objects.filter(project=task.project, annotator=annotator, released_at__isnull=True).exists()
        in_use, _ = _slots_and_mine(task=task, annotator=annotator, now=now)
        if refusal := unskip_refusal(task=task, project=task.project, in_use=in_use, on_hold=on_hold):
            raise (Forbidden if on_hold else Conflict)(refusal)  # on hold: as asking for the next task
        reason = assignment.skip_reason
        assignment.state = Assignment.State.LEASED
        assignment.leased_at = now
        assignment.lease_expires_at = _lease_until(task.project, now)
        assignment.finished_at = None
        assignment.skip_reason = ""
        assignment.save(update_fields=["state", "leased_at", "lease_expires_at", "finished_at", "skip_reason"])
        event_record(
            actor=annotator,
            verb="task.unskipped",
            project=task.project,
            task=task,
            payload={"assignment_id": assignment.pk, "skip_reason": reason},
        )
        assignment.task = task
        return assignment, True


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
