"""Comparing a new policy with the deployed one on held-out prompts, and deciding whether to deploy.

Both policies answer every prompt (batched, with the same sampling settings and seeds); the new
reward model scores every answer. The report: each policy's mean reward and mean answer length
(tokens), the new policy's win rate over the old one (a tie counts half) with a 95% bootstrap
interval over the prompts, under the new reward model and, when given, the previous round's (a
second judge the new policy was not trained against: when their verdicts differ the report says
so and nothing deploys by itself), and the KL of the new
policy from a reference (by default the old policy), estimated on the new policy's own answers:

    KL ≈ mean over answers of Σ_t [log p_new(y_t | x, y_<t) − log p_ref(y_t | x, y_<t)]

over the tokens y_t the new policy actually sampled (including its end-of-turn token), from one
forward pass of each model. The answers are drawn with the evaluation's sampling settings, so with
a temperature other than 1 this is the KL along the answers users would see. We keep the sampled
token ids rather than re-tokenizing the text: decoding and re-encoding can split an answer into
other tokens, which skews the estimate badly for a policy that is far from its reference.

Models are loaded one at a time (policy, then the other policy, then the reward model), so an
evaluation needs the memory of one model.
"""

import gc
from dataclasses import dataclass

from training.ml.common import length_sorted_batches
from training.ml.generation import SamplingParams, answer_text_clean
from training.ml.options import SEED_RANGE, setting

# Answers sampled together: on a CPU 32 is 1.59x faster per answer than 16 (README, candidate
# sampling). The evaluation, iterative DPO and the benchmarks sample in batches of this size.
SAMPLE_BATCH = 32


@dataclass
class EvaluateConfig:
    """A round's evaluation settings: how many held-out prompts, and how both policies sample."""

    prompts: int = setting(8, "held-out prompts both policies answer", range=(1, 10_000))
    samples: int = setting(
        1,
        "answers each policy writes per prompt: every new answer is compared with every deployed one of the "
        "same prompt, and the interval resamples prompts",
        range=(1, 16),
    )
    rankings: int = setting(
        512, "held-out human rankings the reward model and the policy are scored on, at most", range=(0, 1_000_000)
    )
    max_new_tokens: int = setting(256, "tokens sampled per answer at most", range=(1, 32768))
    temperature: float = setting(0.8, "sampling temperature (0: greedy)", range=(0, 10))
    seed: int = setting(0, range=SEED_RANGE)

    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed)


def sampling_from(settings: dict) -> SamplingParams:
    """How both policies sample, from a round's stored evaluation settings."""
    return SamplingParams(
        temperature=settings["temperature"], max_new_tokens=settings["max_new_tokens"], seed=settings["seed"]
    )


@dataclass
class Answer:
    text: str
    prompt_ids: list[int]
    token_ids: list[int]  # the sampled tokens, up to and including the end-of-turn token when there is one
    finish_reason: str  # "stop" or "length"


def as_conversation(prompt) -> list[dict]:
    """A prompt as messages: a plain string becomes one user message."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _answers_and_logprobs(
    conversations, new_path: str, old_path: str, reference_path: str, sampling, batch_size, old_answers=None
):
    """Both policies' answers, and the log-probabilities of the new policy's answers under the new
    policy and under the reference, loading one model at a time. `old_answers`, when given, are the
    deployed policy's (sampled earlier, the same way): it then samples nothing."""
    model, tokenizer = load_policy(new_path)
    new = sample_answers(model, tokenizer, conversations, sampling, batch_size=batch_size)
    new_sequences = [(a.prompt_ids + a.token_ids, len(a.prompt_ids)) for a in new]
    new_logps = sequence_logprobs(model, new_sequences, batch_size=batch_size)
    reference_logps = new_logps if reference_path == new_path else None
    del model
    release_memory()

    old = old_answers
    if old is None or reference_path == old_path:
        model, tokenizer = load_policy(old_path)
        if old is None:
            old = sample_answers(model, tokenizer, conversations, sampling, batch_size=batch_size)
        if reference_path == old_path:
            reference_logps = sequence_logprobs(model, new_sequences, batch_size=batch_size)
        del model
        release_memory()
    if reference_logps is None:
        model, _ = load_policy(reference_path)
        reference_logps = sequence_logprobs(model, new_sequences, batch_size=batch_size)
        del model
        release_memory()
    return new, old, new_logps, reference_logps


