"""Which policy stage turns rankings into a better policy? RLOO, DPO and iterative DPO side by side.

    .venv/bin/python benchmarks/policy_stage.py --rules concise,language     # SmolLM2 from var/models

Why: in benchmarks/closed_loop.py a round's gain comes from SFT on the demonstrations; after it
both rules sit near their ceiling, so a second round can only gain through the policy stage,
from rankings. This measures what each algorithm makes of the same rankings, with the round's
default settings (training.rounds.config.ROUND_DEFAULTS) and nothing else changed:

1. The bank's prompts (benchmarks/closed_loop_prompts.jsonl) split in two with a fixed seed: half
   to train on, half held out.
2. The base policy writes K = 4 answers per training prompt (the generation job's sampling, 96
   tokens); for each rule, a simulated teacher ranks them (benchmarks/closed_loop_teachers.py,
   ties as the closed loop makes them).
3. Per rule: the round's reward model on those rankings, then each algorithm from the base
   policy (no SFT first, so the rule's headroom is the policy stage's to take): `rloo` (the
   former default), `dpo` (offline, on each ranking's best answer against its worst: the
   round's default) and `iterative_dpo` (on-policy: sample, score with the reward model, DPO on
   best versus worst).
4. Every policy answers every held-out prompt (the round evaluation's sampling: temperature 0.7,
   96 tokens, seed 0); the rule scores them: mean with a 95% bootstrap interval, the paired
   per-prompt difference to the base with its interval (and to the first algorithm listed, so a
   stage is compared with the default on the same prompts), answer length, and the stage's time.

Run on a machine of its own: one torch thread per stage (`--threads`), as the gpu worker has on
a 2-core machine beside the web server. The JSON report (--out) is rewritten after each algorithm.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from benchmarks.closed_loop_teachers import (  # noqa: E402
    RULES,
    bank_load,
    interval_summary,
    interval_text,
    paired_difference,
    rank_groups,
)
from benchmarks.reward_kwise import default_model  # noqa: E402

BANK = ROOT / "benchmarks" / "closed_loop_prompts.jsonl"
ALGORITHMS = ("rloo", "dpo", "iterative_dpo")
K = 4


def round_defaults() -> dict:
    """The round's defaults, read where the product keeps them (the module needs Django's settings)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_site.settings")
    django.setup()
    from training.rounds.config import ROUND_DEFAULTS

    return ROUND_DEFAULTS


def split_bank(bank: dict[str, dict], seed: int) -> tuple[list[dict], list[dict]]:
    rows = sorted(bank.values(), key=lambda row: row["prompt"])
    random.Random(seed).shuffle(rows)
    half = len(rows) // 2
    return rows[:half], rows[half:]


def conversation(row: dict) -> list[dict]:
    return [{"role": "user", "content": row["prompt"]}]


def answers_of(model_path: str, rows: list[dict], sampling, *, seeds: list[int]) -> list[list[str]]:
    """len(seeds) answers per row, one batched pass per seed."""
    from dataclasses import replace

    from training.ml.evaluate import load_policy, release_memory, sample_answers

    model, tokenizer = load_policy(model_path)
    conversations = [conversation(row) for row in rows]
    passes = [sample_answers(model, tokenizer, conversations, replace(sampling, seed=seed)) for seed in seeds]
    del model
    release_memory()
    return [[answers[i] for answers in passes] for i in range(len(rows))]


def ranking_records(rows: list[dict], candidates: list[list], rule: str) -> list[dict]:
    """The teacher's rankings: ranks 1 (best) … with ties, as closed_loop's teachers submit them."""
    records = []
    for row, answers in zip(rows, candidates, strict=True):
        texts = list(dict.fromkeys(a.text for a in answers if a.text.strip()))  # the product drops duplicates
        if len(texts) < 2:
            continue
        scores = {str(i): RULES[rule](text, row["lang"], row["answer"]) for i, text in enumerate(texts)}
        ranks = [0] * len(texts)
        for rank, group in enumerate(rank_groups(scores), start=1):
            for answer_id in group:
                ranks[int(answer_id)] = rank
        records.append({"prompt": conversation(row), "completions": texts, "ranks": ranks})
    return records


