"""Supervised fine-tuning on demonstrations, with the loss on the assistant's tokens only.

Rows are conversations, `{"messages": [...]}`, as Yushan's `sft` snapshots write them. TRL's
`SFTTrainer` does the work; `assistant_only_loss` needs `{% generation %}` markers in the chat
template, so training goes through the training copy of the model's template
(training.ml.chat_template), which renders exactly the same text. The checkpoint is saved with the
model's ORIGINAL template, so generation is unchanged.

    python -m training.ml.sft --data sft.jsonl --model PATH --out DIR
"""

import argparse
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training.ml.common import (
    ProgressFn,
    StopFn,
    TrainingCancelled,
    load_records,
    never_stop,
    no_progress,
    seed_everything,
    trainer_callback,
)


@dataclass
class SFTStageConfig:
    epochs: int = 2
    learning_rate: float = 2e-5
    per_device_batch_size: int = 2
    gradient_accumulation: int = 1
    max_length: int = 1024  # tokens; longer conversations are truncated
    lora: bool = False
    lora_rank: int = 16
    seed: int = 0
    eval_fraction: float = 0.1  # held-out conversations for the eval loss (none when there are too few)


def conversations_from_records(records: list[dict]) -> list[dict]:
    """`{"messages": [...]}` rows with only role and content, each ending with the assistant's turn."""
    rows = []
    for number, record in enumerate(records, start=1):
        messages = record.get("messages")
        if not messages:
            raise ValueError(f"row {number}: expected a non-empty `messages` list")
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        if messages[-1]["role"] != "assistant":
            raise ValueError(f"row {number}: the last message must be the assistant's (the demonstration)")
        rows.append({"messages": messages})
    return rows


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A held-out share of the rows, at least one, and only when four or more rows remain to train on."""
    held = round(len(rows) * fraction) if fraction > 0 else 0
    if held == 0 and fraction > 0 and len(rows) >= 5:
        held = 1
    if len(rows) - held < 4:
        return rows, []
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[held:], shuffled[:held]


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
    from peft import LoraConfig

    # "all-linear" leaves out the output layer, which TRL's fused LM head could not train anyway.
    return LoraConfig(task_type="CAUSAL_LM", r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear")


def build_sft_trainer(train_rows, eval_rows, model_path: str, work_dir: str, config: SFTStageConfig, callbacks=()):
    """The configured SFTTrainer and the tokenizer's original chat template (restored before saving)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTConfig, SFTTrainer

    from training.ml.chat_template import UnsupportedTemplate, training_template

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    original_template = tokenizer.chat_template
    try:
        tokenizer.chat_template = training_template(original_template)
    except UnsupportedTemplate:
        pass  # TRL knows training copies of some templates; it says so clearly when it has none either
    args = SFTConfig(
        output_dir=work_dir,
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_batch_size,
        per_device_eval_batch_size=config.per_device_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation,
        max_length=config.max_length,
        assistant_only_loss=True,
        seed=config.seed,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        **device_arguments(),
    )
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="float32")
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=lora_config(config.lora_rank) if config.lora else None,
        callbacks=list(callbacks),
    )
    for quiet in (PrinterCallback, ProgressCallback):  # progress leaves through our callback only
        trainer.remove_callback(quiet)
    return trainer, original_template


def train_sft(
    records: list[dict],
    model_path: str,
    out_dir: str,
    config: SFTStageConfig | None = None,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> dict:
    """Fine-tune `model_path` on conversations; save the checkpoint to out_dir; return the metrics."""
    config = config or SFTStageConfig()
    seed_everything(config.seed)
    train_rows, eval_rows = split_rows(conversations_from_records(records), config.eval_fraction, config.seed)
    callback = trainer_callback(progress, should_stop, lambda logs: {"loss": logs["loss"]})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yushan-sft-") as work_dir:
        trainer, original_template = build_sft_trainer(train_rows, eval_rows, model_path, work_dir, config, [callback])
        if should_stop():
            raise TrainingCancelled("SFT was cancelled")
        trainer.train()
        if callback.cancelled:
            raise TrainingCancelled("SFT was cancelled")
        losses = [m["loss"] for m in callback.history]
        metrics = {
            "train_loss_first": losses[0] if losses else None,
            "train_loss_last": losses[-1] if losses else None,
            "steps": trainer.state.global_step,
            "train_conversations": len(train_rows),
            "held_out_conversations": len(eval_rows),
        }
        if eval_rows:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
        metrics["seconds"] = time.perf_counter() - started
        progress(trainer.state.global_step, trainer.state.max_steps, metrics)
        if trainer.accelerator.is_main_process:
            trainer.processing_class.chat_template = original_template
            save_stage_checkpoint(
                trainer.model, trainer.processing_class, Path(out_dir), "sft", model_path, asdict(config), metrics
            )
    return metrics


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


def main() -> None:
    parser = argparse.ArgumentParser(description="Supervised fine-tuning on conversations ({messages} JSONL/Parquet).")
    parser.add_argument("--data", required=True, help="rows {messages: [...]} ending with the assistant's answer")
    parser.add_argument("--model", required=True, help="the causal LM to start from")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=SFTStageConfig.epochs)
    parser.add_argument("--lr", type=float, default=SFTStageConfig.learning_rate)
    parser.add_argument("--batch-size", type=int, default=SFTStageConfig.per_device_batch_size)
    parser.add_argument("--gradient-accumulation", type=int, default=SFTStageConfig.gradient_accumulation)
    parser.add_argument("--max-length", type=int, default=SFTStageConfig.max_length)
    parser.add_argument("--eval-fraction", type=float, default=SFTStageConfig.eval_fraction)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--lora-rank", type=int, default=SFTStageConfig.lora_rank)
    parser.add_argument("--seed", type=int, default=SFTStageConfig.seed)
    args = parser.parse_args()
    config = SFTStageConfig(
        epochs=args.epochs,
        learning_rate=args.lr,
        per_device_batch_size=args.batch_size,
        gradient_accumulation=args.gradient_accumulation,
        max_length=args.max_length,
        lora=args.lora,
        lora_rank=args.lora_rank,
        seed=args.seed,
        eval_fraction=args.eval_fraction,
    )

    def report(step, total, metrics):
        if "loss" in metrics and (step % 10 == 0 or step == total):
            print(f"step {step}/{total} loss {metrics['loss']:.4f}", flush=True)

    metrics = train_sft(load_records(args.data), args.model, args.out, config, progress=report)
    summary = f"train loss {metrics['train_loss_first']:.4f} -> {metrics['train_loss_last']:.4f}"
    if "eval_loss" in metrics:
        summary += f", held-out loss {metrics['eval_loss']:.4f}"
    print(f"{summary} in {metrics['steps']} steps ({metrics['seconds']:.0f} s)")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
