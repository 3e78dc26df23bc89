"""Annotator reliability and the consensus ranking of each task, weighted by it. No Django.

Every ranking is read as the answer pairs it decides: for answers a and b (a's id sorting first),
"a" (a ranked above b), "b", or "tie". Each pair of a task is one item, and the annotators who
ranked the task each gave it one of those labels. A one-coin Dawid–Skene model (crowd-kit's
`OneCoinDawidSkene`, fitted by EM) learns one skill per annotator, the probability that their
label on a pair is the true one, and the posterior of every label of every pair, each vote
counted by its annotator's skill: a careful annotator outvotes two careless ones, and an
annotator who is worse than chance is read in reverse.

From the posteriors, per task:
- the consensus ranking: answers ordered by their expected wins, Σ over the others of
  P(beats it) + ½ P(tie) (a Borda count over the posteriors); equal scores tie;
- a weight per consensus pair (better, worse): P(better ≻ worse) − P(worse ≻ better), the margin
  of belief, from 0 (a coin flip: the pair teaches nothing) to 1 (certain). Pairs of weight 0
  are left out.

A task one annotator ranked gets its pairs' posteriors from that annotator's skill alone; with no
overlap anywhere, skills cannot be told apart and every weight is near 1 (the plain rankings).
"""

import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

from labeling.quality.agreement import RankingLabel, rank_positions

TIE = "tie"
EM_ITERATIONS = 100


@dataclass(frozen=True)
class TaskConsensus:
    ranks: dict[str, int]  # answer id → consensus rank, 1 best, ties share
    pairs: list[tuple[str, str, float]]  # (better, worse, weight), weight > 0
    annotators: int


@dataclass(frozen=True)
class Consensus:
    skills: dict[int, float]  # annotator → estimated probability of a true label on a pair
    labels: dict[int, int]  # annotator → pair labels they gave
    tasks: dict[int, TaskConsensus]
    # task → (a, b) → posterior of "a", "b" and "tie"
    beliefs: dict[int, dict[tuple[str, str], dict[str, float]]] = None

    def annotator_pairs(self, label: RankingLabel) -> list[tuple[str, str, float]]:
        """One annotator's own ranking as weighted pairs (better, worse, weight): each pair they
        ordered, weighted by how far the consensus believes them, P(their order) − P(the reverse);
        pairs the consensus believes reversed get no weight."""
        beliefs = (self.beliefs or {}).get(label.task_id, {})
        pairs = []
        for (a, b), value in pair_labels(label):
            p = beliefs.get((a, b))
            if value == TIE or p is None:
                continue
            better, worse = (a, b) if value == "a" else (b, a)
            weight = (p["a"] - p["b"]) if value == "a" else (p["b"] - p["a"])
            if weight > 0:
                pairs.append((better, worse, weight))
        return pairs


def adjudicated_pairs(label: RankingLabel, final: list[list[str]]) -> list[tuple[str, str, float]]:
    """One annotator's ranking of an adjudicated task as pairs (better, worse, 1.0): the pairs they
    ordered as the adjudicator's final ranking does; the others, and ties, get no weight."""
    positions = rank_positions(final)
    return [
        (better, worse, 1.0)
        for (a, b), value in pair_labels(label)
        if value != TIE
        for better, worse in [(a, b) if value == "a" else (b, a)]
        if better in positions and worse in positions and positions[better] < positions[worse]
    ]


def pair_labels(label: RankingLabel) -> Iterable[tuple[tuple[str, str], str]]:
    """((a, b), "a" | "b" | "tie") for every pair of answers the ranking orders, a < b by id."""
    positions = rank_positions(label.groups)
    for a, b in combinations(sorted(positions), 2):
        if positions[a] == positions[b]:
            yield (a, b), TIE
        else:
            yield (a, b), "a" if positions[a] < positions[b] else "b"


def consensus_fit(labels: Iterable[RankingLabel]) -> Consensus:
    import pandas as pd
    from crowdkit.aggregation import OneCoinDawidSkene

    rows, annotators_of, answers_of = [], defaultdict(set), defaultdict(set)
    for label in labels:
        annotators_of[label.task_id].add(label.annotator_id)
        for (a, b), value in pair_labels(label):
            rows.append(((label.task_id, a, b), label.annotator_id, value))
            answers_of[label.task_id].update((a, b))
    if not rows:
        return Consensus({}, {}, {}, {})
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    counts = frame["worker"].value_counts()
    with warnings.catch_warnings():  # crowd-kit 1.4 still passes pandas 3 keywords it deprecates
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        model = OneCoinDawidSkene(n_iter=EM_ITERATIONS).fit(frame)
    probabilities = model.probas_
    beliefs: dict[int, dict[tuple[str, str], dict[str, float]]] = defaultdict(dict)
    for item, row in probabilities.iterrows():
        task_id, a, b = item
        beliefs[task_id][(a, b)] = {value: float(row.get(value, 0.0)) for value in ("a", "b", TIE)}
    tasks = {
        task_id: task_consensus(answers_of[task_id], pairs, len(annotators_of[task_id]))
        for task_id, pairs in beliefs.items()
    }
    return Consensus(
        skills={int(worker): float(skill) for worker, skill in model.skills_.items()},
        labels={int(worker): int(n) for worker, n in counts.items()},
        tasks=tasks,
        beliefs=dict(beliefs),
    )


def task_consensus(answers: set[str], beliefs: dict[tuple[str, str], dict[str, float]], annotators: int):
    """The consensus ranking and weighted pairs of one task from its pairs' posteriors."""
    wins = dict.fromkeys(answers, 0.0)
    beats: dict[tuple[str, str], float] = {}
    for (a, b), p in beliefs.items():
        wins[a] += p["a"] + p[TIE] / 2
        wins[b] += p["b"] + p[TIE] / 2
        beats[(a, b)], beats[(b, a)] = p["a"], p["b"]
    ordered = sorted(answers, key=lambda answer: (-wins[answer], answer))
    ranks = {answer: 1 + sum(wins[other] > wins[answer] + 1e-9 for other in answers) for answer in ordered}
    pairs = []
    for better, worse in combinations(ordered, 2):
        if ranks[better] == ranks[worse] or (better, worse) not in beats:
            continue
        weight = beats[(better, worse)] - beats[(worse, better)]
        if weight > 0:
            pairs.append((better, worse, weight))
    return TaskConsensus(ranks=ranks, pairs=pairs, annotators=annotators)


def adjudicated_consensus(groups: list[list[str]], annotators: int) -> TaskConsensus:
    """An adjudicated task (labeling.quality.adjudication): the adjudicator's final ranking in
    place of the annotators' consensus, every pair it orders at weight 1 (certain). Ranks as in
    task_consensus: 1 + the answers ranked above, so tied answers share a rank."""
    ranks, above = {}, 0
    for group in groups:
        ranks.update(dict.fromkeys(group, above + 1))
        above += len(group)
    pairs = [
        (better, worse, 1.0)
        for index, higher in enumerate(groups)
        for lower in groups[index + 1 :]
        for better in higher
        for worse in lower
    ]
    return TaskConsensus(ranks=ranks, pairs=pairs, annotators=annotators)
