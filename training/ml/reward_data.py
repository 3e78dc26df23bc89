"""The reward model's and the policy stage's data: rankings and prompts read from snapshot rows,
the pairs a ranking implies, token ids, and the batches the forward passes take, packed (one
sequence per ranking, with a block attention mask) or separate (one sequence per answer). See
training.ml.reward for the model and the loss."""

import json
import random
from dataclasses import dataclass
from itertools import combinations
from typing import Protocol


class TokenLimits(Protocol):
    """What encode reads of a training.ml.reward.RewardConfig."""

    max_prompt_tokens: int
    max_answer_tokens: int


@dataclass
class Ranking:
    """A prompt (a conversation, or plain text) and K answers with ranks (1 is best; ties share)."""

    prompt: list[dict] | str
    completions: list[str]
    ranks: list[int]
    # Weighted pairs (better index, worse index, weight) of a consensus row; None: every ordered
    # pair the ranks imply, each weighing 1.
    pairs: list[tuple[int, int, float]] | None = None


# --- rows ----------------------------------------------------------------------------------------


def answer_text(value) -> str:
    """An answer given as text, or as messages (the last message's content)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return value[-1]["content"]
    raise ValueError(f"an answer must be text or a list of messages, not {type(value).__name__}")


def implicit_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str]:
    """(prompt, chosen answer, rejected answer) of two conversations that share their start."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    return chosen[:shared], answer_text(chosen[shared:]), answer_text(rejected[shared:])


def rankings_from_records(records: list[dict]) -> list[Ranking]:
    """K-wise rows ({prompt, completions, ranks}) or TRL preference rows ({prompt?, chosen, rejected})."""
    rankings = []
    for number, record in enumerate(records, start=1):
        if "completions" in record and "ranks" in record:
            answers = [answer_text(c) for c in record["completions"]]
            ranks = [int(r) for r in record["ranks"]]
            if len(answers) != len(ranks) or len(answers) < 2:
                raise ValueError(f"row {number}: completions and ranks must be equally long, 2 or more")
            pairs = weighted_pairs(record.get("pairs"), len(answers), number)
            rankings.append(Ranking(record["prompt"], answers, ranks, pairs))
        elif "chosen" in record and "rejected" in record:
            if "prompt" in record and record["prompt"] is not None:
                prompt, chosen, rejected = (
                    record["prompt"],
                    answer_text(record["chosen"]),
                    answer_text(record["rejected"]),
                )
            else:
                prompt, chosen, rejected = implicit_prompt(record["chosen"], record["rejected"])
            rankings.append(Ranking(prompt, [chosen, rejected], [1, 2]))
        else:
            raise ValueError(f"row {number}: expected completions+ranks or chosen+rejected")
    return rankings


def weighted_pairs(raw, answers: int, number: int) -> list[tuple[int, int, float]] | None:
    """A consensus row's `pairs` ({better, worse, weight}, indices into its completions)."""
    if raw is None:
        return None
    pairs = []
    for pair in raw:
        better, worse, weight = int(pair["better"]), int(pair["worse"]), float(pair["weight"])
        if not (0 <= better < answers and 0 <= worse < answers and better != worse and 0 <= weight <= 1):
            raise ValueError(f"row {number}: pairs need two different answer indices and a weight from 0 to 1")
        pairs.append((better, worse, weight))
    return pairs


def ordered_pairs(ranks: list[int]) -> list[tuple[int, int]]:
    """(better, worse) index pairs a ranking implies; equal ranks (ties) make no pair."""
    pairs = []
    for i, j in combinations(range(len(ranks)), 2):
        if ranks[i] < ranks[j]:
            pairs.append((i, j))
        elif ranks[j] < ranks[i]:
            pairs.append((j, i))
    return pairs


def preference_pairs(rankings: list[Ranking]) -> list[dict]:
    """TRL preference rows {prompt, chosen, rejected}: every ordered pair of every ranking (ties make
    none); conversational prompts get conversational answers."""
    rows = []
    for ranking in rankings:
        conversational = isinstance(ranking.prompt, list)
        for better, worse in ordered_pairs(ranking.ranks):
            chosen, rejected = ranking.completions[better], ranking.completions[worse]
            if conversational:
                chosen = [{"role": "assistant", "content": chosen}]
                rejected = [{"role": "assistant", "content": rejected}]
            rows.append({"prompt": ranking.prompt, "chosen": chosen, "rejected": rejected})
    return rows


