"""Gold tasks: tasks whose answer an admin knows, served at the project's gold rate like any other
task (labeling.leases), and each annotator's accuracy on them. An annotator whose accuracy is
confidently below the project's threshold is put on hold: no new tasks there, the admin is told on
the project page, and snapshots and rounds can leave their labels out.

- A **ranking** answer scores the share of the gold ranking's answer pairs the annotator ordered
  the same way. A tie is a choice, as in labeling.quality.agreement: a tie against the gold's
  order is a miss, and a gold tie is matched only by a tie.
- A **demonstration** answer scores its peer review's verdict (labeling.quality.review): accepted
  1, rejected 0; one still pending does not count yet.
- **Accuracy** is the mean score over the gold tasks answered, with a 95% bootstrap interval that
  resamples them (agreement.ratio_interval, a fixed seed: the same answers give the same figures).

gold_check puts an annotator on hold once they have answered `gold_min_answers` gold tasks and
the interval's upper end is below `gold_threshold`. After an admin releases a hold, only the
answers given since count towards the next one: the release is a fresh start, not a pause before
the same old answers put them straight back on hold.

What annotators see of their own figures, and of others' on a leaderboard, counts only answers
they can no longer edit (older than SUBMISSION_EDIT_WINDOW_SECONDS): a figure that moved right
after a submission would tell them the task was gold, and editing it until the figure rose would
reveal the gold answer.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from django.utils.translation import gettext

from labeling import validation
from labeling.errors import LabelingError
from labeling.events import event_record
from labeling.models import Assignment, Demonstration, GoldAnswer, Hold, Project, Ranking, Task
from labeling.quality.agreement import pair_counts, rank_positions, ratio_interval

# --- scores and accuracy (no database) -----------------------------------------------------------


@dataclass(frozen=True)
class GoldAccuracy:
    accuracy: float | None
    interval: list[float] | None  # 95% bootstrap interval; None under two gold answers
    gold_answers: int

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "interval": self.interval, "gold_answers": self.gold_answers}


def ranking_score(gold_groups: list[list[str]], groups: list[list[str]]) -> float | None:
    """The share of the gold ranking's answer pairs this ranking orders the same way (ties included)."""
    counts = pair_counts(rank_positions(gold_groups), rank_positions(groups))
    return counts.agree / counts.pairs if counts.pairs else None


def accuracy_of(scores: list[float]) -> GoldAccuracy:
    """The mean score with its 95% interval, resampling gold tasks (each score is one task)."""
    if not scores:
        return GoldAccuracy(None, None, 0)
    interval = ratio_interval(scores, [1] * len(scores))
    return GoldAccuracy(sum(scores) / len(scores), interval, len(scores))


# --- reads -----------------------------------------------------------------------------------------

SCORED_VERDICTS = {Demonstration.ReviewState.ACCEPTED: 1.0, Demonstration.ReviewState.REJECTED: 0.0}


def gold_scores(
    *, project: Project, annotator=None, since: datetime | None = None, until: datetime | None = None
) -> dict[int, list[float]]:
    """Annotator id → their scores on the project's gold tasks, one per task answered, for one
    annotator or everyone. `since` keeps the answers given after it, `until` those given by it."""
    answered = Q(task__project=project, task__gold=True)
    if annotator is not None:
        answered &= Q(annotator=annotator)
    if since is not None:
        answered &= Q(created_at__gt=since)
    if until is not None:
        answered &= Q(created_at__lte=until)
    scores: dict[int, list[float]] = defaultdict(list)
    rankings = Ranking.objects.filter(answered, task__gold_answer__isnull=False).values_list(
        "annotator_id", "groups", "task__gold_answer__groups"
    )
    for annotator_id, groups, gold_groups in rankings.order_by("task_id"):
        if (score := ranking_score(gold_groups, groups)) is not None:
            scores[annotator_id].append(score)
    demonstrations = Demonstration.objects.filter(answered, review_state__in=SCORED_VERDICTS).values_list(
        "annotator_id", "review_state"
    )
    for annotator_id, verdict in demonstrations.order_by("task_id"):
        scores[annotator_id].append(SCORED_VERDICTS[verdict])
    return scores


def gold_accuracy(*, project: Project, annotator, since: datetime | None = None) -> GoldAccuracy:
    return accuracy_of(gold_scores(project=project, annotator=annotator, since=since).get(annotator.pk, []))


def _settled() -> datetime:
    """Answers older than this can no longer be edited: what annotators' figures count."""
    return timezone.now() - timedelta(seconds=settings.SUBMISSION_EDIT_WINDOW_SECONDS)


def _active_holds(project: Project):
    return Hold.objects.filter(project=project, released_at__isnull=True)


