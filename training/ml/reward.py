"""A K-wise reward model, trained the InstructGPT way, with each prompt encoded once.

One ranking of K answers is one training example. The loss averages −log σ(r_better − r_worse)
over every ordered pair the ranking implies; tied answers make no pair. Pairwise preferences are
rankings with K = 2.

Beyond InstructGPT, the K answers of a ranking share their prompt, so we pack them into one
sequence `prompt + answer₁ + … + answer_K` with a block attention mask (each answer sees the
prompt and itself, never another answer) and positions that restart after the prompt. The
prompt's hidden states are computed once and gradients flow through them from all K answers.
Each answer's reward is exactly what the model gives `prompt + answer` scored alone
(`rewards_separate`), which the tests check.

    python -m training.ml.reward --data prefs.jsonl --model PATH --out DIR
"""

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training.ml import distributed, options
from training.ml.common import (
    ProgressFn,
    StopFn,
    TrainingCancelled,
    length_sorted_batches,
    load_records,
    never_stop,
    no_progress,
    seed_everything,
    torch_dtype,
)
from training.ml.options import SEED_RANGE, setting

# The data helpers live in training.ml.reward_data; these names stay importable from here too.
from training.ml.reward_data import (
    Encoded,
    Ranking,
    encode,
    ordered_pairs,
    packed_batch,
    rankings_from_records,
    separate_batch,
    split_held_out,
)


@dataclass
class RewardConfig:
    epochs: int = setting(1, "passes over the rankings", range=(1, 100))
    learning_rate: float = setting(1e-5, "peak learning rate", range=(0, 1), min_exclusive=True, aliases=("--lr",))
    rankings_per_step: int = setting(4, "rankings per optimizer step", range=(1, 4096))
    max_prompt_tokens: int = setting(1024, "prompt tokens kept (the end of the prompt)", range=(1, 32768))
    max_answer_tokens: int = setting(256, "answer tokens kept (the start of each answer)", range=(1, 32768))
    eval_fraction: float = setting(0.1, "share of prompts held out", range=(0, 1), max_exclusive=True)
    weight_decay: float = setting(0.0, "AdamW weight decay", range=(0, 10))
    warmup_ratio: float = setting(0.05, "share of the steps spent warming up", range=(0, 1))
    packed: bool = setting(True, "encode each ranking's prompt once (--no-packed: each answer separately, slower)")
    group_by_length: bool = setting(
        True, "batch rankings of similar length together, so little of a batch is padding (order stays random)"
    )
    gradient_checkpointing: bool = setting(
        False, "recompute activations in the backward pass: less memory, about 20% more time"
    )
    lora: bool = setting(False, "train LoRA adapters instead of every weight")
    lora_rank: int = setting(16, "LoRA rank", range=(1, 1024))
    seed: int = setting(0, range=SEED_RANGE)


# --- forward passes ----------------------------------------------------------------------------


def _score(model, hidden):
    return model.score(hidden).squeeze(-1).float()


def _pad_id(model) -> int:
    return model.config.pad_token_id if model.config.pad_token_id is not None else 0


def rewards_packed(model, batch: list[Encoded]) -> list:
    """One forward pass per batch; each ranking is one packed sequence with a block mask."""
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    input_ids, mask, positions, ends = packed_batch(batch, _pad_id(model), dtype)
    hidden = model.model(
        input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device)
    ).last_hidden_state
    return [_score(model, hidden[b, torch.tensor(example_ends, device=device)]) for b, example_ends in enumerate(ends)]


def rewards_separate(model, batch: list[Encoded]) -> list:
    """The plain way: every `prompt + answer` is its own sequence (right-padded)."""
    import torch

    device = next(model.parameters()).device
    input_ids, attention, last = separate_batch(batch, _pad_id(model))
    hidden = model.model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).last_hidden_state
    flat = _score(model, hidden[torch.arange(len(input_ids), device=device), last.to(device)])
    rewards, start = [], 0
    for example in batch:
        rewards.append(flat[start : start + len(example.answer_ids)])
        start += len(example.answer_ids)
    return rewards


