"""Reads: a user's battle, the votes as Bradley–Terry outcomes, the leaderboard."""

from django.db.models import Count, Q

from labeling.models import Project
from training.arena.models import ArenaBattle
from training.ml import arena
from training.registry.models import ModelVersion
from training.registry.selectors import deployed_policy


def arena_battle_for(*, battle_id: int, user) -> ArenaBattle | None:
    return (
        ArenaBattle.objects.select_related("prompt", "version_a", "version_b", "project")
        .filter(pk=battle_id, created_by=user)
        .first()
    )


def arena_votes(*, project: Project) -> list[arena.Vote]:
    """Voted battles as Bradley–Terry votes: 'both bad' counts as a tie (neither was preferred)."""
    outcome = {
        ArenaBattle.Vote.A: "a",
        ArenaBattle.Vote.B: "b",
        ArenaBattle.Vote.TIE: "tie",
        ArenaBattle.Vote.BOTH_BAD: "tie",
    }
    rows = (
        ArenaBattle.objects.filter(project=project).exclude(vote="").values_list("version_a_id", "version_b_id", "vote")
    )
    return [arena.Vote(a, b, outcome[vote]) for a, b, vote in rows]


def arena_leaderboard(*, project: Project, rounds: int = 200) -> list[dict]:
    standings = arena.leaderboard(arena_votes(project=project), rounds=rounds)
    versions = ModelVersion.objects.in_bulk([s.player for s in standings])
    deployed = deployed_policy(project=project)
    return [
        {
            "rank": rank,
            "version": versions[s.player],
            "standing": s,
            "deployed": deployed is not None and deployed.pk == s.player,
        }
        for rank, s in enumerate(standings, start=1)
    ]


def arena_counts(*, project: Project) -> dict:
    return ArenaBattle.objects.filter(project=project).aggregate(
        battles=Count("pk"), votes=Count("pk", filter=~Q(vote=""))
    )
