"""K-wise reward model (one packed sequence per ranking) against expanded pairs with TRL's RewardTrainer.

    .venv/bin/python benchmarks/reward_kwise.py --tiny                 # a quick smoke run
    .venv/bin/python benchmarks/reward_kwise.py --threads 1         # SmolLM2 from var/models, ~10 min

The same rankings are trained twice from the same model, with the same epochs, learning rate,
schedule (linear, 5 % warm-up), gradient clipping and data per optimizer step:

- K-wise: training.ml.reward.train_reward_model, packed (each ranking's prompt encoded once, its K
  answers behind it with a block mask); `--rankings-per-step` rankings per step.
- Pairs: every ordered pair the ranking implies becomes a {prompt, chosen, rejected} row for TRL's
  RewardTrainer; a step takes the pairs of the same number of rankings (in micro-batches of at
  most `--max-pairs-per-batch` pairs, with gradient accumulation), so both do the same number of
  optimizer steps over the same pairs. Gradient checkpointing is off in both.

Time per epoch covers the training loop only (tokenization and model loading excluded). Both wall
time and CPU time (this process, all its threads) are printed; the speed-up and the verdict use CPU
time, which a busy shared machine disturbs far less than wall time (on a 2-core machine shared with
other jobs, wall-time ratios for the same work swung between 1.2× and 2.5×). On a machine of its
own the two agree; `--threads 1` gives the steadiest figures. Held-out accuracy: every held-out
answer is scored alone (prompt + answer, the way RL and evaluation score it) by each trained model,
over every ordered pair of the held-out rankings.

Scenarios (synthetic, learnable, generated with a fixed seed): each question has answers graded by
construction (correct + polite + detailed > … > vague > wrong > wrong and rude):
  k4       K = 4, short prompts              target ≥ 2.5× faster
  k9       K = 9, short prompts              target ≥ 6×
  k2-long  K = 2, multi-turn prompts of a few hundred tokens                     target ≥ 1.5×
  hh       K = 2, shaped like Anthropic HH: 0–3 earlier turns, prompts of median ~155 tokens
           (p90 ~280), answers of 26–44 tokens                                  target ≥ 1.8×
Accuracy target: K-wise no worse than pairs. Memory target: K-wise peak memory no more than
TRL's. Each training runs in a fresh child process, so its peak resident memory (ru_maxrss, the
model, optimizer state and activations; the same imports in both) is its own. Exit status 1 if a
speed or memory target is missed.

Measured with SmolLM2-135M-Instruct, --threads 1, on a shared 2-core CPU (CPU s/epoch, K-wise vs
pairs; held-out accuracy K-wise / pairs): k4 (16 rankings) 18.6 vs 98.1 s, 5.3×, 0.771 / 0.750;
k9 (6 rankings) 12.9 vs 228.1 s, 17.7×, 0.747 / 0.740 (before the fused optimizer, which only
helps K-wise further); k2-long (8 rankings, 444-token prompts) 33.6 vs 56.8 s, 1.69×, 1.0 / 1.0;
hh (32 rankings, prompts of mean 157 tokens, answers of mean 33; December 2, the other core busy
with a small job) 106.3 vs 223.2 s, 2.10×, 1.0 / 1.0, peak memory 3,727 vs 4,518 MiB (0.82× TRL's).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.reward_kwise_data import make_rankings  # noqa: E402
from training.ml.reward import (  # noqa: E402
    Ranking,
    RewardConfig,
    RewardScorer,
    encode,
    load_reward_model,
    ordered_pairs,
    train_reward_model,
)
from training.ml.reward_data import preference_pairs  # noqa: E402

TARGETS = {"k4": 2.5, "k9": 6.0, "k2-long": 1.5, "hh": 1.8}
DEFAULT_RANKINGS = {"k4": 16, "k9": 6, "k2-long": 8, "hh": 32}

# --- the two ways to train ----------------------------------------------------------------------------


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def per_epoch(marks: dict, epochs: int) -> tuple[float, float]:
    """(wall, CPU) seconds per epoch between the start and end marks."""
    return tuple((end - start) / epochs for start, end in zip(marks["start"], marks["end"], strict=True))


def in_child(function, *arguments) -> tuple[float, float, float]:
    """function(*arguments)'s (wall, CPU) seconds per epoch, run in a fresh process, and that
    process's peak resident memory in MiB."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measured, function, *arguments).result()


