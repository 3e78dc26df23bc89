"""How far annotators agree, from the labels of tasks two or more of them completed. No Django.

- **Pairwise agreement** on rankings: for two annotators who ranked the same task, each pair of
  answers both ranked is ordered one way, the other, or tied; they agree on the pair when they
  chose the same of those three. Ties are a choice like any other, so a tie against an order is a
  disagreement and two ties agree. The ties are counted too (`pairs_tied_by_both`,
  `pairs_tied_by_one`), and the agreement on the pairs neither tied (`ordered_agreement`, what
  most papers report) beside it. An annotator's figure pools the pairs they share with everyone
  else; the project's pools every pair once, with a 95% interval that resamples whole tasks
  (pairs within a task are not independent).
- **Krippendorff's α** (the `krippendorff` package) for the rankings (each answer's rank position
  in its task, ordinal: tied answers share a position), for the 1–7 ratings (ordinal), for flags
  (each answer × flag, flagged or not, nominal) and for "none acceptable" (each task, nominal).
  α is None when it is undefined: fewer than two annotators on any unit, or every label the same.
- **Over time**: the pairwise agreement of the pairs whose later label arrived on each day.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations

import numpy as np

BOOTSTRAP_SAMPLES = 1000


@dataclass(frozen=True)
class RankingLabel:
    task_id: int
    annotator_id: int
    groups: list[list[str]]
    ratings: dict[str, int] = field(default_factory=dict)
    flags: dict[str, list[str]] = field(default_factory=dict)
    none_acceptable: bool = False
    created_at: datetime | None = None


def rank_positions(groups: list[list[str]]) -> dict[str, int]:
    """Answer id → its group's position, best first from 0; tied answers share a position."""
    return {answer_id: position for position, group in enumerate(groups) for answer_id in group}


def _relation(ranks: dict[str, int], x: str, y: str) -> int:
    return (ranks[x] > ranks[y]) - (ranks[x] < ranks[y])


@dataclass
class PairCounts:
    """Answer pairs two annotators both ranked, and how they compare."""

    pairs: int = 0
    agree: int = 0
    tied_by_both: int = 0
    tied_by_one: int = 0
    ordered: int = 0  # pairs neither tied
    ordered_agree: int = 0

    def add(self, other: "PairCounts") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> dict:
        return {
            "agreement": self.agree / self.pairs if self.pairs else None,
            "ordered_agreement": self.ordered_agree / self.ordered if self.ordered else None,
            "pairs": self.pairs,
            "pairs_tied_by_both": self.tied_by_both,
            "pairs_tied_by_one": self.tied_by_one,
        }


def pair_counts(a: dict[str, int], b: dict[str, int]) -> PairCounts:
    """Compare two annotators' rank positions on the answers both ranked."""
    counts = PairCounts()
    for x, y in combinations(sorted(set(a) & set(b)), 2):
        rel_a, rel_b = _relation(a, x, y), _relation(b, x, y)
        counts.pairs += 1
        counts.agree += rel_a == rel_b
        if rel_a == 0 and rel_b == 0:
            counts.tied_by_both += 1
        elif rel_a == 0 or rel_b == 0:
            counts.tied_by_one += 1
        else:
            counts.ordered += 1
            counts.ordered_agree += rel_a == rel_b
    return counts


def by_task(labels: Iterable[RankingLabel]) -> dict[int, list[RankingLabel]]:
    """Labels grouped by task, only tasks two or more annotators labeled (one label each: the last)."""
    tasks: dict[int, dict[int, RankingLabel]] = defaultdict(dict)
    for label in labels:
        tasks[label.task_id][label.annotator_id] = label
    return {task: list(by_annotator.values()) for task, by_annotator in tasks.items() if len(by_annotator) >= 2}


def ratio_interval(numerators: list[int], denominators: list[int], *, seed: int = 0) -> list[float] | None:
    """95% bootstrap interval of sum(numerators) / sum(denominators), resampling whole units."""
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if len(den) < 2 or den.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, BOOTSTRAP_SAMPLES, 100):
        picks = rng.integers(0, len(den), size=(min(100, BOOTSTRAP_SAMPLES - start), len(den)))
        totals = den[picks].sum(axis=1)
        ratios.extend((num[picks].sum(axis=1)[totals > 0] / totals[totals > 0]).tolist())
    low, high = np.quantile(ratios, [0.025, 0.975])
    return [float(low), float(high)]