def kwise_loss(rewards, ranks: list[int], pairs: list[tuple[int, int, float]] | None = None):
    """Mean of −log σ(r_better − r_worse) over the ranking's ordered pairs (None if all tied).

    With weighted pairs (a consensus row: better, worse, weight), the mean over its pairs of
    weight × −log σ(r_better − r_worse): a pair the annotators' consensus is sure of counts fully,
    a doubtful one less, so a ranking of doubtful pairs weighs less than a sure one. All weights 1
    is the plain loss."""
    import torch
    import torch.nn.functional as F

    weighted = pairs if pairs is not None else [(i, j, 1.0) for i, j in ordered_pairs(ranks)]
    if not weighted:
        return None, 0, 0
    better = torch.tensor([i for i, _, _ in weighted], device=rewards.device)
    worse = torch.tensor([j for _, j, _ in weighted], device=rewards.device)
    weights = torch.tensor([w for _, _, w in weighted], device=rewards.device, dtype=rewards.dtype)
    margins = rewards[better] - rewards[worse]
    return -(weights * F.logsigmoid(margins)).mean(), len(weighted), int((margins > 0).sum())


# --- model ---------------------------------------------------------------------------------------


def load_reward_model(path: str, *, device: str, dtype: str, lora: bool = False, lora_rank: int = 16):
    """A sequence-scoring model from a causal LM (SFT) checkpoint or an earlier reward model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch_dtype(dtype))
    model.config.pad_token_id = tokenizer.pad_token_id
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                task_type="SEQ_CLS",
                r=lora_rank,
                lora_alpha=2 * lora_rank,
                target_modules="all-linear",
                modules_to_save=["score"],
            ),
        )
        model.model = model.base_model.model.model  # the packed pass reaches the backbone directly
        model.score = model.base_model.model.score
    return model.to(device), tokenizer


def evaluate(model, examples: list[Encoded], config: RewardConfig, batch_size: int = 8) -> dict:
    import torch

    forward = rewards_packed if config.packed else rewards_separate
    pairs = correct = 0
    losses = []
    examples = distributed.shard(examples)  # under torchrun, each process judges its share
    model.eval()
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            for rewards, example in zip(forward(model, batch), batch, strict=True):
                loss, n, right = kwise_loss(rewards, example.ranks, example.pairs)
                if loss is not None:
                    losses.append(float(loss))
                    pairs += n
                    correct += right
    model.train()
    loss_sum, count, pairs, correct = distributed.sum_across([sum(losses), len(losses), pairs, correct])
    pairs, correct = int(pairs), int(correct)
    return {
        "eval_accuracy": correct / pairs if pairs else None,
        "eval_loss": loss_sum / count if count else None,
        "eval_pairs": pairs,
    }


def _optimizer_and_schedule(model, config: RewardConfig, total: int, device: str):
    """AdamW over the trainable weights, with a linear warm-up, then a linear decay to zero."""
    import torch

    # The fused kernel (what transformers' Trainer uses by default) takes a third of the time of the
    # per-tensor one on CPU: ~0.25 s instead of ~0.8 s a step for SmolLM2, a large share of a K-wise step.
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=device in ("cpu", "cuda"),
    )
    warmup = max(1, int(total * config.warmup_ratio))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    return optimizer, schedule


def packed_length(example: Encoded) -> int:
    return len(example.prompt_ids) + sum(len(a) for a in example.answer_ids)


def epoch_batches(train: list[Encoded], config: RewardConfig, order: random.Random) -> list[list[Encoded]]:
    """One epoch's batches in random order. With group_by_length, the shuffled rankings are cut
    into windows of 50 batches, each window sorted by packed length before it is split into
    batches (as transformers' group_by_length does), so a batch pads to a near neighbour's length
    instead of the longest ranking in the data; the batches are then shuffled again."""
    rankings = train[:]
    order.shuffle(rankings)
    size = config.rankings_per_step
    if config.group_by_length:
        window = 50 * size
        rankings = [
            e
            for start in range(0, len(rankings), window)
            for e in sorted(rankings[start : start + window], key=packed_length)
        ]
    batches = [rankings[start : start + size] for start in range(0, len(rankings), size)]
    if config.group_by_length:
        order.shuffle(batches)
    return batches


def _train_step(model, forward, batch: list[Encoded], optimizer, schedule) -> tuple[float, int, int]:
    """One optimizer step on a batch of rankings: (loss, ordered pairs, pairs ranked right)."""
    import torch

    if distributed.active():
        return _train_step_sharded(model, forward, batch, optimizer, schedule)
    losses, pairs, correct = [], 0, 0
    for rewards, example in zip(forward(model, batch), batch, strict=True):
        loss, n, right = kwise_loss(rewards, example.ranks, example.pairs)
        losses.append(loss)
        pairs += n
        correct += right
    loss = torch.stack(losses).mean()  # each ranking weighs the same, however many pairs it has
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    return loss.item(), pairs, correct


def _train_step_sharded(model, forward, batch: list[Encoded], optimizer, schedule) -> tuple[float, int, int]:
    """_train_step with the batch split over torchrun's processes: each back-propagates its share
    of the rankings, divided by the whole batch's size, and the gradients are summed over the
    processes, so every process makes the very update one process makes on the whole batch (the
    same global batch, however it divides: a process whose share is empty adds zeros)."""
    import torch

    local = distributed.shard(batch)
    optimizer.zero_grad()
    loss_sum, pairs, correct = 0.0, 0, 0
    if local:
        losses = []
        for rewards, example in zip(forward(model, local), local, strict=True):
            loss, n, right = kwise_loss(rewards, example.ranks, example.pairs)
            losses.append(loss)
            pairs += n
            correct += right
        loss = torch.stack(losses).sum() / len(batch)  # each ranking of the batch weighs the same
        loss.backward()
        loss_sum = loss.item()
    distributed.sum_gradients(model.parameters())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    loss_sum, pairs, correct = distributed.sum_across([loss_sum, pairs, correct])
    return loss_sum, int(pairs), int(correct)


def train_reward_model(
    rankings: list[Ranking],
    model_path: str,
    out_dir: str,
    config: RewardConfig | None = None,
    *,
    held_out: list[Ranking] | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
) -> dict:
    """Train on `rankings` (held-out split made here unless given); save to out_dir; return metrics."""
    from training.ml.generation import pick_device

    config = config or RewardConfig()
    seed_everything(config.seed)
    if held_out is None:
        rankings, held_out = split_held_out(rankings, config.eval_fraction, config.seed)
    device, dtype = pick_device()
    model, tokenizer = load_reward_model(
        model_path, device=device, dtype=dtype, lora=config.lora, lora_rank=config.lora_rank
    )
    distributed.broadcast_parameters(model)  # under torchrun, every process starts from the same head
    train = [
        e
        for e in (encode(tokenizer, r, config) for r in rankings)
        if (e.pairs if e.pairs is not None else ordered_pairs(e.ranks))
    ]
    test = [encode(tokenizer, r, config) for r in held_out]
    if not train:
        raise ValueError("no ranking with at least one ordered pair to train on")
    total = math.ceil(len(train) / config.rankings_per_step) * config.epochs
    optimizer, schedule = _optimizer_and_schedule(model, config, total, device)
    forward = rewards_packed if config.packed else rewards_separate
    order = random.Random(config.seed)
    progress(0, total, {**(evaluate(model, test, config) if test else {})})
    started, step, history = time.perf_counter(), 0, []
    model.train()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for epoch in range(config.epochs):
        for batch in epoch_batches(train, config, order):
            if should_stop():
                raise TrainingCancelled("reward model training was cancelled")
            loss, pairs, correct = _train_step(model, forward, batch, optimizer, schedule)
            step += 1
            history.append(loss)
            progress(step, total, {"loss": loss, "train_accuracy": correct / pairs, "epoch": epoch + step / total})
    metrics = {
        **(evaluate(model, test, config) if test else {}),
        "train_loss_first": history[0],
        "train_loss_last": history[-1],
        "steps": step,
        "train_rankings": len(train),
        "held_out_rankings": len(test),
        "seconds": time.perf_counter() - started,
    }
    progress(step, total, metrics)
    if distributed.is_main():
        save_reward_model(model, tokenizer, Path(out_dir), config, metrics)
    return metrics


def save_reward_model(model, tokenizer, out_dir: Path, config: RewardConfig, metrics: dict) -> None:
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "yushan_stage.json").write_text(
        json.dumps({"stage": "reward", "config": asdict(config), "metrics": metrics}, indent=2), encoding="utf-8"
    )


class RewardScorer:
    """Scores (prompt, answer) pairs with a trained reward model: what RL and evaluation call."""

    def __init__(self, path: str, *, device: str | None = None, dtype: str | None = None, batch_size: int = 8):
        from training.ml.generation import pick_device

        picked = pick_device()
        self.model, self.tokenizer = load_reward_model(path, device=device or picked[0], dtype=dtype or picked[1])
        self.model.eval()
        self.config = RewardConfig()
        self.batch_size = batch_size

    def score(self, prompts: list, answers: list[str]) -> list[float]:
        """One score per (prompt, answer), each its own sequence, in batches of similar length."""
        import torch

        encoded = [
            encode(self.tokenizer, Ranking(p, [a], [1]), self.config) for p, a in zip(prompts, answers, strict=True)
        ]
        lengths = [len(e.prompt_ids) + len(e.answer_ids[0]) for e in encoded]
        scores = [0.0] * len(encoded)
        with torch.no_grad():
            for batch in length_sorted_batches(lengths, self.batch_size):
                for index, rewards in zip(
                    batch, rewards_separate(self.model, [encoded[i] for i in batch]), strict=True
                ):
                    scores[index] = float(rewards[0])
        return scores

    def score_rankings(self, rankings: list[Ranking]) -> list[list[float]]:
        """Every answer of each ranking scored, the prompt encoded once per ranking (packed, as in
        training; the same scores as `score`): a batch holds batch_size answers' worth of rankings
        of similar length."""
        import torch

        encoded = [encode(self.tokenizer, ranking, self.config) for ranking in rankings]
        lengths = [len(e.prompt_ids) + sum(len(a) for a in e.answer_ids) for e in encoded]
        answers = max((len(e.answer_ids) for e in encoded), default=1)
        scores: list[list[float]] = [[] for _ in encoded]
        with torch.no_grad():
            for batch in length_sorted_batches(lengths, max(1, self.batch_size // answers)):
                for index, rewards in zip(batch, rewards_packed(self.model, [encoded[i] for i in batch]), strict=True):
                    scores[index] = [float(r) for r in rewards]
        return scores


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a K-wise reward model from ranking or preference JSONL/Parquet."
    )
    parser.add_argument(
        "--data",
        required=True,
        help="ranking rows {prompt, completions, ranks} or preference rows {prompt, chosen, rejected}",
    )
    parser.add_argument("--model", required=True, help="a causal LM (e.g. the SFT model) or an earlier reward model")
    parser.add_argument("--out", required=True)
    options.add_arguments(parser, RewardConfig)
    return parser


def main() -> None:
    parser = argument_parser()
    args = parser.parse_args()
    config = options.from_arguments(RewardConfig, args, parser=parser)

    def report(step, total, metrics):
        if "loss" in metrics and (step % 10 == 0 or step == total):
            print(f"step {step}/{total} loss {metrics['loss']:.4f}", flush=True)

    metrics = train_reward_model(
        rankings_from_records(load_records(args.data)), args.model, args.out, config, progress=report
    )
    accuracy = metrics.get("eval_accuracy")
    print(
        f"held-out pairwise accuracy: {accuracy:.3f} over {metrics['eval_pairs']} pairs"
        if accuracy is not None
        else "no held-out pairs"
    )
    print(f"saved to {args.out}")


if __name__ == "__main__":
    main()
