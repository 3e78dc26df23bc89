"""Arena leaderboard: a Bradley–Terry fit of pairwise votes, with bootstrap confidence intervals.

P(i beats j) = 1 / (1 + exp(-(s_i - s_j))). A tie counts half a win for each side (as does
"both bad": neither answer was preferred). A weak Gaussian prior on the scores keeps them finite
when one version won every vote. Scores are shown on the familiar Elo scale (400 points per
factor of 10 in odds, centred on 1000), as Chatbot Arena does.
"""

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400 / math.log(10)
ELO_CENTRE = 1000.0
OUTCOMES = ("a", "b", "tie")


@dataclass(frozen=True)
class Vote:
    a: Hashable
    b: Hashable
    outcome: str  # "a": a won, "b": b won, "tie"


@dataclass
class Standing:
    player: Hashable
    rating: float
    ci_low: float
    ci_high: float
    votes: int
    wins: int
    losses: int
    ties: int


def fit_scores(
    votes: Sequence[Vote], players: Sequence[Hashable], *, prior: float = 0.1, iterations: int = 50
) -> np.ndarray:
    """Maximum a posteriori Bradley–Terry scores (natural-log odds scale, mean zero), by Newton's method."""
    index = {player: i for i, player in enumerate(players)}
    n = len(players)
    wins = np.zeros((n, n))  # wins[i, j]: how often i beat j, ties counting half
    for vote in votes:
        if vote.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {vote.outcome!r}")
        i, j = index[vote.a], index[vote.b]
        if vote.outcome == "a":
            wins[i, j] += 1
        elif vote.outcome == "b":
            wins[j, i] += 1
        else:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
    games = wins + wins.T
    scores = np.zeros(n)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(scores[:, None] - scores[None, :])))  # p[i, j] = P(i beats j)
        gradient = (wins - games * p).sum(axis=1) - prior * scores
        curvature = games * p * (1 - p)
        hessian = curvature - np.diag(curvature.sum(axis=1)) - prior * np.eye(n)
        step = np.linalg.solve(hessian, gradient)
        scores = scores - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return scores - scores.mean()


def leaderboard(
    votes: Sequence[Vote], *, rounds: int = 200, confidence: float = 0.95, seed: int = 0, prior: float = 0.1
) -> list[Standing]:
    """Players ranked by rating, with bootstrap intervals (votes resampled with replacement)."""
    players = sorted({v.a for v in votes} | {v.b for v in votes}, key=str)
    if not players:
        return []
    ratings = _elo(fit_scores(votes, players, prior=prior))
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, len(players)))
    for r in range(rounds):
        picked = rng.integers(0, len(votes), size=len(votes))
        samples[r] = _elo(fit_scores([votes[i] for i in picked], players, prior=prior))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    standings = [
        Standing(player=p, rating=float(ratings[i]), ci_low=float(low[i]), ci_high=float(high[i]), **_record(votes, p))
        for i, p in enumerate(players)
    ]
    return sorted(standings, key=lambda s: s.rating, reverse=True)


def win_probability(rating_a: float, rating_b: float) -> float:
    return 1 / (1 + 10 ** ((rating_b - rating_a) / 400))


def _elo(scores: np.ndarray) -> np.ndarray:
    return ELO_CENTRE + ELO_SCALE * scores


def _record(votes: Sequence[Vote], player) -> dict:
    wins = losses = ties = 0
    for vote in votes:
        if player not in (vote.a, vote.b):
            continue
        if vote.outcome == "tie":
            ties += 1
        elif (vote.outcome == "a") == (vote.a == player):
            wins += 1
        else:
            losses += 1
    return {"votes": wins + losses + ties, "wins": wins, "losses": losses, "ties": ties}