def hold_data(hold: Hold) -> dict:
    return {
        "id": hold.pk,
        "annotator": hold.annotator.username,
        "accuracy": hold.accuracy,
        "interval": [hold.low, hold.high],
        "gold_answers": hold.gold_answers,
        "created_at": hold.created_at,
        "released_at": hold.released_at,
        "released_by": hold.released_by.username if hold.released_by else None,
    }


def project_gold_report(*, project: Project) -> dict:
    """For admins and researchers: the gold tasks, each annotator's accuracy with its interval and
    whether they are on hold, and the holds in force."""
    counts = dict(
        Task.objects.filter(project=project, gold=True).values_list("kind").annotate(n=Count("pk")).order_by()
    )
    holds = list(_active_holds(project).select_related("annotator", "released_by"))
    held = {hold.annotator_id: hold for hold in holds}
    scores = gold_scores(project=project)
    names = dict(get_user_model().objects.filter(pk__in={*scores, *held}).values_list("pk", "username"))
    annotators = [
        {
            "annotator": names[pk],
            **accuracy_of(scores.get(pk, [])).summary(),
            "on_hold": pk in held,
            "hold": held[pk].pk if pk in held else None,
        }
        for pk in sorted(names, key=names.get)
    ]
    return {
        "gold_tasks": {kind: counts.get(kind, 0) for kind in Task.Kind.values} | {"total": sum(counts.values())},
        "rate": project.gold_rate,
        "threshold": project.gold_threshold,
        "min_answers": project.gold_min_answers,
        "leaderboard": project.leaderboard,
        "annotators": annotators,
        "holds": [hold_data(hold) for hold in holds],
    }


def annotator_gold(*, annotator, project: Project | None = None) -> list[dict]:
    """An annotator's own gold accuracy per project where they have answers that count, or a hold:
    numbers only, never the gold answers or which tasks were gold."""
    answered = Q(tasks__rankings__annotator=annotator, tasks__gold=True) | Q(
        tasks__demonstrations__annotator=annotator, tasks__gold=True
    )
    projects = Project.objects.filter(answered | Q(holds__annotator=annotator, holds__released_at__isnull=True))
    if project is not None:
        projects = projects.filter(pk=project.pk)
    until, mine = _settled(), []
    for each in projects.distinct().order_by("name"):
        figures = accuracy_of(gold_scores(project=each, annotator=annotator, until=until).get(annotator.pk, []))
        on_hold = _active_holds(each).filter(annotator=annotator).exists()
        if figures.gold_answers or on_hold:
            mine.append(
                {"project": each.pk, "project_name": each.name, **figures.summary()}
                | {"threshold": each.gold_threshold, "on_hold": on_hold}
            )
    return mine


def leaderboards(*, annotator, project: Project | None = None) -> list[dict]:
    """The leaderboard of each project that shows one and where this annotator has submitted:
    every active annotator's submissions and gold accuracy, never anyone's answers."""
    projects = Project.objects.filter(
        leaderboard=True,
        tasks__assignments__annotator=annotator,
        tasks__assignments__state=Assignment.State.SUBMITTED,
    )
    if project is not None:
        projects = projects.filter(pk=project.pk)
    boards = []
    for each in projects.distinct().order_by("name"):
        submitted = (
            Assignment.objects.filter(task__project=each, state=Assignment.State.SUBMITTED, annotator__is_active=True)
            .values_list("annotator_id", "annotator__username")
            .annotate(n=Count("pk"))
            .order_by()
        )
        scores = gold_scores(project=each, until=_settled())
        rows = [
            {"annotator": username, "submissions": n, **_leaderboard_accuracy(scores.get(pk, []))}
            for pk, username, n in submitted
        ]
        rows.sort(key=lambda row: (-row["submissions"], row["annotator"]))
        boards.append({"project": each.pk, "project_name": each.name, "rows": rows})
    return boards


def _leaderboard_accuracy(scores: list[float]) -> dict:
    figures = accuracy_of(scores)
    return {"gold_accuracy": figures.accuracy, "gold_answers": figures.gold_answers}


# --- writes ----------------------------------------------------------------------------------------


def gold_check(*, project: Project, annotator) -> Hold | None:
    """Put the annotator on hold in the project if their gold accuracy is confidently below its
    threshold; returns their hold in force, if any. Idempotent: an annotator already on hold keeps
    that one hold. Called after every gold ranking (labeling.submissions) and every review verdict
    on a gold demonstration (labeling.quality.review), inside their transactions."""
    with transaction.atomic():
        holds = Hold.objects.filter(project=project, annotator=annotator)
        if (active := holds.filter(released_at__isnull=True).first()) is not None:
            return active
        since = holds.aggregate(last=Max("released_at"))["last"]
        figures = gold_accuracy(project=project, annotator=annotator, since=since)
        if figures.gold_answers < project.gold_min_answers:
            return None
        low, high = figures.interval or (figures.accuracy, figures.accuracy)
        if high >= project.gold_threshold:
            return None
        try:
            with transaction.atomic():  # a savepoint: a concurrent check may have just put them on hold
                hold = Hold.objects.create(
                    project=project,
                    annotator=annotator,
                    accuracy=figures.accuracy,
                    low=low,
                    high=high,
                    gold_answers=figures.gold_answers,
                )
        except IntegrityError:  # hold_one_active_per_annotator: that one stands
            return holds.filter(released_at__isnull=True).first()
        event_record(
            actor=None,
            verb="annotator.held",
            project=project,
            payload={
                "hold_id": hold.pk,
                "annotator_id": annotator.pk,
                "annotator": annotator.username,
                "accuracy": figures.accuracy,
                "interval": [low, high],
                "gold_answers": figures.gold_answers,
                "threshold": project.gold_threshold,
            },
        )
        return hold