def evaluate_policies(
    prompts: list,
    new_policy_path: str,
    old_policy_path: str,
    reward_model_path: str,
    *,
    previous_reward_model_path: str | None = None,
    sampling: SamplingParams | None = None,
    reference_path: str | None = None,
    batch_size: int = SAMPLE_BATCH,
    samples: int = 1,
    old_answers: list[dict] | None = None,
) -> dict:
    """Metrics for the round page and the deploy decision, plus one row per prompt.

    `prompts` are conversations (lists of messages) or plain strings (one user message each).
    Each judge (the new reward model; the previous round's too, when given) reports a win rate
    with a 95% bootstrap interval; the new reward model's decides (should_deploy).

    With `samples` > 1 each policy answers every prompt that many times: a prompt's outcome is the
    mean over every pair of its new and deployed answers (samples² comparisons for the price of
    2 × samples answers), and the interval still resamples prompts, so it narrows by what the
    extra answers tell and no more. `rows` holds the first sample of every prompt, then the second.

    `old_answers` ({"text", "tokens"} per row, in `rows`' order) are the deployed policy's answers
    from an earlier evaluation of it on the same prompts with the same sampling (the previous
    round's new answers, `reused_old_answers`): an independent sample of that policy, so nothing
    changes but the time. The reward models score them again.
    """
    from training.ml.reward import RewardScorer

    sampling = sampling or SamplingParams()
    conversations = [as_conversation(p) for p in prompts]
    if not conversations:
        raise ValueError("evaluation needs at least one held-out prompt")
    if samples < 1:
        raise ValueError("samples must be at least 1")
    asked = conversations
    conversations = [c for _ in range(samples) for c in asked]  # sample-major: rows[:n] has every prompt once
    new_policy_path, old_policy_path = str(new_policy_path), str(old_policy_path)
    reference_path = str(reference_path or old_policy_path)
    new, old, new_logps, reference_logps = _answers_and_logprobs(
        conversations,
        new_policy_path,
        old_policy_path,
        reference_path,
        sampling,
        batch_size,
        _reused_answers(old_answers, len(conversations)),
    )

    new_rewards, old_rewards = _scores(RewardScorer, reward_model_path, conversations, new, old, batch_size)
    judges = {"new_reward_model": judge_report(new_rewards, old_rewards, samples=samples)}
    if previous_reward_model_path and str(previous_reward_model_path) != str(reward_model_path):
        previous = _scores(RewardScorer, previous_reward_model_path, conversations, new, old, batch_size)
        judges["previous_reward_model"] = judge_report(*previous, samples=samples)
    return {
        "prompts": len(asked),
        "samples_per_prompt": samples,
        "reused_old_answers": old_answers is not None,
        "new_mean_reward": _mean(new_rewards),
        "old_mean_reward": _mean(old_rewards),
        "win_rate": judges["new_reward_model"]["win_rate"],
        "win_rate_ci": judges["new_reward_model"]["win_rate_ci"],
        "judges": judges,
        "judges_disagree": judges_disagree(judges),
        "decided_by": "new_reward_model",
        "new_mean_length": _mean(len(a.token_ids) for a in new),
        "old_mean_length": _mean(len(a.token_ids) for a in old),
        "kl": _mean(p - r for p, r in zip(new_logps, reference_logps, strict=True)),
        "sampling": sampling.as_dict(),
        "rows": _rows(conversations, new, old, new_rewards, old_rewards),
    }


def _reused_answers(old_answers: list[dict] | None, count: int) -> list[Answer] | None:
    """The deployed policy's earlier answers as Answers; only their text and length are read."""
    if old_answers is None:
        return None
    if len(old_answers) != count:
        raise ValueError("old_answers needs one answer per prompt and sample")
    return [Answer(text=a["text"], prompt_ids=[], token_ids=[0] * a["tokens"], finish_reason="") for a in old_answers]


def _rows(conversations, new: list[Answer], old: list[Answer], new_rewards, old_rewards) -> list[dict]:
    """One row per prompt and sample, both answers side by side: what the round page shows."""
    return [
        {
            "prompt": c,
            "new_answer": n.text,
            "old_answer": o.text,
            "new_reward": nr,
            "old_reward": orr,
            "new_tokens": len(n.token_ids),
            "old_tokens": len(o.token_ids),
        }
        for c, n, o, nr, orr in zip(conversations, new, old, new_rewards, old_rewards, strict=True)
    ]


