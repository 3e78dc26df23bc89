"""Inter-annotator agreement from rankings: for every task ranked by two or more annotators, the
share of answer pairs that two annotators order the same way (pairs either of them tied are left
out). An annotator's score is their agreement with everyone else, pooled over all such pairs."""

from collections import defaultdict
from collections.abc import Iterable
from itertools import combinations

from training.datasets.exports.shapes import ranks_from_groups


def _pair_agreement(a: dict[str, int], b: dict[str, int]) -> tuple[int, int]:
    agree = total = 0
    for x, y in combinations(sorted(set(a) & set(b)), 2):
        if a[x] == a[y] or b[x] == b[y]:
            continue
        total += 1
        agree += (a[x] < a[y]) == (b[x] < b[y])
    return agree, total


def annotator_agreement(rankings: Iterable[tuple[int, int, list[list[str]]]]) -> dict[int, float]:
    """rankings: (task_id, annotator_id, groups), sorted by task_id. Returns annotator_id → score."""
    agree: dict[int, int] = defaultdict(int)
    total: dict[int, int] = defaultdict(int)

    def score_task(entries: list[tuple[int, dict[str, int]]]) -> None:
        for (user_a, ranks_a), (user_b, ranks_b) in combinations(entries, 2):
            same, pairs = _pair_agreement(ranks_a, ranks_b)
            for user in (user_a, user_b):
                agree[user] += same
                total[user] += pairs

    current_task, entries = None, []
    for task_id, annotator_id, groups in rankings:
        if task_id != current_task:
            score_task(entries)
            current_task, entries = task_id, []
        entries.append((annotator_id, ranks_from_groups(groups)))
    score_task(entries)
    return {user: agree[user] / total[user] for user in total if total[user]}
