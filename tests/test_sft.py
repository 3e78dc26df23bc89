"""SFT on demonstrations: the loss covers the assistant's tokens only, training lowers it, progress and
cancellation go through the callbacks, and the checkpoint keeps the model's own chat template."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.ml.chat_template import SMOLLM2_TEMPLATE
from training.ml.common import TrainingCancelled
from training.ml.sft import SFTStageConfig, build_sft_trainer, conversations_from_records, train_sft

MULTI_TURN = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "台灣第一高峰是那一座？"},
    {"role": "assistant", "content": "玉山。"},
    {"role": "user", "content": "How tall is it?"},
    {"role": "assistant", "content": "3,952 metres."},
]


def repetitive_demonstrations(count: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Greet me, please ({i % 3})."},
                {"role": "assistant", "content": "Hello there! Hello there! Hello there!"},
            ],
            "id": i,
        }
        for i in range(count)
    ]


def test_labels_cover_the_assistant_turns_and_their_end_of_turn_only(tiny_model_path, tmp_path):
    rows = conversations_from_records([{"messages": MULTI_TURN}] * 4)
    trainer, original = build_sft_trainer(rows, [], str(tiny_model_path), str(tmp_path), SFTStageConfig())
    example = trainer.train_dataset[0]
    tokenizer = trainer.processing_class
    learned = [token for token, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100]
    assert tokenizer.decode(learned) == "玉山。<|im_end|>3,952 metres.<|im_end|>"
    # The trainer sees exactly the text the model's own template renders: only the loss mask differs.
    assert tokenizer.decode(example["input_ids"]) == tokenizer.apply_chat_template(
        MULTI_TURN, chat_template=original, tokenize=False
    )
    assert original == SMOLLM2_TEMPLATE


def test_training_lowers_the_loss_reports_progress_and_saves(tiny_model_path, tmp_path):
    seen = []
    config = SFTStageConfig(epochs=3, learning_rate=3e-3, per_device_batch_size=2, eval_fraction=0.25)
    metrics = train_sft(
        repetitive_demonstrations(8),
        str(tiny_model_path),
        str(tmp_path / "sft"),
        config,
        progress=lambda step, total, m: seen.append((step, total, m)),
    )
    assert metrics["steps"] == 3 * 3  # 6 training rows (2 held out), batches of 2, 3 epochs
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert metrics["eval_loss"] < metrics["train_loss_first"]
    per_step = [(step, total) for step, total, m in seen if "loss" in m]
    assert per_step == [(step, 9) for step in range(1, 10)]
    assert seen[-1][2]["eval_loss"] == metrics["eval_loss"]

    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    original = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight)
    assert AutoTokenizer.from_pretrained(tmp_path / "sft").chat_template == SMOLLM2_TEMPLATE  # generation unchanged
    stage = json.loads((tmp_path / "sft" / "yushan_stage.json").read_text())
    assert stage["stage"] == "sft" and stage["config"]["epochs"] == 3 and stage["metrics"]["steps"] == 9


def test_cancelling_raises_and_saves_nothing(tiny_model_path, tmp_path):
    steps = []
    with pytest.raises(TrainingCancelled):
        train_sft(
            repetitive_demonstrations(8),
            str(tiny_model_path),
            str(tmp_path / "sft"),
            SFTStageConfig(epochs=3, eval_fraction=0),
            progress=lambda step, total, m: steps.append(step),
            should_stop=lambda: len(steps) >= 1,
        )
    assert steps == [1, 2]  # of 12: should_stop() is polled at the end of every step
    assert not (tmp_path / "sft").exists()


def test_command_line_trains_with_lora_and_saves_a_merged_model(tiny_model_path, tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in repetitive_demonstrations(6)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.ml.sft",
            "--data",
            str(data),
            "--model",
            str(tiny_model_path),
            "--out",
            str(tmp_path / "sft"),
            "--epochs",
            "1",
            "--lr",
            "1e-2",
            "--lora",
            "--lora-rank",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "saved to" in result.stdout and "train loss" in result.stdout
    assert not (tmp_path / "sft" / "adapter_config.json").exists()  # LoRA merged into an ordinary checkpoint
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    original = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert not torch.equal(
        trained.model.layers[0].self_attn.q_proj.weight, original.model.layers[0].self_attn.q_proj.weight
    )
