"""What every training stage shares: progress and cancel callbacks, seeding, reading the
formats the research exports write (JSONL or Parquet)."""

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

# progress(step, total_steps, metrics): called after every optimizer step (and at evaluation).
ProgressFn = Callable[[int, int, dict], None]
# should_stop(): polled between steps; True stops the stage at the next step.
StopFn = Callable[[], bool]


class TrainingCancelled(Exception):
    """Raised inside a stage when should_stop() said so; nothing was saved."""


def no_progress(step: int, total: int, metrics: dict) -> None:
    return None


def never_stop() -> bool:
    return False


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_records(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSONL or Parquet file (the formats of Yushan's snapshots)."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
