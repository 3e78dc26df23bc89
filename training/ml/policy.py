"""Policy optimization against the reward model, with a KL penalty towards the SFT model.

The SFT model is both the starting policy and the reference the KL is measured against.

- "rloo" (the command line's default; a round defaults to "iterative_dpo", one iteration): TRL's RLOOTrainer. Per step, `prompts_per_step` prompts each get
  `generations_per_prompt` sampled answers; every answer's reward (from our reward model) minus
  kl_beta × its summed log-ratio to the reference is compared with the mean of its siblings.
- "grpo": TRL's GRPOTrainer, the same sampling with group-normalised advantages and the KL as a
  per-token loss term (weight kl_beta).
- "dpo": TRL's DPOTrainer directly on the preferences (offline, no sampling, no reward model);
  kl_beta is DPO's β. `pairs` chooses which of a ranking's ordered pairs it trains on: every one,
  or only its best answer against its worst (one pair per ranking, the widest margin, as RLHFlow
  pairs its samples); `steps` caps the optimizer steps, so the stage fits a round's time, and
  when it leaves pairs out they are the oldest (the newest rankings judge the latest policy).
- "iterative_dpo": on-policy DPO (training.ml.iterative_dpo): each of `iterations` samples answers
  from the current policy, pairs each prompt's best against its worst under the reward model, and
  runs DPO on those pairs.

Reward-model scores are shaped first (training.ml.reward_shaping): standardised on the SFT model's
own samples, and with any positive dependence on answer length removed. A KL budget (nats per
answer) stops the stage early once the policy has moved that far from the SFT model.

Under torchrun (N processes) every algorithm runs data-parallel: a step's `prompts_per_step` are
shared out among the processes (a multiple of N), each samples and scores its share, the shaping
statistics are the whole step's (gathered from every process), TRL all-reduces the gradients,
the KL budget's verdict is process 0's for all, and process 0 alone reports and saves. What the
shaping used is in the metrics (`reward_shaping`, with each process's own under `by_process`).

Sampling (`sampler`): rloo, grpo and iterative_dpo sample with transformers, or with vLLM where it
is installed on a CUDA machine (`auto`, the default; `vllm` insists, and is refused as a setting
where vLLM cannot run). RLOO and GRPO use TRL's colocated vLLM; iterative DPO an engine of its own
whose weights are the policy's at each iteration (training.ml.iterative_dpo).

Progress reports, per step: reward (mean shaped reward of the sampled answers), kl (KL to the
reference in nats per answer: TRL's per-token mean times the mean answer length, the same
definition as the evaluation's), mean_length (answer tokens — growth is the usual sign of reward
hacking) and loss; for DPO: loss, reward_margin and accuracy.

    python -m training.ml.policy --algorithm rloo --data prompts.jsonl --model SFT --reward RM --out DIR
"""

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from training.ml import distributed, options
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
from training.ml.kl_budget import dpo_kl_callback, kl_budget_callback
from training.ml.modeling import (
    common_arguments,
    dpo_loss,
    dpo_metrics,
    lora_config,
    quiet_trainer,
    save_stage_checkpoint,
)
from training.ml.policy_config import (
    PolicyConfig,
    data_parallel_check,
    newest_within_steps,
    policy_sampler,
    preferences_from_records,
)
from training.ml.reward_data import answer_text, prompts_from_records
from training.ml.reward_shaping import RewardShaper


