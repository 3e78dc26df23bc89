"""Policy optimization against the reward model, with a KL penalty towards the SFT model.

The SFT model is both the starting policy and the reference the KL is measured against.

- "rloo" (default): TRL's RLOOTrainer. Per step, `prompts_per_step` prompts each get
  `generations_per_prompt` sampled answers; every answer's reward (from our reward model) minus
  kl_beta × its summed log-ratio to the reference is compared with the mean of its siblings.
- "grpo": TRL's GRPOTrainer, the same sampling with group-normalised advantages and the KL as a
  per-token loss term (weight kl_beta).
- "dpo": TRL's DPOTrainer directly on the preferences (offline, no sampling, no reward model);
  kl_beta is DPO's β.

Progress reports, per step: reward (mean reward-model score of the sampled answers), kl (mean
per-token log-ratio to the reference), mean_length (answer tokens — growth is the usual sign of
reward hacking) and loss; for DPO: loss, reward_margin and accuracy.

    python -m training.ml.policy --algorithm rloo --data prompts.jsonl --model SFT --reward RM --out DIR
"""

import argparse
import json
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
from training.ml.reward import _answer_text, _implicit_prompt, ordered_pairs, rankings_from_records
from training.ml.sft import device_arguments, lora_config, save_stage_checkpoint

ALGORITHMS = ("rloo", "grpo", "dpo")


@dataclass
class PolicyConfig:
    algorithm: str = "rloo"
    learning_rate: float = 1e-6
    steps: int = 100  # optimizer steps for rloo/grpo (one batch of fresh samples each)
    epochs: int = 1  # passes over the preferences for dpo
    prompts_per_step: int = 4  # rloo/grpo: prompts per step; dpo: preference pairs per step
    generations_per_prompt: int = 4  # answers sampled per prompt (the group the baseline comes from), >= 2
    max_completion_length: int = 128  # rloo/grpo: tokens sampled per answer at most
    max_length: int = 1024  # dpo: tokens of prompt + answer kept (from the start)
    kl_beta: float = 0.05  # weight of the KL penalty towards the SFT model (DPO's β)
    temperature: float = 1.0
    lora: bool = False
    lora_rank: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, not {self.algorithm!r}")
        if self.generations_per_prompt < 2:
            raise ValueError("generations_per_prompt must be at least 2: the baseline comes from the other answers")
        if self.kl_beta < 0:
            raise ValueError("kl_beta must be >= 0")


# --- data ----------------------------------------------------------------------------------------


def _prompt_of(record: dict, number: int):
    if record.get("prompt") is not None:
        return record["prompt"]
    if record.get("messages"):
        messages = record["messages"]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
        if last == 0:
            raise ValueError(f"row {number}: the conversation has no prompt before the assistant's answer")
        return messages[:last]
    if "chosen" in record and "rejected" in record:
        return _implicit_prompt(record["chosen"], record["rejected"])[0]
    raise ValueError(f"row {number}: expected prompt, messages, or chosen+rejected")


