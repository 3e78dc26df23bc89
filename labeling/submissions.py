"""Submissions: a leased task's demonstration or ranking (idempotent by the client's id), edits
within the window, and finished rankings recorded outright (imports, the arena). Each is one
atomic write with its audit Event.
"""

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from labeling import sql, validation
from labeling.errors import Conflict, LabelingError, NotFound
from labeling.events import event_record, insert_with_event
from labeling.leases import lease_lock
from labeling.models import Assignment, Demonstration, Ranking, Task
from labeling.quality.adjudication import ranking_completion_check
from labeling.quality.gold import gold_check


def _client_uuid(client_id) -> uuid.UUID:
    try:
        return uuid.UUID(str(client_id))
    except (TypeError, ValueError, AttributeError):
        raise LabelingError(gettext("client_id must be a UUID chosen by the client."), field="client_id") from None


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
    # A gold task is never completed: every annotator may answer it once.
    if not task.gold and task.completions >= task.project.overlap + task.extra_overlap:
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
    record.pk = insert_with_event(
        sql.DEMONSTRATION_INSERT if kind == "demonstration" else sql.RANKING_INSERT,
        sql.ASSIGNMENT_SUBMITTED,
        sql.TASK_COUNTED,
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
        raise Conflict(gettext("This client_id was already used for another submission."), field="client_id")
    return existing


def demonstration_submit(*, annotator, task_id, text, client_id) -> tuple[Demonstration, bool]:
    client_uuid = _client_uuid(client_id)
    try:
        text = validation.demonstration_text_clean(text)
        with transaction.atomic():
            task, assignment = lease_lock(annotator=annotator, task_id=task_id, kind=Task.Kind.DEMONSTRATION)
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
            raise LabelingError(gettext("none_acceptable must be true or false."), field="none_acceptable")
        with transaction.atomic():
            task, assignment = lease_lock(annotator=annotator, task_id=task_id, kind=Task.Kind.RANKING)
            known = task.candidate_ids
            groups = validation.ranking_clean(ranking, known)
            clean_ratings = validation.ratings_clean(ratings, known)
            clean_flags = validation.flags_clean(flags, known)
            # Before it is counted: a ranking that completes a task whose annotators disagree may ask
            # for one more annotator instead (adaptive overlap). No query unless it completes one.
            ranking_completion_check(task=task, annotator=annotator, groups=groups)
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
            if task.gold:  # scored at once: a low accuracy puts them on hold before their next task
                gold_check(project=task.project, annotator=annotator)
            return record, True
    except (LabelingError, IntegrityError):  # as in demonstration_submit
        if existing := _replay(Ranking, client_id=client_uuid, annotator=annotator, task_id=task_id):
            return existing, False
        raise


# --- edits within the window ------------------------------------------------------------------


def _check_edit_window(record, annotator) -> None:
    if record.annotator_id != annotator.pk:
        raise NotFound(gettext("There is no such submission of yours."))
    window = timedelta(seconds=settings.SUBMISSION_EDIT_WINDOW_SECONDS)
    if timezone.now() - record.created_at > window:
        minutes = settings.SUBMISSION_EDIT_WINDOW_SECONDS // 60
        raise Conflict(
            gettext("Submissions can be edited for %(minutes)s minutes; this one is older.") % {"minutes": minutes}
        )


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
            raise NotFound(gettext("There is no such submission of yours."))
        _check_edit_window(record, annotator)
        if record.reviews.exists():  # the reviews judged this text (labeling.quality.review)
            raise Conflict(gettext("A reviewer has already reviewed this answer, so it can no longer be edited."))
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
        raise LabelingError(gettext("none_acceptable must be true or false."), field="none_acceptable")
    with transaction.atomic():
        record = Ranking.objects.select_for_update().select_related("task__project").filter(pk=ranking_id).first()
        if record is None:
            raise NotFound(gettext("There is no such submission of yours."))
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
        if record.task.gold:  # an edit changes the gold score too
            gold_check(project=record.task.project, annotator=annotator)
        return record


# --- finished rankings recorded outright ------------------------------------------------------


@transaction.atomic
def ranking_record_finished(
    *,
    task: Task,
    annotator,
    groups: list[list[str]],
    client_id: uuid.UUID,
    verb: str,
    actor=None,
    leased_at=None,
    none_acceptable: bool = False,
    candidate_order: list[str] | None = None,
    payload: dict | None = None,
    now=None,
) -> Ranking:
    """A ranking of `task` made elsewhere (an imported dataset, an arena vote): the task is finished
    at once with this one completion, so nobody is ever offered it, and `annotator` submitted it.
    Records the submitted assignment, the ranking and the audit event (`verb`, by `actor`, whose
    payload names the ranking, plus `payload`)."""
    now = now or timezone.now()
    Task.objects.filter(pk=task.pk).update(state=Task.State.COMPLETED, completions=1, completed_at=now)
    task.state, task.completions, task.completed_at = Task.State.COMPLETED, 1, now
    assignment = Assignment.objects.create(
        task=task,
        annotator=annotator,
        state=Assignment.State.SUBMITTED,
        leased_at=leased_at or now,
        lease_expires_at=now,
        finished_at=now,
        candidate_order=candidate_order or [],
    )
    ranking = Ranking.objects.create(
        assignment=assignment,
        task=task,
        annotator=annotator,
        groups=groups,
        none_acceptable=none_acceptable,
        client_id=client_id,
        created_at=now,
        updated_at=now,
    )
    event_record(
        actor=actor, verb=verb, project=task.project, task=task, payload={"ranking_id": ranking.pk, **(payload or {})}
    )
    return ranking
