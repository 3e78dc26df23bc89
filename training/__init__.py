"""The training app (label `training`): one Django app, one package per concept.

- registry/: model versions, deploy and rollback, generation jobs
- arena/: the playground, battles, the leaderboard
- datasets/: snapshots, their exports, API and page
- rounds/: a round's settings, state machine, stage runner, API and pages
- ml/: the ML core, which never imports Django
"""
