"""The playground (chat with any version) and the arena (blind battles, votes as K=2 rankings,
a Bradley–Terry leaderboard)."""
