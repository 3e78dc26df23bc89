"""Reads: what an annotator may see, their progress, and a project's health for admins."""

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from labeling.models import Assignment, Demonstration, Event, Project, Ranking, Task
from labeling.validation import row_id

SUBMIT_VERBS = ("demonstration.submitted", "ranking.submitted")
ANNOTATOR_VERBS = (*SUBMIT_VERBS, "task.leased", "task.skipped", "demonstration.edited", "ranking.edited")


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