@transaction.atomic
def hold_release(*, hold: Hold, actor) -> Hold:
    """Let a held annotator work again. Idempotent: a released hold stays as it was released."""
    hold = Hold.objects.select_for_update().select_related("annotator", "project").get(pk=hold.pk)
    if hold.released_at is not None:
        return hold
    hold.released_at, hold.released_by = timezone.now(), actor
    hold.save(update_fields=["released_at", "released_by"])
    event_record(
        actor=actor,
        verb="annotator.released",
        project=hold.project,
        payload={"hold_id": hold.pk, "annotator_id": hold.annotator_id, "annotator": hold.annotator.username},
    )
    return hold


def gold_answer_clean(*, task: Task, ranking=None, text=None) -> dict:
    """The known answer of a task, checked against it: {"groups": …} for a ranking task (its own
    answer ids, every one exactly once, ties allowed), {"text": …} for a demonstration task."""
    if task.kind == Task.Kind.RANKING:
        if text is not None:
            raise LabelingError(
                gettext("A ranking task's gold answer is a ranking; send `ranking`, not `text`."), field="text"
            )
        if ranking is None:
            raise LabelingError(
                gettext("Send the gold ranking: groups of this task's answer ids, best first."), field="ranking"
            )
        known = set(task.candidates.values_list("public_id", flat=True))
        return {"groups": validation.ranking_clean(ranking, known), "text": ""}
    if ranking is not None:
        raise LabelingError(
            gettext("A demonstration task's gold answer is text; send `text`, not `ranking`."), field="ranking"
        )
    if text is None:
        raise LabelingError(gettext("Send the reference answer as `text`."), field="text")
    return {"groups": [], "text": validation.demonstration_text_clean(text)}


@transaction.atomic
def gold_mark(*, task: Task, ranking=None, text=None, actor) -> GoldAnswer:
    """Make a task gold with its known answer (or change the answer). It is open again and served
    to every annotator once, at the project's gold rate; its labels leave every snapshot. Anyone
    who already answered it is scored on it and may be put on hold. Idempotent."""
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)  # as submissions lock it
    answer = gold_answer_clean(task=task, ranking=ranking, text=text)
    gold, created = GoldAnswer.objects.get_or_create(task=task, defaults={**answer, "created_by": actor})
    changed = created or gold.groups != answer["groups"] or gold.text != answer["text"]
    if changed and not created:
        gold.groups, gold.text = answer["groups"], answer["text"]
        gold.created_by, gold.created_at = actor, timezone.now()
        gold.save(update_fields=["groups", "text", "created_by", "created_at"])
    if not task.gold or task.state != Task.State.OPEN:
        changed = True
        task.gold, task.state, task.completed_at = True, Task.State.OPEN, None
        task.save(update_fields=["gold", "state", "completed_at"])
    if changed:
        event_record(actor=actor, verb="task.gold_marked", project=task.project, task=task, payload=answer)
        answered = Q(rankings__task=task) | Q(demonstrations__task=task)
        for annotator in get_user_model().objects.filter(answered).distinct():
            gold_check(project=task.project, annotator=annotator)
    return gold


@transaction.atomic
def gold_unmark(*, task: Task, actor) -> bool:
    """Make a gold task an ordinary one again: completed if its answers reach the project's
    overlap, else back in the queue. Its known answer is deleted. False if it was not gold."""
    task = Task.objects.select_for_update().select_related("project").get(pk=task.pk)
    previous = GoldAnswer.objects.filter(task=task).first()
    if not task.gold and previous is None:
        return False
    if previous is not None:
        previous.delete()
    task.gold = False
    if task.completions >= task.project.overlap + task.extra_overlap:
        task.state, task.completed_at = Task.State.COMPLETED, timezone.now()
    else:
        task.state, task.completed_at = Task.State.OPEN, None
    task.save(update_fields=["gold", "state", "completed_at"])
    payload = {"groups": previous.groups, "text": previous.text} if previous else {}
    event_record(actor=actor, verb="task.gold_unmarked", project=task.project, task=task, payload=payload)
    return True
