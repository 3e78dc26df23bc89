"""Turning one stored judgment into export rows. Pure functions: no Django, no database.

Formats follow TRL / Hugging Face `datasets` conventions for conversational data:
- sft:        {"messages": [...prompt, {"role": "assistant", "content": answer}]}
- preference: {"prompt": [...], "chosen": [assistant msg], "rejected": [assistant msg], "margin"?}
- ranking:    {"prompt": [...], "completions": [[assistant msg], ...], "ranks": [1, 2, 2, 3]}
"""

import hashlib
import hmac
from collections.abc import Iterator


def assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def sft_row(prompt: list[dict], answer: str) -> dict:
    return {"messages": [*prompt, {"role": "assistant", "content": answer}]}


def ranks_from_groups(groups: list[list[str]]) -> dict[str, int]:
    """Rank 1 is best; the answers of one group (a tie) share a rank (dense ranking)."""
    return {answer_id: rank for rank, group in enumerate(groups, start=1) for answer_id in group}


def groups_without(groups: list[list[str]], dropped: set[str]) -> list[list[str]]:
    kept = [[answer_id for answer_id in group if answer_id not in dropped] for group in groups]
    return [group for group in kept if group]


def ranking_row(prompt: list[dict], groups: list[list[str]], texts: dict[str, str]) -> dict:
    ranks = ranks_from_groups(groups)
    ordered = [answer_id for group in groups for answer_id in group]
    return {
        "prompt": prompt,
        "completions": [assistant(texts[answer_id]) for answer_id in ordered],
        "ranks": [ranks[answer_id] for answer_id in ordered],
    }


def consensus_row(prompt: list[dict], ranks: dict[str, int], pairs, texts: dict[str, str], annotators: int) -> dict:
    """One task's consensus (labeling.quality.reliability): answers best first, their ranks, and the
    weighted pairs as indices into that order."""
    ordered = sorted(ranks, key=lambda answer_id: (ranks[answer_id], answer_id))
    index = {answer_id: i for i, answer_id in enumerate(ordered)}
    return {
        "prompt": prompt,
        "completions": [assistant(texts[answer_id]) for answer_id in ordered],
        "ranks": [ranks[answer_id] for answer_id in ordered],
        "pairs": [
            {"better": index[better], "worse": index[worse], "weight": round(weight, 6)}
            for better, worse, weight in pairs
        ],
        "annotators": annotators,
    }


def indexed_pairs(groups: list[list[str]], pairs) -> list[dict]:
    """Weighted pairs of answer ids as {better, worse, weight} indices into a ranking row's
    completions (the groups' order, best first)."""
    index = {answer_id: i for i, answer_id in enumerate(answer_id for group in groups for answer_id in group)}
    return [{"better": index[b], "worse": index[w], "weight": round(weight, 6)} for b, w, weight in pairs]


def implied_pairs(groups: list[list[str]], mode: str) -> Iterator[tuple[str, str]]:
    """(better, worse) pairs a ranking implies. Tied answers make no pair.

    mode "all": every pair across different groups; "best_worst": first group against last group.
    """
    if len(groups) < 2:
        return
    if mode == "best_worst":
        for better in groups[0]:
            for worse in groups[-1]:
                yield better, worse
        return
    for i, better_group in enumerate(groups):
        for worse_group in groups[i + 1 :]:
            for better in better_group:
                for worse in worse_group:
                    yield better, worse


def preference_rows(
    prompt: list[dict], groups: list[list[str]], texts: dict[str, str], ratings: dict[str, int], mode: str, margin: bool
) -> Iterator[dict]:
    for better, worse in implied_pairs(groups, mode):
        row = {"prompt": prompt, "chosen": assistant(texts[better]), "rejected": assistant(texts[worse])}
        if margin:
            both = better in ratings and worse in ratings
            row["margin"] = float(ratings[better] - ratings[worse]) if both else None
        yield row


def pseudonym(salt: str, user_id: int) -> str:
    """Stable within one snapshot (same salt), unlinkable across snapshots and to the user's id."""
    digest = hmac.new(salt.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()
    return f"annotator-{digest[:12]}"
