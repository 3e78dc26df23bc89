"""Reads: what an annotator may see, their progress, and a project's health for admins."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from labeling.leases import unskip_refusal
from labeling.models import Assignment, Demonstration, Event, Hold, Project, Ranking, Task
from labeling.validation import row_id

SUBMIT_VERBS = ("demonstration.submitted", "ranking.submitted")
ANNOTATOR_VERBS = (
    *SUBMIT_VERBS,
    "task.leased",
    "task.skipped",
    "task.unskipped",
    "demonstration.edited",
    "ranking.edited",
)


def projects_for_annotator(annotator):
    return Project.objects.order_by("name")


def assignment_candidates(assignment: Assignment) -> list:
    """The K answers in this annotator's shuffled order, labelled A, B, C…"""
    loaded = getattr(assignment.task, "candidates_loaded", None)  # read when the task was leased
    by_id = {c.public_id: c for c in (assignment.task.candidates.all() if loaded is None else loaded)}
    ordered = [by_id[pid] for pid in assignment.candidate_order if pid in by_id]
    ordered += [c for pid, c in by_id.items() if pid not in assignment.candidate_order]
    for index, candidate in enumerate(ordered):
        candidate.label = chr(ord("A") + index)
    return ordered


def annotator_progress(*, annotator, project: Project | None = None) -> dict:
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    done = Assignment.objects.filter(annotator=annotator, state=Assignment.State.SUBMITTED)
    if project is not None:
        done = done.filter(task__project=project)
    counts = done.aggregate(total=Count("pk"), today=Count("pk", filter=Q(finished_at__gte=start_of_day)))
    return {"today": counts["today"], "total": counts["total"]}


def recent_submissions(*, annotator, limit: int = 20) -> list[dict]:
    """The annotator's latest demonstrations and rankings, newest first, with whether they are editable."""
    window = timedelta(seconds=settings.SUBMISSION_EDIT_WINDOW_SECONDS)
    now = timezone.now()
    demos = Demonstration.objects.filter(annotator=annotator).select_related("task__prompt", "task__project")
    ranks = Ranking.objects.filter(annotator=annotator).select_related("task__prompt", "task__project")
    items = [
        {"kind": "demonstration", "record": d, "created_at": d.created_at}
        for d in demos.order_by("-created_at")[:limit]
    ] + [{"kind": "ranking", "record": r, "created_at": r.created_at} for r in ranks.order_by("-created_at")[:limit]]
    items.sort(key=lambda item: item["created_at"], reverse=True)
    for item in items:
        item["editable"] = now - item["created_at"] <= window
        item["edit_until"] = item["created_at"] + window
    return items[:limit]


def skipped_tasks(*, annotator, project: Project | None = None, limit: int = 20) -> list[dict]:
    """The tasks this annotator skipped, newest first, each with why it cannot be taken back now
    (labeling.leases.unskip_refusal), or None when it can."""
    skipped = (
        Assignment.objects.filter(annotator=annotator, state=Assignment.State.SKIPPED)
        .select_related("task__project", "task__prompt")
        .order_by("-finished_at", "-id")
    )
    if project is not None:
        skipped = skipped.filter(task__project=project)
    skipped = list(skipped[:limit])
    now = timezone.now()
    # The places others hold on those tasks, as the queue counts them (labeling.sql.HOLDS_SLOT).
    holding = Q(state=Assignment.State.SUBMITTED) | Q(state=Assignment.State.LEASED, lease_expires_at__gt=now)
    in_use = dict(
        Assignment.objects.filter(holding, task_id__in=[a.task_id for a in skipped])
        .order_by()
        .values("task_id")
        .annotate(n=Count("pk"))
        .values_list("task_id", "n")
    )
    on_hold = set(
        Hold.objects.filter(annotator=annotator, released_at__isnull=True).values_list("project_id", flat=True)
    )
    items = []
    for assignment in skipped:
        task = assignment.task
        refusal = unskip_refusal(
            task=task, project=task.project, in_use=in_use.get(task.pk, 0), on_hold=task.project_id in on_hold
        )
        items.append(
            {
                "assignment": assignment,
                "task": task,
                "project": task.project,
                "skipped_at": assignment.finished_at,
                "reason": assignment.skip_reason,
                "refusal": refusal,
            }
        )
    return items


def project_stats(*, project: Project) -> dict:
    """Numbers for the admin's project page."""
    now = timezone.now()
    by_state = {
        (row["kind"], row["state"]): row["n"]
        # Gold tasks are counted apart (labeling.quality.gold): they stay open for every annotator.
        for row in Task.objects.filter(project=project, gold=False).values("kind", "state").annotate(n=Count("pk"))
    }
    open_leases = (
        Assignment.objects.filter(task__project=project, state=Assignment.State.LEASED, lease_expires_at__gt=now)
        .select_related("annotator", "task")
        .order_by("lease_expires_at")
    )
    day_ago = now - timedelta(hours=24)
    per_hour = (
        Event.objects.filter(project=project, verb__in=SUBMIT_VERBS, created_at__gte=day_ago)
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("pk"))
        .order_by("hour")
    )
    # Annotators at work lease, skip, submit and edit; an admin who deploys or votes in the arena
    # is not one of them.
    active = (
        Event.objects.filter(
            project=project, verb__in=ANNOTATOR_VERBS, actor__isnull=False, created_at__gte=now - timedelta(minutes=15)
        )
        .values("actor__username")
        .annotate(n=Count("pk", filter=Q(verb__in=SUBMIT_VERBS)))
        .order_by("actor__username")
    )
    kinds = [Task.Kind.DEMONSTRATION, Task.Kind.RANKING]
    return {
        "tasks": [
            {
                "kind": kind,
                "open": by_state.get((kind, Task.State.OPEN), 0),
                "completed": by_state.get((kind, Task.State.COMPLETED), 0),
            }
            for kind in kinds
        ],
        "completions_per_hour": [{"hour": row["hour"], "count": row["n"]} for row in per_hour],
        "active_annotators": [{"username": row["actor__username"], "submitted": row["n"]} for row in active],
        "open_leases": list(open_leases),
        "submissions_total": Event.objects.filter(project=project, verb__in=SUBMIT_VERBS).count(),
    }


def project_by_name_or_id(value: str) -> Project | None:
    """For the command line: a project by its exact name, else by its id."""
    project = Project.objects.filter(name=value).first()
    if project is None and (project_id := row_id(value)) is not None:
        project = Project.objects.filter(pk=project_id).first()
    return project
