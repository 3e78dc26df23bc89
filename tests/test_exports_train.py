"""The proof researchers care about: each exported kind trains one step with the matching TRL
trainer on a tiny model, straight from the file, with no reshaping."""

import pytest
import torch
from datasets import load_dataset

from tests.factories import label_everything
from training.datasets.services import snapshot_build, snapshot_create, snapshot_file
from training.ml.tiny import build_tiny_model

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def snapshot_store(settings, tmp_path):
    settings.SNAPSHOT_STORE = tmp_path / "snapshots"


def exported(project, kind: str, fmt: str):
    snapshot = snapshot_create(project=project, kind=kind, format=fmt)
    snapshot_build(snapshot_id=snapshot.pk)
    snapshot.refresh_from_db()
    path, _ = snapshot_file(snapshot=snapshot, name=snapshot.data_file_name)
    return load_dataset("parquet" if fmt == "parquet" else "json", data_files=str(path), split="train")


def common_args(tmp_path) -> dict:
    return {
        "output_dir": str(tmp_path / "out"),
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "use_cpu": True,
        "bf16": False,
        "report_to": [],
        "save_strategy": "no",
        "learning_rate": 1e-2,
        "logging_steps": 1,
    }


def weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_sft_snapshot_trains_with_sft_trainer(project, annotator, annotator2, tiny_model, tmp_path):
    from trl import SFTConfig, SFTTrainer

    label_everything(project, annotator, annotator2)
    trainer = SFTTrainer(
        model=str(tiny_model),
        train_dataset=exported(project, "sft", "jsonl"),
        args=SFTConfig(max_length=128, **common_args(tmp_path)),
    )
    before = weights(trainer.model)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, weights(trainer.model))


def test_preference_snapshot_trains_with_reward_trainer(project, annotator, annotator2, tiny_model, tmp_path):
    from trl import RewardConfig, RewardTrainer

    label_everything(project, annotator, annotator2)
    trainer = RewardTrainer(
        model=str(tiny_model),
        train_dataset=exported(project, "preference", "parquet"),
        args=RewardConfig(max_length=128, **common_args(tmp_path)),
    )
    before = weights(trainer.model)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, weights(trainer.model))


def test_preference_snapshot_trains_with_dpo_trainer(project, annotator, annotator2, tiny_model, tmp_path):
    from trl import DPOConfig, DPOTrainer

    label_everything(project, annotator, annotator2)
    trainer = DPOTrainer(
        model=str(tiny_model),
        train_dataset=exported(project, "preference", "jsonl"),
        args=DPOConfig(max_length=128, **common_args(tmp_path)),
    )
    before = weights(trainer.model)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, weights(trainer.model))
