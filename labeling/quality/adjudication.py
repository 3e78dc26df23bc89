"""Ranking tasks whose annotators disagree: one more annotator (adaptive overlap), or a final
ranking decided by a reviewer or an admin (adjudication).

When a ranking completes a task that two or more annotators share, the task's agreement is the
pairwise agreement of its rankings (labeling.quality.agreement: each pair of answers ordered the
same way, ties included, pooled over every two annotators). Below the project's
`adjudication_threshold` the task asks for one more annotator while it has asked for fewer than
`adaptive_overlap` (it stays open, its overlap one higher); after that it is completed and waits
in the adjudication queue. The queue is read from the rankings themselves, so an edit within the
edit window, or a new threshold, moves a task in or out of it.

An adjudication is final: in the consensus snapshot (training.datasets.exports.rows) the task's
row is the adjudicator's ranking with every pair at weight 1, in place of the annotators'
reliability-weighted consensus.
"""

import uuid
from itertools import combinations

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.translation import gettext

from labeling import validation
from labeling.errors import Conflict, Forbidden, LabelingError, NotFound
from labeling.events import event_record
from labeling.models import Adjudication, Candidate, Project, Ranking, Task
from labeling.quality.agreement import PairCounts, pair_counts, rank_positions

NOTE_MAX_CHARS = Adjudication._meta.get_field("note").max_length
QUEUE_CACHE_SECONDS = 300


def task_agreement(rankings: list[list[list[str]]]) -> float | None:
    """Pairwise agreement among one task's rankings (groups, best first); None without pairs."""
    pooled = PairCounts()
    for first, second in combinations(rankings, 2):
        pooled.add(pair_counts(rank_positions(first), rank_positions(second)))
    return pooled.summary()["agreement"]


# --- at submission: adaptive overlap --------------------------------------------------------------


def ranking_completion_check(*, task: Task, annotator, groups: list[list[str]]) -> None:
    """Called by labeling.submissions.ranking_submit under the task's lock, before the ranking is
    stored. When this ranking completes a task two or more annotators share and they agree below
    the project's threshold, the task either asks for one more annotator (its extra_overlap one
    higher, so it stays open) or, once it has asked for as many as the project allows, is left to
    complete and waits for adjudication; either way with an audit event. Costs no query unless
    this ranking completes such a task."""
    project = task.project
    overlap = project.overlap + task.extra_overlap
    if task.gold or overlap < 2 or task.completions + 1 < overlap:
        return
    earlier = list(Ranking.objects.filter(task=task).values_list("groups", flat=True))
    agreement = task_agreement([*earlier, groups])
    if agreement is None or agreement >= project.adjudication_threshold:
        return
    payload = {"agreement": agreement, "rankings": len(earlier) + 1, "threshold": project.adjudication_threshold}
    if task.extra_overlap < project.adaptive_overlap:
        task.extra_overlap += 1
        Task.objects.filter(pk=task.pk).update(extra_overlap=task.extra_overlap)
        event_record(
            actor=annotator,
            verb="task.overlap_raised",
            project=project,
            task=task,
            payload={**payload, "extra_overlap": task.extra_overlap},
        )
    else:
        event_record(actor=annotator, verb="task.adjudication_needed", project=project, task=task, payload=payload)


# --- the queue ----------------------------------------------------------------------------------


def _disagreements(project: Project) -> dict[int, float]:
    """Task id → agreement, for the project's completed, non-gold ranking tasks that two or more
    annotators ranked, that agree below the threshold and have no adjudication. Cached until a
    ranking or an adjudication of the project is added or edited, or the threshold changes."""
    state = Ranking.objects.filter(task__project=project).aggregate(n=Count("pk"), last=Max("updated_at"))
    done = Adjudication.objects.filter(task__project=project).aggregate(n=Count("pk"), last=Max("pk"))
    key = (
        f"adjudication-queue:{project.pk}:{project.adjudication_threshold}:{state['n']}:"
        f"{state['last'].isoformat() if state['last'] else ''}:{done['n']}:{done['last']}"
    )
    found = cache.get(key)
    if found is not None:
        return found
    shared = (
        Ranking.objects.filter(task__project=project)
        .values("task_id")
        .annotate(n=Count("pk"))
        .filter(n__gte=2)
        .values("task_id")
    )
    rows = (
        Ranking.objects.filter(
            task_id__in=shared,
            task__state=Task.State.COMPLETED,
            task__kind=Task.Kind.RANKING,
            task__gold=False,
            task__adjudication__isnull=True,
        )
        .order_by("task_id", "id")
        .values_list("task_id", "groups")
    )
    by_task: dict[int, list] = {}
    for task_id, groups in rows.iterator(chunk_size=2000):
        by_task.setdefault(task_id, []).append(groups)
    found = {}
    for task_id, rankings in by_task.items():
        agreement = task_agreement(rankings)
        if agreement is not None and agreement < project.adjudication_threshold:
            found[task_id] = agreement
    cache.set(key, found, QUEUE_CACHE_SECONDS)
    return found


def adjudication_queue_size(*, project: Project) -> int:
    return len(_disagreements(project))


