"""Training models: model versions and dataset snapshots."""

from training.snapshot_models import DatasetSnapshot  # noqa: F401 - registers the model with this app
