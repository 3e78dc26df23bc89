"""Supervised fine-tuning on demonstrations, with the loss on the assistant's tokens only.

Rows are conversations, `{"messages": [...]}`, as Yushan's `sft` snapshots write them. TRL's
`SFTTrainer` does the work; `assistant_only_loss` needs `{% generation %}` markers in the chat
template, so training goes through the training copy of the model's template
(training.ml.chat_template), which renders exactly the same text. The checkpoint is saved with the
model's ORIGINAL template, so generation is unchanged.

Early stopping: with held-out demonstrations (eval_fraction), the validation loss is measured
after every epoch; when it rises above the best so far, training stops and the weights of the
best epoch are put back, so a small set of demonstrations cannot be over-fitted into a model that
has forgotten how to answer anything else.

    python -m training.ml.sft --data sft.jsonl --model PATH --out DIR
"""

import argparse
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training.ml import options
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
from training.ml.modeling import device_arguments, lora_config, quiet_trainer, save_stage_checkpoint
from training.ml.options import SEED_RANGE, setting


@dataclass
class SFTStageConfig:
    epochs: int = setting(2, "passes over the conversations", range=(1, 100))
    learning_rate: float = setting(2e-5, "peak learning rate", range=(0, 1), min_exclusive=True, aliases=("--lr",))
    per_device_batch_size: int = setting(2, "conversations per batch", range=(1, 4096), aliases=("--batch-size",))
    gradient_accumulation: int = setting(1, "batches per optimizer step", range=(1, 1024))
    max_length: int = setting(1024, "tokens kept per conversation; longer ones are truncated", range=(1, 32768))
    lora: bool = setting(False, "train LoRA adapters (merged into the saved model) instead of every weight")
    lora_rank: int = setting(16, "LoRA rank", range=(1, 1024))
    seed: int = setting(0, range=SEED_RANGE)
    eval_fraction: float = setting(
        0.1,
        "share of conversations held out for the eval loss (none when there are too few)",
        range=(0, 1),
        max_exclusive=True,
    )


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


def build_sft_trainer(train_rows, eval_rows, model_path: str, work_dir: str, config: SFTStageConfig, callbacks=()):
    """The configured SFTTrainer and the tokenizer's original chat template (restored before saving)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
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
        eval_strategy="epoch" if eval_rows else "no",
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
    return quiet_trainer(trainer), original_template


def early_stop_callback():
    """Stops after the epoch whose validation loss rose above the best, and restores the best
    epoch's weights (kept on the CPU). `.best_loss`, `.best_epoch`, `.stopped_at_epoch`."""
    from transformers import TrainerCallback

    class EarlyStop(TrainerCallback):
        best_loss = best_epoch = stopped_at_epoch = None
        best_state = None

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is None or model is None:
                return
            epoch = round(state.epoch or 0)
            if self.best_loss is None or loss < self.best_loss:
                self.best_loss, self.best_epoch = loss, epoch
                if state.epoch < args.num_train_epochs:  # a later epoch may need undoing
                    self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                return
            self.stopped_at_epoch = epoch
            control.should_training_stop = True
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
                self.best_state = None

    return EarlyStop()


def keep_best_epoch(trainer, early) -> None:
    """After training: the final weights' validation loss against the best epoch's. The trainer
    does not always evaluate after its last epoch, so this does; worse final weights give way
    to the best epoch's."""
    if early.stopped_at_epoch is not None:
        return  # the callback already stopped and put the best epoch's weights back
    final = trainer.evaluate()["eval_loss"]
    epoch = round(trainer.state.epoch or 0)
    if early.best_loss is None or final <= early.best_loss:
        early.best_loss, early.best_epoch, early.best_state = final, epoch, None
        return
    if early.best_state is not None:
        trainer.model.load_state_dict(early.best_state)
        early.best_state = None
        early.stopped_at_epoch = epoch


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
    early = early_stop_callback()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yushan-sft-") as work_dir:
        trainer, original_template = build_sft_trainer(
            train_rows, eval_rows, model_path, work_dir, config, [callback, early]
        )
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
            keep_best_epoch(trainer, early)
            metrics["eval_loss"] = early.best_loss
            metrics["best_epoch"] = early.best_epoch
            if early.stopped_at_epoch is not None:
                metrics["stopped_early"] = (
                    f"validation loss rose in epoch {early.stopped_at_epoch}; kept epoch {early.best_epoch}"
                )
        metrics["seconds"] = time.perf_counter() - started
        progress(trainer.state.global_step, trainer.state.max_steps, metrics)
        if trainer.accelerator.is_main_process:
            trainer.processing_class.chat_template = original_template
            save_stage_checkpoint(
                trainer.model, trainer.processing_class, Path(out_dir), "sft", model_path, asdict(config), metrics
            )
    return metrics


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Supervised fine-tuning on conversations ({messages} JSONL/Parquet).")
    parser.add_argument("--data", required=True, help="rows {messages: [...]} ending with the assistant's answer")
    parser.add_argument("--model", required=True, help="the causal LM to start from")
    parser.add_argument("--out", required=True)
    options.add_arguments(parser, SFTStageConfig)
    return parser


def main() -> None:
    parser = argument_parser()
    args = parser.parse_args()
    config = options.from_arguments(SFTStageConfig, args, parser=parser)

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