def prompts_from_records(records: list[dict]) -> list[dict]:
    """`{"prompt": ...}` rows from any snapshot rows: prompt rows, `sft` conversations (everything
    before the last assistant turn), ranking and preference rows. Repeated prompts are kept once."""
    seen, rows = set(), []
    for number, record in enumerate(records, start=1):
        prompt = _prompt_of(record, number)
        if isinstance(prompt, list):
            prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
        key = json.dumps(prompt, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            rows.append({"prompt": prompt})
    return rows


def preferences_from_records(records: list[dict]) -> list[dict]:
    """TRL preference rows {prompt, chosen, rejected}: every ordered pair a ranking implies (ties make
    none); conversational prompts get conversational answers."""
    rows = []
    for ranking in rankings_from_records(records):
        conversational = isinstance(ranking.prompt, list)
        for better, worse in ordered_pairs(ranking.ranks):
            chosen, rejected = ranking.completions[better], ranking.completions[worse]
            if conversational:
                chosen = [{"role": "assistant", "content": chosen}]
                rejected = [{"role": "assistant", "content": rejected}]
            rows.append({"prompt": ranking.prompt, "chosen": chosen, "rejected": rejected})
    return rows


class RewardModelFunction:
    """A TRL reward function: our reward model's score for each (prompt, completion)."""

    __name__ = "reward_model"  # the name TRL logs it under (rewards/reward_model/mean)

    def __init__(self, path: str):
        from training.ml.reward import RewardScorer

        self.scorer = RewardScorer(path)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return self.scorer.score(list(prompts), [_answer_text(c) for c in completions])


# --- training ------------------------------------------------------------------------------------


def _rl_metrics(logs: dict) -> dict:
    return {
        "reward": logs.get("reward"),
        "kl": logs.get("kl"),
        "mean_length": logs.get("completions/mean_length"),
        "loss": logs.get("loss"),
    }


def _dpo_metrics(logs: dict) -> dict:
    return {
        "loss": logs.get("loss"),
        "reward_margin": logs.get("rewards/margins"),
        "accuracy": logs.get("rewards/accuracies"),
    }


def _common_arguments(work_dir: str, config: PolicyConfig) -> dict:
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


def build_policy_trainer(
    records, sft_model_path: str, reward_model_path: str | None, work_dir: str, config: PolicyConfig, callbacks=()
):
    """The configured TRL trainer for config.algorithm."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    tokenizer = AutoTokenizer.from_pretrained(sft_model_path)
    peft = lora_config(config.lora_rank) if config.lora else None
    if config.algorithm == "dpo":
        from trl import DPOConfig, DPOTrainer

        rows = preferences_from_records(records)
        if not rows:
            raise ValueError("DPO needs preferences (chosen/rejected rows, or rankings that are not all ties)")
        args = DPOConfig(
            **_common_arguments(work_dir, config),
            num_train_epochs=config.epochs,
            beta=config.kl_beta,
            per_device_train_batch_size=config.prompts_per_step,
            max_length=config.max_length,
        )
        # With no ref_model given, TRL loads a frozen copy of the starting (SFT) model as the reference.
        trainer = DPOTrainer(
            model=sft_model_path,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft,
            callbacks=list(callbacks),
        )
    else:
        rows = prompts_from_records(records)
        if not rows:
            raise ValueError(f"{config.algorithm} needs at least one prompt")
        if reward_model_path is None:
            raise ValueError(f"{config.algorithm} needs a reward model")
        per_step = min(config.prompts_per_step, len(rows))
        arguments = {
            **_common_arguments(work_dir, config),
            "max_steps": config.steps,
            "per_device_train_batch_size": per_step * config.generations_per_prompt,
            "gradient_accumulation_steps": 1,
            "num_generations": config.generations_per_prompt,
            "max_completion_length": config.max_completion_length,
            "temperature": config.temperature,
            "beta": config.kl_beta,
        }
        if config.algorithm == "rloo":
            from trl import RLOOConfig as Config
            from trl import RLOOTrainer as Trainer
        else:
            from trl import GRPOConfig as Config
            from trl import GRPOTrainer as Trainer
        # The reference is the model the policy starts from (the SFT model): with beta > 0 TRL loads a frozen copy.
        trainer = Trainer(
            model=sft_model_path,
            reward_funcs=RewardModelFunction(reward_model_path),
            args=Config(**arguments),
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=peft,
            callbacks=list(callbacks),
        )
    for quiet in (PrinterCallback, ProgressCallback):  # progress leaves through our callback only
        trainer.remove_callback(quiet)
    return trainer


def optimize_policy(
    records: list[dict],
    sft_model_path: str,
    reward_model_path: str | None,
    out_dir: str,
    config: PolicyConfig | None = None,
    *,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> dict:
    """Improve the SFT policy against the reward model (or on preferences, for DPO); save it to out_dir."""
    config = config or PolicyConfig()
    seed_everything(config.seed)
    callback = trainer_callback(progress, should_stop, _dpo_metrics if config.algorithm == "dpo" else _rl_metrics)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yushan-policy-") as work_dir:
        trainer = build_policy_trainer(records, sft_model_path, reward_model_path, work_dir, config, [callback])
        if should_stop():
            raise TrainingCancelled("policy optimization was cancelled")
        trainer.train()
        if callback.cancelled:
            raise TrainingCancelled("policy optimization was cancelled")
        metrics = summarize(callback.history, config.algorithm)
        metrics.update(steps=trainer.state.global_step, seconds=time.perf_counter() - started)
        progress(trainer.state.global_step, trainer.state.max_steps, metrics)
        if trainer.accelerator.is_main_process:
            save_stage_checkpoint(
                trainer.model,
                trainer.processing_class,
                Path(out_dir),
                "policy",
                sft_model_path,
                asdict(config),
                metrics,
            )
    return metrics


def summarize(history: list[dict], algorithm: str) -> dict:
    """First and last value of each per-step metric (e.g. reward_first, reward_last)."""
    keys = ("loss", "reward_margin", "accuracy") if algorithm == "dpo" else ("reward", "kl", "mean_length", "loss")
    summary = {"algorithm": algorithm}
    for key in keys:
        values = [m[key] for m in history if m.get(key) is not None]
        if values:
            summary[f"{key}_first"], summary[f"{key}_last"] = values[0], values[-1]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Optimize a policy against a reward model (RLOO, GRPO) or on preferences (DPO)."
    )
    parser.add_argument("--algorithm", choices=ALGORITHMS, default=PolicyConfig.algorithm)
    parser.add_argument(
        "--data",
        required=True,
        help="prompt, sft, ranking or preference rows (JSONL/Parquet); DPO needs preferences or rankings",
    )
    parser.add_argument("--model", required=True, help="the SFT model: starting policy and KL reference")
    parser.add_argument("--reward", help="the reward model (rloo, grpo)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=PolicyConfig.steps)
    parser.add_argument("--epochs", type=int, default=PolicyConfig.epochs)
    parser.add_argument("--lr", type=float, default=PolicyConfig.learning_rate)
    parser.add_argument("--prompts-per-step", type=int, default=PolicyConfig.prompts_per_step)
    parser.add_argument("--generations", type=int, default=PolicyConfig.generations_per_prompt)
    parser.add_argument("--max-completion-length", type=int, default=PolicyConfig.max_completion_length)
    parser.add_argument("--kl-beta", type=float, default=PolicyConfig.kl_beta)
    parser.add_argument("--temperature", type=float, default=PolicyConfig.temperature)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--seed", type=int, default=PolicyConfig.seed)
    args = parser.parse_args()
    if args.algorithm != "dpo" and not args.reward:
        parser.error(f"--reward is required for {args.algorithm}")
    config = PolicyConfig(
        algorithm=args.algorithm,
        learning_rate=args.lr,
        steps=args.steps,
        epochs=args.epochs,
        prompts_per_step=args.prompts_per_step,
        generations_per_prompt=args.generations,
        max_completion_length=args.max_completion_length,
        kl_beta=args.kl_beta,
        temperature=args.temperature,
        lora=args.lora,
        seed=args.seed,
    )

    def report(step, total, metrics):
        if "loss" in metrics:
            shown = " ".join(f"{key} {value:.4g}" for key, value in metrics.items())
            print(f"step {step}/{total} {shown}", flush=True)

    metrics = optimize_policy(load_records(args.data), args.model, args.reward, args.out, config, progress=report)
    shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items() if isinstance(value, float))
    print(f"{args.algorithm}: {shown}")
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
