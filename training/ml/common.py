"""What every training stage shares: progress and cancel callbacks, seeding, reading the
formats the research exports write (JSONL or Parquet), batches of similar length."""

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


def trainer_callback(progress: ProgressFn, should_stop: StopFn, metrics_from_logs: Callable[[dict], dict]):
    """A transformers TrainerCallback that turns a TRL trainer's logs into progress(step, total, metrics)
    and stops training at the end of the step after should_stop() said so.

    The trainer cannot raise from inside a callback without leaving its state half-updated, so the
    callback asks it to stop; the stage checks `callback.cancelled` after `train()` returns and
    raises TrainingCancelled. `callback.history` keeps every logged step's metrics.
    """
    from transformers import TrainerCallback

    class StageCallback(TrainerCallback):
        def __init__(self):
            self.cancelled = False
            self.history: list[dict] = []

        def on_step_end(self, args, state, control, **kwargs):
            if should_stop():
                self.cancelled = True
                control.should_training_stop = True

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs or any(key.startswith("eval_") for key in logs):
                return  # the end-of-training summary and evaluations are reported by the stage itself
            metrics = {key: value for key, value in metrics_from_logs(logs).items() if value is not None}
            self.history.append(metrics)
            progress(state.global_step, state.max_steps, metrics)

    return StageCallback()


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (shortest first), so little of a padded batch is padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