def rule_scores(model_path: str, rows: list[dict], sampling, rule: str) -> dict:
    answers = [a[0] for a in answers_of(model_path, rows, sampling, seeds=[sampling.seed])]
    scores = [RULES[rule](a.text, row["lang"], row["answer"]) for a, row in zip(answers, rows, strict=True)]
    return {
        **interval_summary(scores),
        "scores": scores,
        "mean_tokens": sum(len(a.token_ids) for a in answers) / len(answers),
        "examples": [a.text for a in answers[:4]],
    }


def variant_parse(variant: str) -> tuple[str, dict]:
    """ "dpo:pairs=best_worst,steps=16" -> ("dpo", {"pairs": "best_worst", "steps": 16}): an
    algorithm, and settings over the round's defaults (checked as the round API checks them)."""
    from training.ml import options
    from training.ml.policy_config import PolicyConfig

    algorithm, _, rest = variant.partition(":")
    raw = dict(item.split("=", 1) for item in rest.split(",") if item)
    specs = options.field_specs(PolicyConfig)
    overrides = {}
    for name, text in raw.items():
        kind = specs[name].kind
        overrides[name] = text if kind is str else (text == "true") if kind is bool else kind(text)
    return algorithm.strip(), overrides


def timed(function, *args, **kwargs) -> tuple[object, float]:
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def one_rule(rule: str, base: str, train, held_out, candidates, work: Path, defaults, keep, algorithms) -> dict:
    """Reward model, then each algorithm; `keep(result)` after each, so a run cut short keeps its figures."""
    from training.ml.evaluate import sampling_from
    from training.ml.policy import optimize_policy
    from training.ml.policy_config import PolicyConfig
    from training.ml.reward import RewardConfig, train_reward_model
    from training.ml.reward_data import rankings_from_records

    records = ranking_records(train, candidates, rule)
    print(f"[{rule}] {len(records)} rankings from {len(train)} training prompts", flush=True)
    reward_dir = work / rule / "reward"
    reward, reward_seconds = timed(
        train_reward_model,
        rankings_from_records(records),
        base,
        str(reward_dir),
        RewardConfig(**defaults["reward"]),
    )
    print(f"[{rule}] reward model: {reward_seconds:.0f} s, held-out accuracy {reward.get('eval_accuracy')}", flush=True)
    evaluation = sampling_from(defaults["evaluate"])
    base_scores = rule_scores(base, held_out, evaluation, rule)
    policies = {"base": {**base_scores, "seconds": 0.0}}
    result = {"rankings": len(records), "reward": reward, "reward_seconds": reward_seconds, "policies": policies}
    for variant in algorithms:
        algorithm, overrides = variant_parse(variant)
        folder = work / rule / variant.replace(":", "_").replace(",", "_")
        config = PolicyConfig(**{**defaults["policy"], **overrides, "algorithm": algorithm})
        try:
            metrics, seconds = timed(optimize_policy, records, base, str(reward_dir), str(folder), config)
        except Exception as error:  # noqa: BLE001 - one algorithm failing must not lose the others' figures
            print(f"[{rule}] {algorithm} failed: {type(error).__name__}: {error}", flush=True)
            policies[variant] = {"error": f"{type(error).__name__}: {error}"}
            keep(result)
            continue
        scores = rule_scores(str(folder), held_out, evaluation, rule)
        scores["vs_base"] = paired_difference(scores["scores"], base_scores["scores"])
        first = policies.get(algorithms[0], {})
        if variant != algorithms[0] and "scores" in first:  # the stages compared on the same prompts
            scores["vs_first"] = paired_difference(scores["scores"], first["scores"])
        policies[variant] = {**scores, "seconds": seconds, "metrics": metrics}
        keep(result)
        print(
            f"[{rule}] {variant}: {seconds:.0f} s, rule {interval_text(scores)}, "
            f"vs base {interval_text(scores['vs_base'], signed=True)}, {scores['mean_tokens']:.1f} tokens",
            flush=True,
        )
    return result