def adjudication_queue(*, project: Project, adjudicator=None, limit: int = 50) -> dict:
    """The tasks waiting for adjudication, oldest first (at most `limit`), each with its prompt,
    its answers (labelled A, B, C… in a fixed order) and the annotators' rankings under
    pseudonyms. Tasks `adjudicator` ranked are left out: they are a party to the disagreement."""
    waiting = _disagreements(project)
    task_ids = sorted(waiting)
    if adjudicator is not None and task_ids:
        own = set(Ranking.objects.filter(task_id__in=task_ids, annotator=adjudicator).values_list("task_id", flat=True))
        task_ids = [task_id for task_id in task_ids if task_id not in own]
    shown = task_ids[:limit]
    tasks = {task.pk: task for task in Task.objects.filter(pk__in=shown).select_related("prompt")}
    answers: dict[int, list] = {task_id: [] for task_id in shown}
    for candidate in Candidate.objects.filter(task_id__in=shown).order_by("task_id", "id"):
        answers[candidate.task_id].append(candidate)
    rankings: dict[int, list] = {task_id: [] for task_id in shown}
    for ranking in Ranking.objects.filter(task_id__in=shown).order_by("task_id", "id"):
        rankings[ranking.task_id].append(ranking)
    return {
        "count": len(task_ids),
        "threshold": project.adjudication_threshold,
        "tasks": [
            _queue_item(tasks[task_id], waiting[task_id], answers[task_id], rankings[task_id]) for task_id in shown
        ],
    }


def _label(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else str(index + 1)


def _queue_item(task: Task, agreement: float, answers: list, rankings: list) -> dict:
    label_of = {candidate.public_id: _label(index) for index, candidate in enumerate(answers)}
    return {
        "task": task.pk,
        "agreement": agreement,
        "messages": task.prompt.messages,
        "answers": [{"id": c.public_id, "label": label_of[c.public_id], "text": c.text} for c in answers],
        "rankings": [
            {
                "annotator": gettext("Annotator %(number)s") % {"number": index},
                "ranking": ranking.groups,
                "order": " › ".join(" = ".join(label_of.get(pid, "?") for pid in group) for group in ranking.groups),
                "none_acceptable": ranking.none_acceptable,
            }
            for index, ranking in enumerate(rankings, start=1)
        ],
    }


# --- the write ----------------------------------------------------------------------------------


def _replay(*, client_id: uuid.UUID, adjudicator, task_id) -> Adjudication | None:
    existing = Adjudication.objects.filter(client_id=client_id).first()
    if existing is None:
        return None
    if existing.adjudicator_id != adjudicator.pk or existing.task_id != validation.row_id(task_id):
        raise Conflict(gettext("This client_id was already used for another adjudication."), field="client_id")
    return existing


def _locked_task(task_id) -> Task:
    pk = validation.row_id(task_id)
    task = None
    if pk is not None:
        task = Task.objects.select_for_update(of=("self",)).select_related("project").filter(pk=pk).first()
    if task is None:
        raise NotFound(gettext("There is no task %(task_id)s.") % {"task_id": task_id}, field="task")
    if task.kind != Task.Kind.RANKING or task.gold:
        raise Conflict(
            gettext("Task %(task_pk)s is not a ranking task annotators share; there is nothing to adjudicate.")
            % {"task_pk": task.pk}
        )
    if task.state != Task.State.COMPLETED:
        raise Conflict(
            gettext("Task %(task_pk)s is still open: its annotators have not all ranked it yet.") % {"task_pk": task.pk}
        )
    return task


def adjudication_submit(*, adjudicator, task_id, ranking, note="", client_id) -> tuple[Adjudication, bool]:
    """A reviewer's or an admin's final ranking of a task its annotators disagreed on. Idempotent by
    client_id: a retry gets the stored adjudication back, with created False."""
    client_uuid = validation.client_id_clean(client_id)
    if existing := _replay(client_id=client_uuid, adjudicator=adjudicator, task_id=task_id):
        return existing, False
    if note is None:
        note = ""
    if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
        raise LabelingError(
            gettext("note must be text of at most %(limit)s characters.") % {"limit": NOTE_MAX_CHARS}, field="note"
        )
    note = note.strip()
    try:
        with transaction.atomic():
            task = _locked_task(task_id)
            if Adjudication.objects.filter(task=task).exists():
                raise Conflict(gettext("Task %(task_pk)s is already adjudicated.") % {"task_pk": task.pk}, field="task")
            if Ranking.objects.filter(task=task, annotator=adjudicator).exists():
                raise Forbidden(
                    gettext("You ranked this task yourself; another reviewer adjudicates it."), field="task"
                )
            known = set(task.candidates.values_list("public_id", flat=True))
            groups = validation.ranking_clean(ranking, known)
            record = Adjudication.objects.create(
                task=task,
                adjudicator=adjudicator,
                groups=groups,
                note=note,
                client_id=client_uuid,
                created_at=timezone.now(),
            )
            event_record(
                actor=adjudicator,
                verb="task.adjudicated",
                project=task.project,
                task=task,
                payload={"adjudication_id": record.pk, "client_id": str(client_uuid), "groups": groups, "note": note},
            )
            return record, True
    except IntegrityError:
        if existing := _replay(client_id=client_uuid, adjudicator=adjudicator, task_id=task_id):
            return existing, False
        raise