def _scores(scorer_class, path, conversations, new, old, batch_size) -> tuple[list[float], list[float]]:
    scorer = scorer_class(str(path), batch_size=batch_size)
    scores = scorer.score(conversations, [a.text for a in new]), scorer.score(conversations, [a.text for a in old])
    del scorer
    release_memory()
    return scores


def bootstrap_interval(outcomes, *, rounds: int = 2000, level: float = 0.95, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of per-prompt outcomes (prompts resampled with
    replacement, `rounds` times, a fixed seed so a round's report does not change on a re-read)."""
    import numpy as np

    values = np.asarray(list(outcomes), dtype=float)
    if values.size == 0:
        return [0.0, 0.0]
    draws = np.random.default_rng(seed).integers(0, values.size, size=(rounds, values.size))
    tail = (1 - level) / 2
    low, high = np.quantile(values[draws].mean(axis=1), [tail, 1 - tail])
    return [float(low), float(high)]


def prompt_outcomes(new_rewards: list[float], old_rewards: list[float], *, samples: int = 1) -> list[float]:
    """Per prompt, the new policy's share of wins (a tie counts half) over every pair of its answers
    and the deployed policy's. The rewards are sample-major: prompt p's answers are p, p + n, …"""
    if len(new_rewards) != len(old_rewards) or len(new_rewards) % samples:
        raise ValueError("each policy needs `samples` rewards for every prompt")
    n = len(new_rewards) // samples
    outcomes = []
    for p in range(n):
        new, old = new_rewards[p::n], old_rewards[p::n]
        pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a in new for b in old]
        outcomes.append(sum(pairs) / len(pairs))
    return outcomes


def judge_report(new_rewards: list[float], old_rewards: list[float], *, samples: int = 1) -> dict:
    """One judge's comparison: per prompt the new policy's wins (1), ties (0.5) and losses (0)
    against the deployed one (prompt_outcomes); the win rate, its 95% interval over prompts, and
    the verdict the interval allows."""
    outcomes = prompt_outcomes(new_rewards, old_rewards, samples=samples)
    low, high = bootstrap_interval(outcomes)
    verdict = "better" if low > 0.5 else "worse" if high < 0.5 else "no clear difference"
    return {"win_rate": _mean(outcomes), "win_rate_ci": [low, high], "verdict": verdict, "prompts": len(outcomes)}


def judges_disagree(judges: dict) -> bool:
    """Two judges whose intervals reach different verdicts (one says better, the other not): the
    new reward model may be rewarding what the policy learned to exploit, or the gain is noise."""
    return len({judge["verdict"] for judge in judges.values()}) > 1


JUDGE_MODELS = {"new_reward_model": "reward_model_accuracy", "previous_reward_model": "previous_reward_model_accuracy"}


def judges_weigh(result: dict) -> dict:
    """Which judge decides, given how well each reward model orders the frozen split's human
    rankings (`reward_models_compared`: the new model's accuracy minus the previous one's, with a
    paired 95% interval).

    A judge whose model is clearly less accurate there (the interval excludes 0) is outranked: its
    verdict is shown, and flagged when it differs, but it neither decides nor holds the deploy
    back. A reward model trained on an older policy's answers often is: it cannot tell apart the
    answers the new policy writes. Otherwise the new reward model decides, and any disagreement
    between the judges leaves the decision to an admin.
    """
    judges = result["judges"]
    decider, outranked = "new_reward_model", []
    low, high = (result.get("reward_models_compared") or {}).get("difference_ci") or (0.0, 0.0)
    if "previous_reward_model" in judges and low > 0:
        outranked = ["previous_reward_model"]
    elif "previous_reward_model" in judges and high < 0:
        decider, outranked = "previous_reward_model", ["new_reward_model"]
    credible = {name: judge for name, judge in judges.items() if name not in outranked}
    return {
        "decided_by": decider,
        "win_rate": judges[decider]["win_rate"],
        "win_rate_ci": judges[decider]["win_rate_ci"],
        "judges_disagree": judges_disagree(judges),
        "judges_outranked": outranked,
        "disagreement_blocks_deploy": judges_disagree(credible),
    }


def should_deploy(metrics: dict, threshold: float) -> bool:
    """Deploy the new policy automatically when the lower bound of its win rate's 95% interval
    (under the deciding judge) reaches `threshold`, and no credible judge disagrees (judges_weigh).

    The win rate counts ties as half a win, so 0.5 means "as good as the deployed policy"; asking
    the lower bound for 0.55 asks to be sure of a clear improvement, not to have drawn a lucky
    sample of prompts. Below it, the round waits for an admin. An evaluation stored without an
    interval (before intervals existed) is judged on its win rate.
    """
    if metrics.get("disagreement_blocks_deploy", metrics.get("judges_disagree")):
        return False
    return metrics.get("win_rate_ci", [metrics["win_rate"]])[0] >= threshold


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def release_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def load_policy(path: str):
    """A causal LM in evaluation mode on the best device (training.ml.generation.pick_device), and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.ml.common import torch_dtype
    from training.ml.generation import pick_device

    device, dtype = pick_device()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype)).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


def sample_answers(
    model, tokenizer, conversations, params: SamplingParams, *, batch_size: int = SAMPLE_BATCH
) -> list[Answer]:
    """One answer per conversation, batched by prompt length (left-padded), the same seeds for any model:
    batch i of the length-sorted prompts is drawn with seed params.seed + i·batch_size. Drawn in
    training.ml.generation.pick_sampling_device's precision (bf16 on a CPU that has it natively: a
    copy of a float32 model), as the generation job draws the annotators' candidates."""
    import torch

    from training.ml.chat_template import end_of_turn_ids, render
    from training.ml.decoding import sample_batch
    from training.ml.generation import for_sampling

    model = for_sampling(model)

    stop_ids = end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    prompt_ids = [
        tokenizer(render(tokenizer, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
        for c in conversations
    ]
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    device = next(model.parameters()).device
    answers: list[Answer | None] = [None] * len(conversations)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompt_ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, index in enumerate(chunk):
            ids = prompt_ids[index]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        sampled = sample_batch(
            model, input_ids.to(device), attention.to(device), params, stop_ids=stop_ids, seed=params.seed + start
        )
        for row, index in enumerate(chunk):
            tokens = sampled[row]
            stop = next((i for i, token in enumerate(tokens) if token in stop_ids), None)
            kept = tokens if stop is None else tokens[: stop + 1]
            text = answer_text_clean(tokenizer.decode(kept if stop is None else kept[:-1], skip_special_tokens=True))
            answers[index] = Answer(text, prompt_ids[index], kept, "length" if stop is None else "stop")
    return answers


def sequence_logprobs(model, sequences: list[tuple[list[int], int]], *, batch_size: int = 8) -> list[float]:
    """Summed log-probability of each sequence's tokens from its answer start on. Batches are of
    similar length (right-padded), and the vocabulary projection runs only at the positions that
    predict an answer token: with a 49k-token vocabulary it is a fifth of a small model's compute."""
    import torch

    device = next(model.parameters()).device
    body, head = model.get_decoder(), model.get_output_embeddings()
    totals = [0.0] * len(sequences)
    for batch in length_sorted_batches([len(ids) for ids, _ in sequences], batch_size):
        width = max(len(sequences[i][0]) for i in batch)
        input_ids = torch.zeros((len(batch), width), dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        rows, targets = [], []  # (row, position) of each hidden state that predicts a counted token
        for row, index in enumerate(batch):
            ids, answer_start = sequences[index]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
            rows += [(row, position - 1) for position in range(max(answer_start, 1), len(ids))]
            targets += ids[max(answer_start, 1) :]
        if not rows:
            continue
        with torch.no_grad():
            hidden = body(input_ids=input_ids.to(device), attention_mask=attention.to(device)).last_hidden_state
            per_row = summed_logprobs(head, hidden, rows, targets, [row for row, _ in rows], len(batch))
        for row, index in enumerate(batch):
            totals[index] = float(per_row[row])
    return totals


def summed_logprobs(head, hidden, where, targets, owners, count: int):
    """Log-probabilities of `targets`, each predicted by the hidden state at `where` (row, position),
    summed into `count` totals by `owners`: the vocabulary projection runs on those states only."""
    import torch

    device = hidden.device
    at = torch.tensor(where, device=device)
    logits = head(hidden[at[:, 0], at[:, 1]]).float()
    logps = logits.gather(-1, torch.tensor(targets, device=device)[:, None]).squeeze(-1)
    logps = logps - torch.logsumexp(logits, dim=-1)
    return torch.zeros(count, device=device, dtype=logps.dtype).index_add_(
        0, torch.tensor(owners, device=device), logps
    )
