"""Rows for each snapshot kind, streamed from the database in task order.

Rankings and their candidates are read as two ordered streams and merged by task id, so memory
holds one task's answers at a time whatever the size of the project."""

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, TextField, Value
from django.db.models.functions import Coalesce, NullIf

from labeling.imports import IMPORTED_USERNAME
from labeling.models import Adjudication, Candidate, Demonstration, Hold, Ranking
from labeling.quality.agreement import RankingLabel, by_task, pairwise_agreement
from labeling.quality.reliability import adjudicated_consensus, adjudicated_pairs, consensus_fit
from labeling.quality.selectors import shared_rankings
from training.datasets.exports import shapes

CHUNK = 5000


def _dated(queryset, filters: dict):
    if filters.get("date_from"):
        queryset = queryset.filter(created_at__date__gte=filters["date_from"])
    if filters.get("date_to"):
        queryset = queryset.filter(created_at__date__lte=filters["date_to"])
    return queryset


def _by_annotators(queryset, project, filters: dict):
    threshold = filters.get("min_agreement")
    if threshold is None:
        return queryset
    scores = agreement_scores(project)
    below = [user for user, score in scores.items() if score < threshold]
    return queryset.exclude(annotator_id__in=below)


def agreement_scores(project) -> dict[int, float]:
    """Each annotator's pairwise agreement with the others (labeling.quality.agreement: ties are a
    choice), the figure the project page shows."""
    rows = shared_rankings(project).values_list("task_id", "annotator_id", "groups").iterator(chunk_size=CHUNK)
    annotators = pairwise_agreement(by_task(RankingLabel(*row) for row in rows))["annotators"]
    return {user: figures["agreement"] for user, figures in annotators.items() if figures["agreement"] is not None}


def _quality(queryset, project, filters: dict):
    """What quality control leaves out of every snapshot: the labels of gold tasks (they check
    annotators; the known answer is the admin's, and every annotator's copy of the same prompt
    would weigh it many times over). `exclude_held`: also the labels of annotators on hold in
    the project (labeling.quality.gold), which rounds leave out by default."""
    queryset = queryset.filter(task__gold=False)
    if filters.get("exclude_held"):
        held = Hold.objects.filter(project=project, released_at__isnull=True).values("annotator_id")
        queryset = queryset.exclude(annotator_id__in=held)
    return queryset


def _training_split(queryset, filters: dict):
    """`exclude_held_out`: leave out the project's frozen evaluation split (what rounds train on);
    `only_held_out`: keep only that split (what rounds are evaluated on)."""
    if filters.get("exclude_held_out"):
        return queryset.filter(task__prompt__held_out=False)
    if filters.get("only_held_out"):
        return queryset.filter(task__prompt__held_out=True)
    return queryset


def rankings_selected(snapshot):
    filters = snapshot.filters
    queryset = _training_split(_dated(Ranking.objects.filter(task__project=snapshot.project), filters), filters)
    if filters.get("exclude_none_acceptable"):
        queryset = queryset.filter(none_acceptable=False)
    version_match = Q()
    if filters.get("model_version") is not None:
        version_match &= Q(model_version_id=filters["model_version"])
    if filters.get("round") is not None:
        version_match &= Q(model_version__round_number=filters["round"])
    if version_match:
        queryset = queryset.filter(Exists(Candidate.objects.filter(version_match, task=OuterRef("task_id"))))
    return _by_annotators(_quality(queryset, snapshot.project, filters), snapshot.project, filters)


def demonstrations_selected(snapshot):
    """Demonstrations peer review did not reject; where the project asks for reviews, only the
    accepted ones (labeling.quality.review)."""
    project = snapshot.project
    queryset = _dated(Demonstration.objects.filter(task__project=project), snapshot.filters)
    queryset = _training_split(queryset, snapshot.filters)
    if snapshot.filters.get("model_version") is not None or snapshot.filters.get("round") is not None:
        # Demonstrations are written by people, not by a model version or round.
        return queryset.none()
    queryset = queryset.exclude(review_state=Demonstration.ReviewState.REJECTED)
    if project.reviews_required > 0:
        queryset = queryset.filter(review_state=Demonstration.ReviewState.ACCEPTED)
    return _by_annotators(_quality(queryset, project, snapshot.filters), project, snapshot.filters)


def reviewed_text():
    """A demonstration's text as its reviewers last edited it, else as its annotator wrote it."""
    return Coalesce(NullIf("reviewed_text", Value("")), "text", output_field=TextField())


def source_count(snapshot) -> int:
    if snapshot.kind == "sft":
        return demonstrations_selected(snapshot).count()
    count = rankings_selected(snapshot).count()
    if snapshot.kind == "annotations":
        count += demonstrations_selected(snapshot).count()
    return count