def pairwise_agreement(tasks: dict[int, list[RankingLabel]]) -> dict:
    """The project's pooled agreement with its interval, each annotator's, and the daily trend."""
    project, per_annotator = PairCounts(), defaultdict(PairCounts)
    shared_tasks: dict[int, set[int]] = defaultdict(set)
    per_day: dict[str, PairCounts] = defaultdict(PairCounts)
    task_agree, task_pairs = [], []
    for task_id, labels in sorted(tasks.items()):
        in_task = PairCounts()
        for first, second in combinations(labels, 2):
            counts = pair_counts(rank_positions(first.groups), rank_positions(second.groups))
            in_task.add(counts)
            for annotator in (first.annotator_id, second.annotator_id):
                per_annotator[annotator].add(counts)
                shared_tasks[annotator].add(task_id)
            stamps = [label.created_at for label in (first, second) if label.created_at is not None]
            if stamps:
                per_day[max(stamps).date().isoformat()].add(counts)
        project.add(in_task)
        task_agree.append(in_task.agree)
        task_pairs.append(in_task.pairs)
    return {
        **project.summary(),
        "agreement_ci": ratio_interval(task_agree, task_pairs),
        "tasks": len(tasks),
        "annotators": {
            annotator: {**counts.summary(), "tasks": len(shared_tasks[annotator])}
            for annotator, counts in sorted(per_annotator.items())
        },
        "by_day": [{"day": day, **counts.summary()} for day, counts in sorted(per_day.items())],
    }


def krippendorff_alpha(units: dict[object, dict[int, float]], level: str) -> float | None:
    """α over units (unit → annotator → value); None where α is undefined."""
    import krippendorff

    coded = {unit: values for unit, values in units.items() if len(values) >= 2}
    if not coded:
        return None
    annotators = sorted({annotator for values in coded.values() for annotator in values})
    row = {annotator: i for i, annotator in enumerate(annotators)}
    data = np.full((len(annotators), len(coded)), np.nan)
    for column, values in enumerate(coded.values()):
        for annotator, value in values.items():
            data[row[annotator], column] = value
    if len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # every label the same: no variation to agree on
    value = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    return None if np.isnan(value) else float(value)


def share_agreeing(units: dict[object, dict[int, float]]) -> float | None:
    """Share of annotator pairs, over units two or more labeled, who gave the same value."""
    same = total = 0
    for values in units.values():
        for a, b in combinations(values.values(), 2):
            same += a == b
            total += 1
    return same / total if total else None


def agreement_report(labels: Iterable[RankingLabel], *, flag_names: Iterable[str]) -> dict:
    """Everything the project page and the API show about agreement."""
    tasks = by_task(labels)
    rank_units, rating_units, flag_units, none_units = (defaultdict(dict) for _ in range(4))
    for task_id, task_labels in tasks.items():
        for label in task_labels:
            who = label.annotator_id
            none_units[task_id][who] = float(label.none_acceptable)
            for answer_id, position in rank_positions(label.groups).items():
                rank_units[(task_id, answer_id)][who] = position
                for name in flag_names:
                    flag_units[(task_id, answer_id, name)][who] = float(name in label.flags.get(answer_id, ()))
            for answer_id, rating in label.ratings.items():
                rating_units[(task_id, answer_id)][who] = rating
    return {
        "pairwise": pairwise_agreement(tasks),
        "alpha": {
            "rankings": krippendorff_alpha(rank_units, "ordinal"),
            "ratings": krippendorff_alpha(rating_units, "ordinal"),
            "flags": krippendorff_alpha(flag_units, "nominal"),
            "none_acceptable": krippendorff_alpha(none_units, "nominal"),
        },
        "flags_agreement": share_agreeing(flag_units),
        "none_acceptable_agreement": share_agreeing(none_units),
        "rated_answers": sum(len(values) >= 2 for values in rating_units.values()),
    }
