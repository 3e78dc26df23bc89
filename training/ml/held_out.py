"""Judges on the frozen evaluation split's human rankings, rankings no round trained on.

- The reward model's accuracy: the share of the ordered pairs a ranking implies (ties make none)
  that the model orders as the people did.
- The policy's own preference accuracy, as DPO reads a policy: its implicit reward of an answer is
  log π(y | x) − log π_ref(y | x), the answer's log-probability ratio to the reference (the model
  the round started the policy stage from); a pair counts as right when the better answer gets
  the larger implicit reward. It says whether the policy itself moved toward what people prefer,
  without any reward model in the way.

Both report a 95% percentile-bootstrap interval over rankings (a ranking's pairs are resampled
together: the pairs of one ranking share a prompt and an annotator, so they are not independent).
A model near 0.7 is at the human ceiling (labelers agree with each other 63–77% of the time).
"""

from training.ml.common import length_sorted_batches
from training.ml.evaluate import as_conversation, load_policy, release_memory, summed_logprobs
from training.ml.reward_data import Encoded, Ranking, ordered_pairs


def accuracy_report(per_ranking: list[tuple[float, int]]) -> dict:
    """Accuracy over all pairs, and its interval from resampling whole rankings (the ratio of right
    pairs to pairs in each resample)."""
    import numpy as np

    kept = [(right, total) for right, total in per_ranking if total]
    if not kept:
        return {"accuracy": None, "accuracy_ci": None, "pairs": 0, "rankings": 0}
    right = np.array([r for r, _ in kept], dtype=float)
    total = np.array([t for _, t in kept], dtype=float)
    draws = np.random.default_rng(0).integers(0, len(kept), size=(2000, len(kept)))
    ratios = right[draws].sum(axis=1) / total[draws].sum(axis=1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    return {
        "accuracy": float(right.sum() / total.sum()),
        "accuracy_ci": [float(low), float(high)],
        "pairs": int(total.sum()),
        "rankings": len(kept),
    }


def _pairs_right(scores: list[float], ranks: list[int]) -> tuple[float, int]:
    """Right pairs (an exact tie counts half: a model with no preference scores 0.5) and pairs."""
    pairs = ordered_pairs(ranks)
    right = sum(1.0 if scores[b] > scores[w] else 0.5 if scores[b] == scores[w] else 0.0 for b, w in pairs)
    return right, len(pairs)


def reward_model_outcomes(
    rankings: list[Ranking], reward_model_path: str, *, batch_size: int = 8
) -> list[tuple[float, int]]:
    """(right pairs, pairs) for each ranking that implies a pair, in order: two reward models
    judged on the same rankings give outcomes that line up, for accuracy_difference."""
    from training.ml.reward import RewardScorer

    rankings = [r for r in rankings if ordered_pairs(r.ranks)]
    if not rankings:
        return []
    scorer = RewardScorer(str(reward_model_path), batch_size=batch_size)
    scores = scorer.score_rankings(rankings)
    del scorer
    return [_pairs_right(s, r.ranks) for s, r in zip(scores, rankings, strict=True)]


def reward_model_accuracy(rankings: list[Ranking], reward_model_path: str, *, batch_size: int = 8) -> dict:
    """The reward model's pairwise accuracy on held-out human rankings, with a 95% interval."""
    return accuracy_report(reward_model_outcomes(rankings, reward_model_path, batch_size=batch_size))


def accuracy_difference(first: list[tuple[float, int]], second: list[tuple[float, int]]) -> dict:
    """Accuracy of one model minus another's on the same rankings, with a paired 95% interval
    (the same resampled rankings for both), so a gap both models share in hard rankings cancels."""
    import numpy as np

    if len(first) != len(second) or not first:
        return {"difference": None, "difference_ci": None, "rankings": 0}
    a_right, total = np.array([r for r, _ in first], dtype=float), np.array([t for _, t in first], dtype=float)
    b_right = np.array([r for r, _ in second], dtype=float)
    draws = np.random.default_rng(0).integers(0, len(first), size=(2000, len(first)))
    differences = (a_right[draws].sum(axis=1) - b_right[draws].sum(axis=1)) / total[draws].sum(axis=1)
    low, high = np.quantile(differences, [0.025, 0.975])
    return {
        "difference": float((a_right.sum() - b_right.sum()) / total.sum()),
        "difference_ci": [float(low), float(high)],
        "rankings": len(first),
    }


def answer_sequences(tokenizer, rankings: list[Ranking], max_tokens: int) -> list[tuple[list[int], int]]:
    """Token ids of prompt + answer + end of turn, and where the answer starts, for every answer."""
    return [
        (encoded.prompt_ids + answer, len(encoded.prompt_ids))
        for encoded in encoded_rankings(tokenizer, rankings, max_tokens)
        for answer in encoded.answer_ids
    ]


def encoded_rankings(tokenizer, rankings: list[Ranking], max_tokens: int) -> list[Encoded]:
    """Each ranking's prompt (through the chat template, with the generation prompt) and its
    answers' token ids, each cut at max_tokens and ended with the end-of-turn token."""
    from training.ml.chat_template import end_of_turn_ids, render

    stop = end_of_turn_ids(tokenizer)[:1]
    encoded = []
    for ranking in rankings:
        conversation = as_conversation(ranking.prompt)
        prompt = render(tokenizer, conversation, add_generation_prompt=True)
        answers = [tokenizer(a, add_special_tokens=False)["input_ids"][:max_tokens] + stop for a in ranking.completions]
        encoded.append(Encoded(tokenizer(prompt, add_special_tokens=False)["input_ids"], answers, list(ranking.ranks)))
    return encoded


def ranking_logprobs(model, encoded: list[Encoded], *, batch_size: int = 8) -> list[list[float]]:
    """Each answer's summed log-probability given its ranking's prompt, the prompt encoded once per
    ranking (packed: the answers see the prompt and themselves only, as reward_data.packed_batch
    lays them out); a batch holds batch_size answers' worth of rankings of similar length. The
    vocabulary projection runs only where an answer token is predicted: the prompt's last position
    predicts each answer's first token, and each answer token the next."""
    import torch

    from training.ml.reward_data import packed_batch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    body, head = model.get_decoder(), model.get_output_embeddings()
    lengths = [len(e.prompt_ids) + sum(len(a) for a in e.answer_ids) for e in encoded]
    answers = max((len(e.answer_ids) for e in encoded), default=1)
    totals: list[list[float]] = [[] for _ in encoded]
    for batch in length_sorted_batches(lengths, max(1, batch_size // answers)):
        input_ids, mask, positions, ends = packed_batch([encoded[i] for i in batch], 0, dtype)
        where, targets, owner = [], [], []  # hidden state (row, index) → the token it predicts, (row, answer)
        for row, index in enumerate(batch):
            example, first = encoded[index], len(encoded[index].prompt_ids)
            for k, (answer, end) in enumerate(zip(example.answer_ids, ends[row], strict=True)):
                start = end - len(answer) + 1
                where += [(row, first - 1)] + [(row, position) for position in range(start, end)]
                targets += answer
                owner += [row * answers + k] * len(answer)
        with torch.no_grad():
            hidden = body(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device)
            ).last_hidden_state
            summed = summed_logprobs(head, hidden, where, targets, owner, len(batch) * answers)
        for row, index in enumerate(batch):
            totals[index] = summed[row * answers : row * answers + len(encoded[index].answer_ids)].tolist()
    return totals


def implicit_reward_accuracy(
    rankings: list[Ranking], policy_path: str, reference_path: str, *, max_answer_tokens: int = 256, batch_size: int = 8
) -> dict:
    """How often the policy's implicit reward (log-ratio to the reference) orders held-out human
    pairs as people did, with a 95% interval. Loads one model at a time."""
    rankings = [r for r in rankings if ordered_pairs(r.ranks)]
    if not rankings:
        return accuracy_report([])
    logps = {}
    for name, path in (("policy", policy_path), ("reference", reference_path)):
        model, tokenizer = load_policy(str(path))
        logps[name] = ranking_logprobs(
            model, encoded_rankings(tokenizer, rankings, max_answer_tokens), batch_size=batch_size
        )
        del model
        release_memory()
    return accuracy_report(
        [
            _pairs_right([p - r for p, r in zip(policy, reference, strict=True)], ranking.ranks)
            for policy, reference, ranking in zip(logps["policy"], logps["reference"], rankings, strict=True)
        ]
    )