def _candidates_by_task(rankings) -> Iterator[tuple[int, dict[str, tuple]]]:
    """(task_id, {public_id: (text, source, model_version, round)}) in task order."""
    stream = (
        Candidate.objects.filter(task_id__in=rankings.values("task_id"))
        .order_by("task_id", "id")
        .values_list("task_id", "public_id", "text", "source", "model_version_id", "model_version__round_number")
        .iterator(chunk_size=CHUNK)
    )
    current, answers = None, {}
    for task_id, public_id, text, source, version, round_number in stream:
        if task_id != current:
            if current is not None:
                yield current, answers
            current, answers = task_id, {}
        answers[public_id] = (text, source, version, round_number)
    if current is not None:
        yield current, answers


def _rankings_with_answers(snapshot) -> Iterator[tuple]:
    """Each selected ranking with its prompt and its task's answers, merged by task id."""
    rankings = rankings_selected(snapshot)
    stream = (
        rankings.order_by("task_id", "id")
        .values_list(
            "task_id",
            "groups",
            "ratings",
            "flags",
            "none_acceptable",
            "annotator_id",
            "annotator__username",
            "created_at",
            "updated_at",
            "task__prompt__messages",
        )
        .iterator(chunk_size=CHUNK)
    )
    answers_stream = _candidates_by_task(rankings)
    answers_task, answers = -1, {}
    for row in stream:
        task_id = row[0]
        while answers_task < task_id:
            answers_task, answers = next(answers_stream, (float("inf"), {}))
        yield row, answers


def kept_groups(groups, flags, filters) -> list[list[str]]:
    if filters.get("exclude_flagged") and flags:
        return shapes.groups_without(groups, {answer_id for answer_id, names in flags.items() if names})
    return groups


def ranking_rows(snapshot, progress: Callable[[int], None]) -> Iterator[dict]:
    """One row per ranking. With the `weighted` filter, each row also carries its pairs weighted by
    how far the annotators' reliability-weighted consensus believes them (labeling.quality.reliability):
    a careful annotator's pairs count fully, pairs the consensus believes reversed not at all."""
    consensus = _consensus_of(snapshot) if snapshot.filters.get("weighted") else None
    adjudicated = _adjudicated(snapshot) if consensus is not None else {}
    for done, (row, answers) in enumerate(_rankings_with_answers(snapshot), start=1):
        task_id, groups, _ratings, flags, _, annotator_id, _, _, _, prompt = row
        groups = kept_groups(groups, flags, snapshot.filters)
        if sum(len(group) for group in groups) >= 2:
            ranking = shapes.ranking_row(prompt, groups, {pid: a[0] for pid, a in answers.items()})
            if consensus is None:
                yield ranking
            else:
                label = RankingLabel(task_id, annotator_id, groups)
                if task_id in adjudicated:  # the adjudicator's ranking decides which pairs count
                    pairs = adjudicated_pairs(label, adjudicated[task_id])
                else:
                    pairs = consensus.annotator_pairs(label)
                ranking["pairs"] = shapes.indexed_pairs(groups, pairs)
                if ranking["pairs"]:
                    yield ranking
        progress(done)


def _adjudicated(snapshot) -> dict[int, list[list[str]]]:
    """Task id → the adjudicator's final ranking (labeling.quality.adjudication)."""
    return dict(Adjudication.objects.filter(task__project=snapshot.project).values_list("task_id", "groups"))


def _consensus_of(snapshot):
    """The reliability model fitted on every ranking the snapshot selects (flag filters applied)."""
    rows = (
        rankings_selected(snapshot).order_by("task_id", "id").values_list("task_id", "annotator_id", "groups", "flags")
    )
    return consensus_fit(
        RankingLabel(task_id, annotator_id, kept_groups(groups, flags, snapshot.filters))
        for task_id, annotator_id, groups, flags in rows.iterator(chunk_size=CHUNK)
    )


