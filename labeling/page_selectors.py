"""Reads shaped for the server-rendered pages. The JSON API has its own shapes in labeling.api;
these build on labeling.selectors and only rearrange what it returns for a template."""

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from labeling import roles, selectors
from labeling.markdown import markdown_to_html
from labeling.models import Project
from labeling.quality.adjudication import adjudication_queue, adjudication_queue_size
from labeling.quality.gold import project_gold_report
from labeling.quality.review import review_counts
from labeling.quality.selectors import project_agreement


def home_projects(*, user) -> list[dict]:
    """Every project, with this annotator's progress in it when the user labels, and its review
    figures when the user reviews."""
    annotating, reviewing = roles.is_annotator(user), roles.is_reviewer(user)
    rows = []
    for project in selectors.projects_for_annotator(user):
        progress = selectors.annotator_progress(annotator=user, project=project) if annotating else None
        review = review_summary(project=project) if reviewing else None
        rows.append({"project": project, "progress": progress, "review": review})
    return rows


def prompt_last_user_text(messages: list[dict]) -> str:
    """The question the annotator answered: the conversation's last user turn."""
    for message in reversed(messages or []):
        if message.get("role") == "user":
            return message.get("content", "")
    return ""


def progress_page_submissions(*, annotator) -> list[dict]:
    """recent_submissions, plus what the page shows: the prompt, and for rankings the summary in
    this annotator's letters and what the ranking board starts from (its answers in those letters,
    the current ranking, ratings and flags)."""
    items = selectors.recent_submissions(annotator=annotator)
    for item in items:
        record = item["record"]
        item["project"] = record.task.project
        item["prompt_text"] = prompt_last_user_text(record.task.prompt.messages)
        if item["kind"] == "ranking":
            item.update(_ranking_view(record, editable=item["editable"]))
    return items


def _ranking_view(record, *, editable: bool) -> dict:
    candidates = selectors.assignment_candidates(record.assignment)
    label_of = {c.public_id: c.label for c in candidates}
    summary = " › ".join(" = ".join(label_of.get(pid, "?") for pid in group) for group in record.groups)
    if not editable:
        return {"ranking_summary": summary}
    # What the page's ranking board (static/labeling/annotate/board.js) starts from, as JSON.
    board = {
        "candidates": [{"id": c.public_id, "label": c.label, "html": markdown_to_html(c.text)} for c in candidates],
        "ranking": record.groups,
        "ratings": record.ratings,
        "flags": record.flags,
        "none_acceptable": record.none_acceptable,
    }
    return {"ranking_summary": summary, "board": board}


def progress_page_skipped(*, annotator) -> list[dict]:
    """The tasks this annotator skipped (selectors.skipped_tasks), with the question each asked."""
    items = selectors.skipped_tasks(annotator=annotator)
    for item in items:
        item["prompt_text"] = prompt_last_user_text(item["task"].prompt.messages)
    return items


def hourly_completions(*, rows: list[dict], now: datetime | None = None, hours: int = 24) -> list[dict]:
    """project_stats' completions per hour as one bar per hour, the empty hours included,
    each with its height as a percentage of the busiest hour."""
    now = now or timezone.now()
    counts = {_hour_start(row["hour"]): row["count"] for row in rows}
    first = _hour_start(now) - timedelta(hours=hours - 1)
    buckets = [{"hour": first + timedelta(hours=i), "count": 0} for i in range(hours)]
    for bucket in buckets:
        bucket["count"] = counts.get(bucket["hour"], 0)
    busiest = max((b["count"] for b in buckets), default=0) or 1
    for index, bucket in enumerate(buckets):
        bucket["percent"] = round(100 * bucket["count"] / busiest)
        bucket["label"] = index % 6 == 0
    return buckets


def _hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def project_admin_data(*, project: Project) -> dict:
    stats = selectors.project_stats(project=project)
    hours = hourly_completions(rows=stats["completions_per_hour"])
    for row in stats["tasks"]:
        row["total"] = row["open"] + row["completed"]
    return {
        **stats,
        "hours": hours,
        "last_24h": sum(b["count"] for b in hours),
        "agreement": agreement_page_data(project_agreement(project=project)),
        "gold": project_gold_report(project=project),
        "review": review_summary(project=project),
    }


def agreement_page_data(report: dict) -> dict:
    """The agreement report with the daily trend as bars (the last 30 days that have pairs)."""
    days = [day for day in report["pairwise"]["by_day"] if day["agreement"] is not None][-30:]
    trend = [{**day, "percent": round(100 * day["agreement"], 1)} for day in days]
    return {**report, "trend": trend}


def review_summary(*, project: Project) -> dict:
    """The review figures of the project and home pages: demonstrations by review state, those
    waiting for reviewers, and the ranking tasks waiting for adjudication."""
    return {
        **review_counts(project=project),
        "required": project.reviews_required,
        "adjudications": adjudication_queue_size(project=project),
    }


def adjudication_page_data(*, project: Project, adjudicator) -> dict:
    """The adjudication queue as the page shows it: each task's answers with rank choices."""
    queue = adjudication_queue(project=project, adjudicator=adjudicator)
    for item in queue["tasks"]:
        item["rank_choices"] = list(range(1, len(item["answers"]) + 1))
        item["percent"] = round(100 * item["agreement"])
    return queue
