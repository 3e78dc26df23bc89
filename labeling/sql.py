"""Hand-written SQL for the annotator's hot path (authenticate, next task, submit).

Building and compiling an ORM query costs several times the CPU that the database needs to run a
simple one: on the load benchmark (benchmarks/annotate_load.py) it was about a third of the web
server's CPU. The statements of the hot path are therefore written out here once, with their
columns taken from the models, and their rows are turned back into model instances with the
same converters the ORM applies, so the rest of the code sees ordinary instances. The SQL is
portable between PostgreSQL and SQLite except where `postgres()` says otherwise: that is the one
vendor check of the labeling code (and of training's PostgreSQL-only exports).

Every statement below says why it is written out. Their users: labeling.leases (the queue),
labeling.submissions (submit), labeling.events (the audit row), labeling.api.authentication.
"""

from functools import lru_cache

from django.db import connection

from labeling.models import Assignment, Candidate, Project, Prompt, Task


def postgres() -> bool:
    """The one vendor check: PostgreSQL (row locks, SKIP LOCKED, data-modifying WITH, string_agg)
    or not (SQLite in development and tests, whose IMMEDIATE transactions serialise writers)."""
    return connection.vendor == "postgresql"


class Columns:
    """All concrete columns of a model under a table alias, and a row of them back to an instance."""

    def __init__(self, model, alias: str):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [field.attname for field in self.fields]
        self.sql = ", ".join(f'{alias}."{field.column}"' for field in self.fields)
        self.alias = alias
        self._converters = None

    def __len__(self) -> int:
        return len(self.fields)

    def converters(self) -> list:
        # Per process: the ORM's own converters for these columns (SQLite's text dates and UUIDs,
        # JSON, booleans), as the compiler would apply them to a SELECT of the same fields.
        if self._converters is None:
            found = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                if functions:
                    found.append((index, functions, column))
            self._converters = found
        return self._converters

    def instance(self, row, start: int = 0):
        values = list(row[start : start + len(self.fields)])
        for index, functions, column in self.converters():
            for function in functions:
                values[index] = function(values[index], column, connection)
        return self.model.from_db(connection.alias, self.names, values)


def one(statement: str, params: dict | None = None):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchone()