def split_held_out(rankings: list[Ranking], fraction: float, seed: int) -> tuple[list[Ranking], list[Ranking]]:
    """A held-out split by prompt, so no prompt is in both halves."""
    keys = sorted({json.dumps(r.prompt, sort_keys=True, ensure_ascii=False) for r in rankings})
    random.Random(seed).shuffle(keys)
    held = set(keys[: max(1, round(len(keys) * fraction))]) if fraction > 0 and len(keys) > 1 else set()
    train = [r for r in rankings if json.dumps(r.prompt, sort_keys=True, ensure_ascii=False) not in held]
    test = [r for r in rankings if json.dumps(r.prompt, sort_keys=True, ensure_ascii=False) in held]
    return train, test


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
        return implicit_prompt(record["chosen"], record["rejected"])[0]
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


# --- tokens ------------------------------------------------------------------------------------


@dataclass
class Encoded:
    prompt_ids: list[int]
    answer_ids: list[list[int]]
    ranks: list[int]
    pairs: list[tuple[int, int, float]] | None = None  # Ranking.pairs


def encode(tokenizer, ranking: Ranking, config: TokenLimits) -> Encoded:
    """Prompt and answers as token ids. Conversational prompts go through the chat template, and
    each answer is the text the template adds for it (content and end-of-turn)."""
    if isinstance(ranking.prompt, str):
        prompt_text, answer_texts = ranking.prompt, ranking.completions
    else:
        prompt_text = tokenizer.apply_chat_template(ranking.prompt, tokenize=False, add_generation_prompt=True)
        answer_texts = []
        for answer in ranking.completions:
            full = tokenizer.apply_chat_template(
                [*ranking.prompt, {"role": "assistant", "content": answer}], tokenize=False
            )
            if not full.startswith(prompt_text):
                raise ValueError("the chat template does not render the prompt as a prefix of prompt + answer")
            answer_texts.append(full[len(prompt_text) :])
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"][-config.max_prompt_tokens :]
    answers = [
        tokenizer(t, add_special_tokens=False)["input_ids"][: config.max_answer_tokens] or [tokenizer.eos_token_id]
        for t in answer_texts
    ]
    return Encoded(prompt_ids, answers, list(ranking.ranks), ranking.pairs)


# --- batches -----------------------------------------------------------------------------------


def packed_batch(batch: list[Encoded], pad: int, dtype):
    """(input_ids, attention mask, position ids, answer ends): one row per ranking, `prompt +
    answer₁ + … + answer_K`, each answer seeing the prompt and itself only, its positions restarting
    after the prompt; the mask is additive (0 or the dtype's minimum), [batch, 1, width, width];
    answer ends are, per row, the index of each answer's last token."""
    import torch

    width = max(len(e.prompt_ids) + sum(len(a) for a in e.answer_ids) for e in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    positions = torch.zeros((len(batch), width), dtype=torch.long)
    segments = torch.full((len(batch), width), -1, dtype=torch.long)  # -1 padding, 0 prompt, i answer i
    ends = []
    for b, example in enumerate(batch):
        p = len(example.prompt_ids)
        input_ids[b, :p] = torch.tensor(example.prompt_ids)
        positions[b, :p] = torch.arange(p)
        segments[b, :p] = 0
        cursor, example_ends = p, []
        for i, answer in enumerate(example.answer_ids, start=1):
            n = len(answer)
            input_ids[b, cursor : cursor + n] = torch.tensor(answer)
            positions[b, cursor : cursor + n] = torch.arange(p, p + n)
            segments[b, cursor : cursor + n] = i
            cursor += n
            example_ends.append(cursor - 1)
        ends.append(example_ends)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    q_seg, k_seg = segments[:, :, None], segments[:, None, :]
    allowed = causal & (k_seg != -1) & ((k_seg == 0) | (k_seg == q_seg))
    allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves (no NaN rows)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
    return input_ids, mask, positions, ends


def separate_batch(batch: list[Encoded], pad: int):
    """(input_ids, attention mask, last-token index): one right-padded row per `prompt + answer`."""
    import torch

    sequences = [e.prompt_ids + a for e in batch for a in e.answer_ids]
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention[row, : len(sequence)] = 1
    return input_ids, attention, torch.tensor([len(s) - 1 for s in sequences])