class RewardModelFunction:
    """A TRL reward function: our reward model's score for each (prompt, completion)."""

    __name__ = "reward_model"  # the name TRL logs it under (rewards/reward_model/mean)

    def __init__(self, path: str, shaper: RewardShaper | None = None):
        from training.ml.reward import RewardScorer

        self.scorer = RewardScorer(path)
        self.shaper = shaper or RewardShaper(normalize=False, length_control=False)

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        texts = [answer_text(c) for c in completions]
        scores = self.scorer.score(list(prompts), texts)
        lengths = [len(self.scorer.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        return self.shaper(scores, lengths)


# --- training ------------------------------------------------------------------------------------


def _rl_metrics(logs: dict) -> dict:
    kl, length = logs.get("kl"), logs.get("completions/mean_length")
    return {
        "reward": logs.get("reward"),
        "kl": kl * length if kl is not None and length is not None else None,  # nats per answer
        "mean_length": length,
        "loss": logs.get("loss"),
    }


def _dpo_trainer(records, sft_model_path: str, tokenizer, work_dir: str, config: PolicyConfig, peft, callbacks):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    rows = newest_within_steps(preferences_from_records(records, config.pairs), config)
    if not rows:
        raise ValueError("DPO needs preferences (chosen/rejected rows, or rankings that are not all ties)")
    per_epoch = -(-len(rows) // config.prompts_per_step)
    args = DPOConfig(
        **common_arguments(work_dir, config),
        num_train_epochs=config.epochs,
        max_steps=min(config.steps, per_epoch * config.epochs),
        beta=config.kl_beta,
        # prompts_per_step is a step's whole batch: under torchrun each process takes an equal share.
        per_device_train_batch_size=config.prompts_per_step // distributed.world_size(),
        max_length=config.max_length,
        **dpo_loss(config),
    )
    # With no ref_model given, TRL loads a frozen copy of the starting (SFT) model as the reference.
    return DPOTrainer(
        model=sft_model_path,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=list(callbacks),
    )


def _sampling_trainer(
    records,
    sft_model_path: str,
    reward_model_path,
    tokenizer,
    work_dir: str,
    config: PolicyConfig,
    peft,
    callbacks,
    shaper: RewardShaper | None = None,
):
    from datasets import Dataset

    rows = prompts_from_records(records)
    if not rows:
        raise ValueError(f"{config.algorithm} needs at least one prompt")
    if reward_model_path is None:
        raise ValueError(f"{config.algorithm} needs a reward model")
    # A step's prompts are shared out among the processes (all of them alone); TRL keeps each
    # prompt's answers in one process and gathers the rewards to compare them.
    processes = distributed.world_size()
    per_process = min(config.prompts_per_step, len(rows)) // processes
    if per_process == 0:
        raise ValueError(f"{config.algorithm} under {processes} processes needs at least {processes} prompts")
    shaper = shaper or RewardShaper(normalize=config.reward_normalize, length_control=config.length_control)
    arguments = {
        **common_arguments(work_dir, config),
        "max_steps": config.steps,
        "per_device_train_batch_size": per_process * config.generations_per_prompt,
        "gradient_accumulation_steps": 1,
        "num_generations": config.generations_per_prompt,
        "max_completion_length": config.max_completion_length,
        "temperature": config.temperature,
        "beta": config.kl_beta,
    }
    if policy_sampler(config) == "vllm":
        # TRL's own vLLM engine in each process, on its GPU, its weights refreshed from the policy.
        arguments.update(use_vllm=True, vllm_mode="colocate")
    if config.algorithm == "rloo":
        from trl import RLOOConfig as Config
        from trl import RLOOTrainer as Trainer
    else:
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    # The reference is the model the policy starts from (the SFT model): with beta > 0 TRL loads a frozen copy.
    return Trainer(
        model=sft_model_path,
        reward_funcs=RewardModelFunction(reward_model_path, shaper),
        args=Config(**arguments),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=list(callbacks),
    )


def build_policy_trainer(
    records,
    sft_model_path: str,
    reward_model_path: str | None,
    work_dir: str,
    config: PolicyConfig,
    callbacks=(),
    *,
    shaper: RewardShaper | None = None,
):
    """The configured TRL trainer for config.algorithm; `shaper` shapes the sampling algorithms'
    rewards (a fresh one from the config when not given)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sft_model_path)
    peft = lora_config(config.lora_rank) if config.lora else None
    if config.algorithm == "dpo":
        trainer = _dpo_trainer(records, sft_model_path, tokenizer, work_dir, config, peft, callbacks)
    else:
        trainer = _sampling_trainer(
            records, sft_model_path, reward_model_path, tokenizer, work_dir, config, peft, callbacks, shaper
        )
    return quiet_trainer(trainer)


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
    if config.algorithm != "dpo":
        policy_sampler(config)  # a refused sampler fails the stage here, before anything loads
    data_parallel_check(config)
    seed_everything(config.seed)
    metrics_from_logs = dpo_metrics if config.algorithm == "dpo" else _rl_metrics
    callback = trainer_callback(progress, should_stop, metrics_from_logs)
    budget = kl_budget_callback(config.kl_budget, metrics_from_logs)
    started = time.perf_counter()
    if config.algorithm == "iterative_dpo":
        return _optimize_iteratively(records, sft_model_path, reward_model_path, out_dir, config, progress, should_stop)
    with tempfile.TemporaryDirectory(prefix="yushan-policy-") as work_dir:
        if config.algorithm == "dpo":  # TRL reports no KL for DPO: the budget measures it (dpo_kl_callback)
            from transformers import AutoTokenizer

            budget = dpo_kl_callback(records, AutoTokenizer.from_pretrained(sft_model_path), config)
        shaper = RewardShaper(normalize=config.reward_normalize, length_control=config.length_control)
        trainer = build_policy_trainer(
            records, sft_model_path, reward_model_path, work_dir, config, [callback, budget], shaper=shaper
        )
        budget.trainer = trainer
        if should_stop():
            raise TrainingCancelled("policy optimization was cancelled")
        trainer.train()
        if callback.cancelled:
            raise TrainingCancelled("policy optimization was cancelled")
        metrics = summarize(callback.history, config.algorithm)
        metrics.update(steps=trainer.state.global_step, seconds=time.perf_counter() - started)
        if budget.stopped_at is not None:
            metrics["stopped_early"] = (
                f"KL passed the budget of {config.kl_budget:g} nats per answer at step {budget.stopped_at}"
            )
        if getattr(budget, "checks", None):
            metrics["kl_checks"] = budget.checks
        if config.algorithm != "dpo":
            metrics["reward_shaping"] = shaper.record()  # every process takes part: it gathers
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


def _optimize_iteratively(records, sft_model_path, reward_model_path, out_dir, config, progress, should_stop) -> dict:
    from training.ml.iterative_dpo import iterative_dpo

    if reward_model_path is None:
        raise ValueError("iterative_dpo needs a reward model")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="yushan-policy-") as work_dir:
        model, tokenizer, history, cancelled, note, shaping = iterative_dpo(
            records,
            sft_model_path,
            reward_model_path,
            work_dir,
            config,
            progress,
            should_stop,
            sampler=policy_sampler(config),
        )
    if cancelled:
        raise TrainingCancelled("policy optimization was cancelled")
    metrics = summarize(history, config.algorithm)
    metrics.update(steps=len(history), seconds=time.perf_counter() - started, reward_shaping=shaping)
    if note:
        metrics["stopped_early"] = note
    progress(len(history), config.iterations, metrics)
    if distributed.is_main():
        save_stage_checkpoint(model, tokenizer, Path(out_dir), "policy", sft_model_path, asdict(config), metrics)
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


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Optimize a policy against a reward model (RLOO, GRPO) or on preferences (DPO)."
    )
    parser.add_argument(
        "--data",
        required=True,
        help="prompt, sft, ranking or preference rows (JSONL/Parquet); DPO needs preferences or rankings",
    )
    parser.add_argument("--model", required=True, help="the SFT model: starting policy and KL reference")
    parser.add_argument("--reward", help="the reward model (rloo, grpo)")
    parser.add_argument("--out", required=True)
    options.add_arguments(parser, PolicyConfig)
    return parser


def main() -> None:
    parser = argument_parser()
    args = parser.parse_args()
    if args.algorithm != "dpo" and not args.reward:
        parser.error(f"--reward is required for {args.algorithm}")
    config = options.from_arguments(PolicyConfig, args, parser=parser)
    if args.algorithm != "dpo":
        try:
            policy_sampler(config)
        except options.SettingsError as error:
            parser.error(f"argument --sampler: {error.errors['sampler']}")
    # Under torchrun or accelerate launch, join the process group before anything samples: iterative
    # DPO shares out its prompts from the start (TRL's trainers would join it only when built).
    distributed.init_from_environment()

    def report(step, total, metrics):
        if "loss" in metrics and distributed.is_main():
            shown = " ".join(f"{key} {value:.4g}" for key, value in metrics.items())
            print(f"step {step}/{total} {shown}", flush=True)

    metrics = optimize_policy(load_records(args.data), args.model, args.reward, args.out, config, progress=report)
    if distributed.is_main():
        shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items() if isinstance(value, float))
        print(f"{args.algorithm}: {shown}")
        print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