def candidates_load_or_make(path: Path | None, base: str, train: list[dict], sampling) -> tuple[list[list], float]:
    """The base policy's K answers per training prompt; with --candidates, read from that file when
    it holds them for these prompts (they depend on neither the rule nor the algorithm), else made
    and saved there."""
    from types import SimpleNamespace

    if path is not None and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["prompts"] == [row["prompt"] for row in train]:
            rows = [[SimpleNamespace(text=text) for text in texts] for texts in saved["answers"]]
            return rows, saved["seconds"]
    candidates, seconds = timed(answers_of, base, train, sampling, seeds=list(range(K)))
    if path is not None:
        answers = [[a.text for a in group] for group in candidates]
        saved = {"prompts": [row["prompt"] for row in train], "answers": answers, "seconds": seconds}
        path.write_text(json.dumps(saved, ensure_ascii=False), encoding="utf-8")
    return candidates, seconds


def table_print(report: dict) -> None:
    print(f"\n{report['train_prompts']} training prompts, {report['held_out_prompts']} held out, K = {K}")
    for rule, result in report["rules"].items():
        accuracy = result["reward"].get("eval_accuracy")
        print(
            f"\nrule {rule}: {result['rankings']} rankings; reward model {result['reward_seconds']:.0f} s, "
            f"held-out accuracy {accuracy}"
        )
        first = next((name for name in result["policies"] if name != "base"), "")
        print(f"| policy | rule score [95% CI] | vs base, paired [95% CI] | vs {first}, paired | tokens | stage s |")
        print("|---|---|---|---|---|---|")
        for name, p in result["policies"].items():
            if "error" in p:
                print(f"| {name} | failed: {p['error']} | | | | |")
                continue
            versus = interval_text(p["vs_base"], signed=True) if "vs_base" in p else "—"
            first_versus = interval_text(p["vs_first"], signed=True) if "vs_first" in p else "—"
            print(
                f"| {name} | {interval_text(p)} | {versus} | {first_versus} | {p['mean_tokens']:.1f} "
                f"| {p['seconds']:.0f} |"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="base checkpoint (default: the SmolLM2 checkpoint under var/models)")
    parser.add_argument("--rules", default="concise,language", help="comma-separated rules")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="the train / held-out split's seed")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "policy_stage.json")
    parser.add_argument("--candidates", type=Path, help="a file to keep the base policy's candidates in, across runs")
    parser.add_argument(
        "--algorithms",
        default=";".join(ALGORITHMS),
        help="policy stages to compare, separated by ';': an algorithm with optional settings, rloo;dpo:steps=16,pairs=best_worst",
    )
    args = parser.parse_args(argv)
    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    if not rules or set(rules) - RULES.keys():
        parser.error(f"--rules: choose from {', '.join(sorted(RULES))}")
    algorithms = [a.strip() for a in args.algorithms.split(";") if a.strip()]
    if not algorithms or {a.partition(":")[0] for a in algorithms} - set(ALGORITHMS):
        parser.error(f"--algorithms: choose from {', '.join(ALGORITHMS)}, each with optional :setting=value,…")
    base = args.model or default_model()
    if base is None:
        parser.error("no checkpoint under var/models: run `make run` once, or pass --model PATH")

    import torch

    torch.set_num_threads(args.threads)
    defaults = round_defaults()
    from training.ml.generation import SamplingParams

    train, held_out = split_bank(bank_load(BANK), args.seed)
    generation = SamplingParams(max_new_tokens=defaults["evaluate"]["max_new_tokens"])
    started = time.perf_counter()
    candidates, seconds = candidates_load_or_make(args.candidates, base, train, generation)
    print(f"base candidates: {len(train)} prompts × {K} in {seconds:.0f} s", flush=True)
    report = {
        "model": base,
        "train_prompts": len(train),
        "held_out_prompts": len(held_out),
        "candidate_seconds": seconds,
        "threads": args.threads,
        "rules": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="yushan-policy-stage-") as tmp:
        for rule in rules:

            def keep(result, rule=rule):
                report["rules"][rule] = result
                args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str))

            one_rule(rule, base, train, held_out, candidates, Path(tmp), defaults, keep, algorithms)
    report["seconds"] = time.perf_counter() - started
    table_print(report)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    print(f"\nreport: {args.out}; {report['seconds'] / 60:.1f} min in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
