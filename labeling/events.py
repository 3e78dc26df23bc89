"""The audit trail: one Event row (who, what, when) per accepted write.

Every service that changes what annotators or researchers see records one here, labeling's and
training's alike. Leases and submissions are on the annotator's hot path, so their event is
written with hand-written SQL (labeling.sql), and on PostgreSQL in the same statement as the row
it names.
"""

from django.utils import timezone

from labeling import sql
from labeling.models import Event


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
    (event.pk,) = sql.one(sql.EVENT_INSERT, params)
    event._state.adding = False
    return event


def insert_with_event(
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
    statement = sql.insert_with_event(insert, updates, id_key)
    (new_id,) = sql.one(statement, {**params, **event, "payload": sql.db_json(payload)})
    return new_id