def _measured(function, *arguments) -> tuple[float, float, float]:
    import resource

    import torch

    args = arguments[-1]
    if args.threads:
        torch.set_num_threads(args.threads)
    wall, cpu = function(*arguments)
    return wall, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_kwise(train: list[Ranking], model: str, out: Path, args) -> tuple[float, float]:
    """(wall, CPU) seconds per epoch of the training loop, from its first step's start to its last step's end."""
    marks = {}

    def progress(step, total, metrics):
        if step == 0:
            marks["start"] = clock()
        elif step == total and "loss" in metrics:
            marks["end"] = clock()

    config = RewardConfig(
        epochs=args.epochs,
        learning_rate=args.lr,
        rankings_per_step=args.rankings_per_step,
        eval_fraction=0,
        packed=True,
        seed=args.seed,
    )
    train_reward_model(train, model, str(out), config, held_out=[], progress=progress)
    return per_epoch(marks, args.epochs)


def micro_batch(pairs_per_step: int, cap: int) -> int:
    return max(d for d in range(1, min(pairs_per_step, cap) + 1) if pairs_per_step % d == 0)


def train_pairs(train: list[Ranking], model_path: str, out: Path, args) -> tuple[float, float]:
    """TRL's RewardTrainer on every ordered pair; (wall, CPU) seconds per epoch of its training loop."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from training.ml.modeling import device_arguments

    rows = preference_pairs(train)  # the prompts are conversations, so the answers are messages
    pairs_per_step = len(rows) // len(train) * args.rankings_per_step
    micro = micro_batch(pairs_per_step, args.max_pairs_per_batch)
    torch.manual_seed(args.seed)  # the same initial score head as the K-wise run
    model, tokenizer = load_reward_model(model_path, device="cpu", dtype="float32")
    config = TRLRewardConfig(
        output_dir=str(out / "work"),
        num_train_epochs=args.epochs,
        learning_rate=args.lr,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=pairs_per_step // micro,
        lr_scheduler_type="linear",
        warmup_steps=0.05,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_length=None,
        seed=args.seed,
        logging_steps=10**6,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        **{**device_arguments(), "activation_checkpointing": False},  # as in the K-wise loop
    )
    marks = {}

    class Timer(TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks["start"] = clock()

        def on_train_end(self, *a, **k):
            marks["end"] = clock()

    trainer = RewardTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Timer()]
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return per_epoch(marks, args.epochs)


def held_out_accuracy(model_path: Path, rankings: list[Ranking]) -> float:
    """Pairwise accuracy with every answer scored alone (prompt + answer), as RL and evaluation score it."""
    scorer = RewardScorer(str(model_path))
    correct = total = 0
    for ranking in rankings:
        rewards = scorer.score([ranking.prompt] * len(ranking.completions), ranking.completions)
        for better, worse in ordered_pairs(ranking.ranks):
            correct += rewards[better] > rewards[worse]
            total += 1
    return correct / total


# --- running -----------------------------------------------------------------------------------


def default_model() -> str | None:
    """The converted SmolLM2 checkpoint under var/models, if the registry has written one."""
    found = sorted((ROOT / "var" / "models").glob("**/config.json"))
    preferred = [p for p in found if "smollm2" in str(p).lower()] or found
    return str(preferred[0].parent) if preferred else None


def mean_tokens(rankings: list[Ranking], tokenizer) -> tuple[float, float]:
    encoded = [encode(tokenizer, r, RewardConfig()) for r in rankings]
    prompt = sum(len(e.prompt_ids) for e in encoded) / len(encoded)
    answer = sum(len(a) for e in encoded for a in e.answer_ids) / sum(len(e.answer_ids) for e in encoded)
    return prompt, answer


def run_scenario(scenario: str, model: str, work: Path, args) -> dict:
    from transformers import AutoTokenizer

    count = args.rankings or DEFAULT_RANKINGS[scenario]
    rankings = make_rankings(scenario, count + args.held_out, args.seed)
    train, held = rankings[:count], rankings[count:]
    prompt_tokens, answer_tokens = mean_tokens(rankings, AutoTokenizer.from_pretrained(model))
    k = len(train[0].completions)
    print(
        f"\n{scenario}: K = {k}, {len(train)} training rankings ({len(train) * len(ordered_pairs(train[0].ranks))} "
        f"pairs), {len(held)} held out; mean prompt {prompt_tokens:.0f} tokens, mean answer {answer_tokens:.0f}",
        flush=True,
    )
    kwise_wall, kwise_cpu, kwise_mib = in_child(train_kwise, train, model, work / f"{scenario}-kwise", args)
    kwise_accuracy = held_out_accuracy(work / f"{scenario}-kwise", held)
    print(
        f"  K-wise (packed): {kwise_wall:8.1f} s/epoch wall, {kwise_cpu:8.1f} s CPU, peak {kwise_mib:6.0f} MiB   "
        f"held-out accuracy {kwise_accuracy:.3f}",
        flush=True,
    )
    pairs_wall, pairs_cpu, pairs_mib = in_child(train_pairs, train, model, work / f"{scenario}-pairs", args)
    pairs_accuracy = held_out_accuracy(work / f"{scenario}-pairs", held)
    print(
        f"  TRL pairs:       {pairs_wall:8.1f} s/epoch wall, {pairs_cpu:8.1f} s CPU, peak {pairs_mib:6.0f} MiB   "
        f"held-out accuracy {pairs_accuracy:.3f}",
        flush=True,
    )
    ratio = pairs_cpu / kwise_cpu
    print(
        f"  speed-up {ratio:.2f}x CPU time, {pairs_wall / kwise_wall:.2f}x wall (target {TARGETS[scenario]}x); "
        f"memory {kwise_mib / pairs_mib:.2f}x TRL's",
        flush=True,
    )
    return {
        "scenario": scenario,
        "k": k,
        "kwise_wall": kwise_wall,
        "pairs_wall": pairs_wall,
        "kwise_cpu": kwise_cpu,
        "pairs_cpu": pairs_cpu,
        "ratio": ratio,
        "kwise_mib": kwise_mib,
        "pairs_mib": pairs_mib,
        "kwise_acc": kwise_accuracy,
        "pairs_acc": pairs_accuracy,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a causal LM checkpoint (default: the SmolLM2 checkpoint under var/models)")
    parser.add_argument("--tiny", action="store_true", help="build a tiny random model: a smoke run of the plumbing")
    parser.add_argument("--scenarios", default="k4,k9,k2-long,hh")
    parser.add_argument(
        "--rankings",
        type=int,
        help="training rankings per scenario (default: "
        + ", ".join(f"{s} {n}" for s, n in DEFAULT_RANKINGS.items())
        + ", ~10 min with SmolLM2 on 2 cores)",
    )
    parser.add_argument("--held-out", type=int, default=16, help="held-out rankings per scenario (other questions)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--rankings-per-step", type=int, default=2)
    parser.add_argument("--max-pairs-per-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(scenarios) - TARGETS.keys()
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(TARGETS)}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="yushan-rm-bench-") as tmp:
        work = Path(tmp)
        if args.tiny:
            from training.ml.tiny import build_tiny_model

            model = str(build_tiny_model(work / "tiny"))
        else:
            model = args.model or default_model()
            if model is None:
                parser.error("no checkpoint under var/models: pass --model PATH (or --tiny for a smoke run)")
        print(
            f"model {model}; {args.epochs} epoch(s), lr {args.lr}, {args.rankings_per_step} rankings per step; "
            f"torch threads {torch.get_num_threads()}"
        )
        results = [run_scenario(s, model, work, args) for s in scenarios]

    print("\ns/epoch: wall (CPU)")
    print(
        "scenario   K   K-wise s/epoch     pairs s/epoch       speed-up, CPU (target)   accuracy K-wise / pairs"
        "   peak MiB K-wise / pairs"
    )
    missed = False
    for r in results:
        ok = r["ratio"] >= TARGETS[r["scenario"]]
        light = r["kwise_mib"] <= r["pairs_mib"]
        missed |= not (ok and light)
        print(
            f"{r['scenario']:<9} {r['k']:>2}   {r['kwise_wall']:>6.1f} ({r['kwise_cpu']:>6.1f})   "
            f"{r['pairs_wall']:>7.1f} ({r['pairs_cpu']:>7.1f})   {r['ratio']:>6.2f}x ({TARGETS[r['scenario']]}x)"
            f"{'' if ok else ' MISSED'}       {r['kwise_acc']:.3f} / {r['pairs_acc']:.3f}"
            f"          {r['kwise_mib']:.0f} / {r['pairs_mib']:.0f}{'' if light else ' MISSED'}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
