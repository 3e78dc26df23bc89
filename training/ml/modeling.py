"""What the TRL-based stages (SFT, policy optimization) share: device settings for a trainer, the
LoRA configuration of a causal LM, quieting a trainer's own console output, and saving a stage's
checkpoint with its `yushan_stage.json`, and the settings and logs of the DPO-based trainers."""

import json
from pathlib import Path


def device_arguments() -> dict:
    """Trainer settings for the device training.ml.generation.pick_device picks.

    CPU: float32, and no activation checkpointing (memory is plentiful for the models one trains on
    a CPU, and recomputing activations costs a fifth more time). CUDA: bf16 mixed precision where
    supported, else fp16, with activation checkpointing (TRL's default) to fit longer sequences.
    """
    from training.ml.generation import pick_device

    device, dtype = pick_device()
    if device == "cpu":
        return {"use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False}
    return {"bf16": dtype == "bfloat16", "fp16": dtype == "float16", "activation_checkpointing": True}


def lora_config(rank: int):
    """LoRA adapters on every linear layer of a causal LM, alpha = 2 × rank."""
    from peft import LoraConfig

    # "all-linear" leaves out the output layer, which TRL's fused LM head could not train anyway.
    return LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")


def quiet_trainer(trainer):
    """Remove the trainer's console printing and progress bar: progress leaves through our callback only."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    return trainer


def save_stage_checkpoint(
    model, tokenizer, out_dir: Path, stage: str, parent: str, config: dict, metrics: dict
) -> Path:
    """Save a trained causal LM (LoRA merged) atomically, with `yushan_stage.json` (stage, config, metrics)."""
    from training.ml.checkpoints import save_checkpoint

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    save_checkpoint(model, tokenizer, out_dir, {"format": stage, "from": str(parent)})
    (out_dir / "yushan_stage.json").write_text(
        json.dumps({"stage": stage, "config": config, "metrics": metrics}, indent=2), encoding="utf-8"
    )
    return out_dir


def dpo_metrics(logs: dict) -> dict:
    """What a DPO step reports: loss, and the implicit-reward margin and accuracy on its batch."""
    return {
        "loss": logs.get("loss"),
        "reward_margin": logs.get("rewards/margins"),
        "accuracy": logs.get("rewards/accuracies"),
    }


def common_arguments(work_dir: str, config) -> dict:
    """TRL trainer settings every policy trainer shares (config: a training.ml.policy_config.PolicyConfig)."""
    return {
        "output_dir": work_dir,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "model_init_kwargs": {"dtype": "float32"},
        **device_arguments(),
    }


def dpo_loss(config) -> dict:
    """DPO's loss, plus the preferred answers' negative log-likelihood (per token) at weight
    `chosen_nll` when it is set: RPO (Pang et al., 2024), TRL's "sft" loss term. Without it DPO
    only pulls the preferred and the other answers apart, which it can do by the cheapest feature
    that tells them apart (length, when the worse answers are the cut-off ones). `ld_alpha` below 1
    weighs the tokens past the shorter answer's length by it (LD-DPO, Liu et al., 2024; TRL's
    ld_alpha), so a long answer's extra tokens count less in the pair's margin."""
    loss = {}
    if config.chosen_nll:
        loss.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, config.chosen_nll])
    if config.ld_alpha < 1:
        loss["ld_alpha"] = config.ld_alpha
    return loss