def consensus_rows(snapshot, progress: Callable[[int], None]) -> Iterator[dict]:
    """One row per task: its rankings merged by the annotators' estimated reliability, or, for a
    task a reviewer adjudicated (labeling.quality.adjudication), the adjudicator's ranking with
    every pair at weight 1. The model is fitted on every selected ranking at once (adjudicated
    tasks' too: they tell how reliable their annotators are), so this reads them all before the
    first row."""
    tasks: dict[int, tuple] = {}
    labels = []
    flagged: dict[int, dict[str, list[str]]] = {}  # per task, every answer any of its rankings flagged
    for done, (row, answers) in enumerate(_rankings_with_answers(snapshot), start=1):
        task_id, groups, _ratings, flags, _, annotator_id, _, _, _, prompt = row
        groups = kept_groups(groups, flags, snapshot.filters)
        tasks.setdefault(task_id, (prompt, {pid: a[0] for pid, a in answers.items()}))
        labels.append(RankingLabel(task_id, annotator_id, groups))
        flagged.setdefault(task_id, {}).update({pid: names for pid, names in (flags or {}).items() if names})
        progress(done)
    consensus = consensus_fit(labels)
    adjudicated = _adjudicated(snapshot)
    annotators = Counter(label.task_id for label in labels)
    for task_id, (prompt, texts) in tasks.items():
        if task_id in adjudicated:
            final = kept_groups(adjudicated[task_id], flagged[task_id], snapshot.filters)
            merged = adjudicated_consensus(final, annotators[task_id])
        else:
            merged = consensus.tasks.get(task_id)
        if merged is not None and merged.pairs:
            yield shapes.consensus_row(prompt, merged.ranks, merged.pairs, texts, merged.annotators)


def preference_rows(snapshot, progress: Callable[[int], None]) -> Iterator[dict]:
    margin = bool(snapshot.filters.get("margin"))
    for done, (row, answers) in enumerate(_rankings_with_answers(snapshot), start=1):
        _, groups, ratings, flags, _, _, _, _, _, prompt = row
        groups = kept_groups(groups, flags, snapshot.filters)
        texts = {pid: a[0] for pid, a in answers.items()}
        yield from shapes.preference_rows(prompt, groups, texts, ratings, snapshot.pair_mode, margin)
        progress(done)


def sft_rows(snapshot, progress: Callable[[int], None]) -> Iterator[dict]:
    stream = (
        demonstrations_selected(snapshot)
        .order_by("id")
        .values_list(reviewed_text(), "task__prompt__messages")
        .iterator(chunk_size=CHUNK)
    )
    for done, (text, prompt) in enumerate(stream, start=1):
        yield shapes.sft_row(prompt, text)
        progress(done)


def iso(moment: datetime) -> str:
    """Always with microseconds, so every timestamp in a file has one shape (and PostgreSQL can
    render the same text: see postgres.py)."""
    return moment.isoformat(timespec="microseconds")


def annotation_rows(snapshot, progress: Callable[[int], None]) -> Iterator[dict]:
    salt = snapshot.salt
    done = 0
    for row, answers in _rankings_with_answers(snapshot):
        task_id, groups, ratings, flags, none_acceptable, annotator_id, username, created, updated, prompt = row
        ranks = shapes.ranks_from_groups(groups)
        yield {
            "kind": "ranking",
            "task_id": task_id,
            "annotator": shapes.pseudonym(salt, annotator_id),
            "created_at": iso(created),
            "updated_at": iso(updated),
            "prompt": prompt,
            "demonstration": None,
            "candidates": [
                {
                    "id": pid,
                    "text": text,
                    "source": source,
                    "model_version": version,
                    "round": round_number,
                    "rank": ranks.get(pid),
                    "rating": ratings.get(pid),
                    "flags": flags.get(pid, []),
                }
                for pid, (text, source, version, round_number) in answers.items()
            ],
            "none_acceptable": none_acceptable,
            "source": "imported" if username == IMPORTED_USERNAME else "annotator",
        }
        done += 1
        progress(done)
    yield from demonstration_annotation_rows(snapshot, progress, done)


def demonstration_annotation_rows(snapshot, progress: Callable[[int], None], done: int) -> Iterator[dict]:
    """The demonstrations of an annotations snapshot, after its rankings; `done` counts on."""
    salt = snapshot.salt
    stream = (
        demonstrations_selected(snapshot)
        .order_by("id")
        .values_list(
            "task_id",
            "annotator_id",
            "annotator__username",
            "created_at",
            "updated_at",
            "task__prompt__messages",
            reviewed_text(),
        )
        .iterator(chunk_size=CHUNK)
    )
    for task_id, annotator_id, username, created, updated, prompt, text in stream:
        yield {
            "kind": "demonstration",
            "task_id": task_id,
            "annotator": shapes.pseudonym(salt, annotator_id),
            "created_at": iso(created),
            "updated_at": iso(updated),
            "prompt": prompt,
            "demonstration": text,
            "candidates": [],
            "none_acceptable": None,
            "source": "imported" if username == IMPORTED_USERNAME else "annotator",
        }
        done += 1
        progress(done)


ROWS = {
    "sft": sft_rows,
    "preference": preference_rows,
    "ranking": ranking_rows,
    "consensus": consensus_rows,
    "annotations": annotation_rows,
}
