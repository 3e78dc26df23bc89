"""Reads: a project's agreement report, from the rankings of tasks two or more annotators did."""

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Max, Q

from labeling.models import Project, Ranking
from labeling.quality.agreement import RankingLabel, agreement_report
from labeling.validation import FLAGS

CHUNK = 2000
CACHE_SECONDS = 300


def shared_rankings(project: Project):
    """The project's rankings on tasks that two or more annotators ranked, by task. Gold tasks
    are left out: every annotator answers them, so they would swamp agreement and reliability
    (their answers are scored against the known one instead: labeling.quality.gold)."""
    shared = (
        Ranking.objects.filter(task__project=project, task__gold=False)
        .values("task_id")
        .annotate(n=Count("pk"))
        .filter(n__gte=2)
        .values("task_id")
    )
    return Ranking.objects.filter(task_id__in=shared).order_by("task_id", "id")


def project_agreement(*, project: Project) -> dict:
    """The agreement report (labeling.quality.agreement) with usernames. Cached until a ranking of
    the project is added or edited, or for CACHE_SECONDS at most."""
    state = Ranking.objects.filter(task__project=project).aggregate(
        n=Count("pk"), gold=Count("pk", filter=Q(task__gold=True)), last=Max("updated_at")
    )
    # Gold rankings in the key: marking a ranked task gold takes it out of the report.
    key = f"agreement:{project.pk}:{state['n']}:{state['gold']}:{state['last'].isoformat() if state['last'] else ''}"
    report = cache.get(key)
    if report is None:
        rows = shared_rankings(project).values_list(
            "task_id", "annotator_id", "groups", "ratings", "flags", "none_acceptable", "updated_at"
        )
        labels = (RankingLabel(*row) for row in rows.iterator(chunk_size=CHUNK))
        report = agreement_report(labels, flag_names=FLAGS)
        cache.set(key, report, CACHE_SECONDS)
    names = dict(get_user_model().objects.filter(pk__in=report["pairwise"]["annotators"]).values_list("pk", "username"))
    annotators = [
        {"annotator": names.get(pk, str(pk)), **figures} for pk, figures in report["pairwise"]["annotators"].items()
    ]
    return {**report, "pairwise": {**report["pairwise"], "annotators": annotators}}


def annotator_agreement(*, annotator, project: Project | None = None) -> list[dict]:
    """An annotator's own agreement with the others, per project where they share rankings, beside
    the project's overall figure: numbers only, never another annotator's labels or name."""
    projects = Project.objects.filter(tasks__rankings__annotator=annotator).distinct().order_by("name")
    if project is not None:
        projects = projects.filter(pk=project.pk)
    mine = []
    for each in projects:
        report = project_agreement(project=each)
        own = next((row for row in report["pairwise"]["annotators"] if row["annotator"] == annotator.username), None)
        if own is None:
            continue
        fields = ("agreement", "ordered_agreement", "pairs", "tasks")
        mine.append(
            {"project": each.pk, "project_name": each.name, **{key: own[key] for key in fields}}
            | {"project_agreement": report["pairwise"]["agreement"]}
        )
    return mine