def all_rows(statement: str, params: dict | None = None) -> list:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def run(statement: str, params: dict | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.rowcount


def db_time(value):
    return connection.ops.adapt_datetimefield_value(value)


def db_json(value):
    return connection.ops.adapt_json_value(value, None)


def db_uuid(value):
    # PostgreSQL has a uuid type; elsewhere Django stores the 32 hex digits.
    return value if connection.features.has_native_uuid_field else value.hex


# --- columns -------------------------------------------------------------------------------------

# The hot path's rows as model instances (Columns.instance), so the rest of the code sees
# ordinary ones: the project, the task and its prompt, my assignment, the task's answers.
PROJECT = Columns(Project, "p")
TASK = Columns(Task, "t")
PROMPT = Columns(Prompt, "pr")
ASSIGNMENT = Columns(Assignment, "a")
CANDIDATE = Columns(Candidate, "c")


def queue_params(*, annotator, now, **more) -> dict:
    """The parameters of the queue's statements (PROJECT_AND_LEASE, NEXT_TASK, SLOTS,
    ASSIGNMENT_INSERT): who asks, when, and the states they compare with."""
    return {
        "me": annotator.pk,
        "now": db_time(now),
        "open": Task.State.OPEN.value,
        "submitted": Assignment.State.SUBMITTED.value,
        "leased": Assignment.State.LEASED.value,
        "skipped": Assignment.State.SKIPPED.value,
        **more,
    }


# --- asking for a task (labeling.leases) ---------------------------------------------------------
# Asking for a task and submitting one are what every annotator does all day, so their statements
# are written out rather than built with the ORM: building and compiling them cost several times
# the CPU that the database needs to run them (see benchmarks/annotate_load.py).

# A task's overlap slot is held by a submitted assignment or a lease that has not expired.
HOLDS_SLOT = "(a.state = %(submitted)s OR (a.state = %(leased)s AND a.lease_expires_at > %(now)s))"

# The project, the lease I hold in it now if any (a reload, a retry), and whether I am on hold
# there (labeling.quality.gold): most requests come from an annotator who holds none, and then go
# straight on to choosing a task. One round trip instead of three ORM queries on every "next task".
PROJECT_AND_LEASE = f"""
    SELECT {PROJECT.sql},
           (SELECT a.id FROM labeling_assignment a JOIN labeling_task t ON t.id = a.task_id
            WHERE a.annotator_id = %(me)s AND a.state = %(leased)s AND a.lease_expires_at > %(now)s
              AND t.project_id = p.id
            ORDER BY a.id LIMIT 1),
           EXISTS (SELECT 1 FROM labeling_hold h
                   WHERE h.project_id = p.id AND h.annotator_id = %(me)s AND h.released_at IS NULL)
    FROM labeling_project p WHERE p.id = %(project)s
"""

# The first task in queue order (highest priority, then most completions, then oldest) that I may take, with its
# prompt; gold tasks and the others are two queues (%(gold)s). Written out because the ORM cannot say the per-task probe below, whose shape keeps the
# plan on the task_queue_idx index (see tests/test_services.py's EXPLAIN test).
NEXT_TASK = f"""
    SELECT {TASK.sql}, {PROMPT.sql}
    FROM labeling_task t JOIN labeling_prompt pr ON pr.id = t.prompt_id
    WHERE t.project_id = %(project)s AND t.state = %(open)s AND t.gold = %(gold)s
      -- A slot is free, and I never submitted or skipped it (an expired lease of mine may come
      -- back to me): my own such assignment counts as a whole overlap. One probe of the task's
      -- few assignments per queued task, by task id only: a probe by (task, me) was planned
      -- through all of my assignments per task when statistics were missing (a new project),
      -- which grew with every task I did. A task's overlap is the project's plus the annotators
      -- it asked for after a disagreement (adaptive overlap); a gold task's is unlimited.
      AND (SELECT COUNT(*) FILTER (WHERE {HOLDS_SLOT})
                  + (%(overlap)s + t.extra_overlap) * COUNT(*) FILTER (WHERE a.annotator_id = %(me)s
                                                     AND a.state IN (%(submitted)s, %(skipped)s))
           FROM labeling_assignment a WHERE a.task_id = t.id) < %(overlap)s + t.extra_overlap
      -- One of the answers is my own demonstration: never mine to rank.
      AND NOT EXISTS (SELECT 1 FROM labeling_candidate c JOIN labeling_demonstration d ON d.id = c.demonstration_id
                      WHERE c.task_id = t.id AND d.annotator_id = %(me)s
                      LIMIT 1 OFFSET 0)
    ORDER BY t.priority DESC, t.completions DESC, t.id
    LIMIT 1
"""


def next_task(*, wait: bool) -> str:
    """NEXT_TASK, locking the task it finds on PostgreSQL: with wait=False SKIP LOCKED passes over
    tasks that concurrent requests hold; wait=True waits for them instead. SQLite has no row
    locks, but its IMMEDIATE transactions serialise whole requests instead."""
    if not postgres():
        return NEXT_TASK
    return NEXT_TASK + (" FOR UPDATE OF t" if wait else " FOR UPDATE OF t SKIP LOCKED")


# Under the task's lock: its slots in use, and my own assignment on it (an expired lease) if any.
# Counted again because NEXT_TASK may have read before a concurrent lease committed.
SLOTS = f"""
    SELECT COUNT(*) FILTER (WHERE {HOLDS_SLOT}), MAX(a.id) FILTER (WHERE a.annotator_id = %(me)s)
    FROM labeling_assignment a WHERE a.task_id = %(task)s
"""

# A ranking task's answers, shuffled into the lease's order and kept for the response.
CANDIDATES = f"SELECT {CANDIDATE.sql} FROM labeling_candidate c WHERE c.task_id = %(task)s ORDER BY c.id"

# A new lease; on PostgreSQL one statement with its audit row (insert_with_event).
ASSIGNMENT_INSERT = """
    INSERT INTO labeling_assignment
        (task_id, annotator_id, state, leased_at, lease_expires_at, candidate_order, draft_text, skip_reason)
    VALUES (%(task)s, %(me)s, %(leased)s, %(now)s, %(until)s, %(order)s, '', '')
    RETURNING id
"""


# --- submitting (labeling.submissions; heartbeat, draft and skip too) ----------------------------

# The task and my assignment on it, both locked (task first, as everywhere: no deadlocks), with
# the project and the task's answer ids that a submission is checked against: one round trip for
# what every submission, heartbeat, draft save and skip checks first.
_LOCKED_LEASE = f"""
    SELECT {TASK.sql}, {PROJECT.sql}, {ASSIGNMENT.sql},
           (SELECT {{join_ids}} FROM labeling_candidate c WHERE c.task_id = t.id)
    FROM labeling_task t
    JOIN labeling_project p ON p.id = t.project_id
    JOIN labeling_assignment a ON a.task_id = t.id AND a.annotator_id = %(me)s
    WHERE t.id = %(task)s
"""
LOCKED_LEASE_POSTGRES = _LOCKED_LEASE.format(join_ids="string_agg(c.public_id, ' ')") + " FOR UPDATE OF t, a"
LOCKED_LEASE_SQLITE = _LOCKED_LEASE.format(join_ids="group_concat(c.public_id, ' ')")


def locked_lease() -> str:
    return LOCKED_LEASE_POSTGRES if postgres() else LOCKED_LEASE_SQLITE


# The submitted record; a duplicate client_id raises IntegrityError, as with the ORM.
DEMONSTRATION_INSERT = """
    INSERT INTO labeling_demonstration (assignment_id, task_id, annotator_id, text, client_id, created_at, updated_at)
    VALUES (%(assignment)s, %(task)s, %(me)s, %(text)s, %(client_id)s, %(now)s, %(now)s)
    RETURNING id
"""
RANKING_INSERT = """
    INSERT INTO labeling_ranking
        (assignment_id, task_id, annotator_id, groups, ratings, flags, none_acceptable, client_id, created_at, updated_at)
    VALUES (%(assignment)s, %(task)s, %(me)s, %(groups)s, %(ratings)s, %(flags)s, %(none_acceptable)s, %(client_id)s,
            %(now)s, %(now)s)
    RETURNING id
"""

# With the insert (one statement on PostgreSQL): my assignment is submitted and the task's
# completions counted under its lock.
ASSIGNMENT_SUBMITTED = (
    "UPDATE labeling_assignment SET state = %(submitted)s, finished_at = %(now)s WHERE id = %(assignment)s"
)
TASK_COUNTED = (
    "UPDATE labeling_task SET completions = %(completions)s, state = %(task_state)s, completed_at = %(completed_at)s"
    " WHERE id = %(task)s"
)

# --- the audit event (labeling.events) ----------------------------------------------------------

EVENT_INTO = "INSERT INTO labeling_event (actor_id, verb, project_id, task_id, payload, created_at)"
# Every accepted write records one; leases and submissions are most of them.
EVENT_INSERT = f"{EVENT_INTO} VALUES (%(actor)s, %(verb)s, %(project)s, %(task)s, %(payload)s, %(at)s) RETURNING id"


@lru_cache(maxsize=8)
def insert_with_event(insert: str, updates: tuple[str, ...], id_key: str) -> str:
    """One PostgreSQL statement: `insert` (RETURNING id), then `updates`, then the audit row, whose
    payload names the new row's id under `id_key`: a lease or a submission is one round trip."""
    steps = ", ".join([f"new AS ({insert})", *(f"step{i} AS ({update})" for i, update in enumerate(updates))])
    return f"""
        WITH {steps}
        {EVENT_INTO}
        SELECT %(actor)s, %(verb)s, %(project)s, %(task)s, jsonb_build_object('{id_key}', new.id) || %(payload)s, %(at)s
        FROM new
        RETURNING (SELECT id FROM new)
    """


# --- API token authentication (labeling.api.authentication) --------------------------------------


@lru_cache(maxsize=1)
def token_with_user() -> tuple[Columns, Columns, str]:
    """Every API request checks its token: the token, its user and the user's group names (every
    labeling request checks a role, which would otherwise be a second query) in one statement.
    Built on first use: the user model is the project's (settings.AUTH_USER_MODEL)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from rest_framework.authtoken.models import Token

    user_model = get_user_model()
    token, user = Columns(Token, "tk"), Columns(user_model, "u")
    membership = user_model.groups.through._meta.db_table
    statement = f"""
        SELECT {token.sql}, {user.sql}, g.name
        FROM {Token._meta.db_table} tk
        JOIN {user_model._meta.db_table} u ON u.id = tk.user_id
        LEFT JOIN {membership} ug ON ug.user_id = u.id
        LEFT JOIN {Group._meta.db_table} g ON g.id = ug.group_id
        WHERE tk.key = %(key)s
    """
    return token, user, statement
