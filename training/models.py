"""The training app's models, one module per concept; importing them here registers them with
the app (label `training`, the same tables as always).

- training.registry.models: model versions, the deployed-policy pointer, generation jobs
- training.arena.models: arena battles and playground turns
- training.datasets.models: dataset snapshots
- training.rounds.models: rounds, their stages and metrics
"""

from training.arena.models import ArenaBattle, PlaygroundTurn
from training.datasets.models import DatasetSnapshot
from training.registry.models import DeployedPolicy, Deployment, GeneratedTask, GenerationJob, ModelVersion
from training.rounds.models import Round, RoundMetric, RoundStage

__all__ = [
    "ArenaBattle",
    "DatasetSnapshot",
    "DeployedPolicy",
    "Deployment",
    "GeneratedTask",
    "GenerationJob",
    "ModelVersion",
    "PlaygroundTurn",
    "Round",
    "RoundMetric",
    "RoundStage",
]
