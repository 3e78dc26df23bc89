"""SFT with LoRA adapters or on every weight, on a CPU: which is faster, and which learns better?

    .venv/bin/python benchmarks/sft_lora.py          # SmolLM2 from var/models; about 10 minutes on 2 cores
    .venv/bin/python benchmarks/sft_lora.py --variants "full;lora:learning_rate=2e-4;lora:learning_rate=5e-4"

The data is benchmarks/closed_loop_prompts.jsonl, split as benchmarks/policy_stage.py splits it:
half of the prompts and their reference answers are the demonstrations, the other half is held
out. Each variant fine-tunes the base policy with the round's SFT defaults
(training.rounds.config.ROUND_DEFAULTS, including its early stop on validation loss) and the
settings the variant names. Then, on the held-out half:

- the loss of the reference answers (mean negative log-likelihood per answer token): how well the
  model learned to write what teachers write, on prompts it never saw;
- each rule of benchmarks/closed_loop_teachers.py scoring one sampled answer per prompt (the round
  evaluation's sampling), with 95% bootstrap intervals and the paired difference to `full`;
- the stage's wall time and seconds per optimizer step.

The JSON report goes to --out (default benchmarks/results/sft_lora.json).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.closed_loop_teachers import RULES, bank_load, interval_text, paired_difference  # noqa: E402
from benchmarks.policy_stage import BANK, answers_of, conversation, round_defaults, split_bank  # noqa: E402
from benchmarks.reward_kwise import default_model  # noqa: E402


def variant_parse(variant: str) -> tuple[str, dict]:
    """ "lora:learning_rate=2e-4" -> ("lora:learning_rate=2e-4", {"lora": True, "learning_rate": 2e-4})."""
    from training.ml import options
    from training.ml.sft import SFTStageConfig

    kind, _, rest = variant.partition(":")
    if kind not in ("full", "lora"):
        raise SystemExit(f"--variants: {variant!r} must start with full or lora")
    specs = options.field_specs(SFTStageConfig)
    settings = {"lora": kind == "lora"}
    for item in filter(None, rest.split(",")):
        name, text = item.split("=", 1)
        settings[name] = specs[name].kind(text) if specs[name].kind is not bool else text == "true"
    return variant, settings


def reference_loss(model_path: str, rows: list[dict]) -> float:
    """Mean negative log-likelihood per token of the held-out reference answers (end of turn included)."""
    from training.ml.evaluate import load_policy, release_memory, sequence_logprobs
    from training.ml.held_out import answer_sequences
    from training.ml.reward_data import Ranking

    model, tokenizer = load_policy(model_path)
    rankings = [Ranking(conversation(row), [row["answer"]], [1]) for row in rows]
    sequences = answer_sequences(tokenizer, rankings, max_tokens=256)
    total = sum(sequence_logprobs(model, sequences, batch_size=16))
    tokens = sum(len(ids) - start for ids, start in sequences)
    del model
    release_memory()
    return -total / tokens


def rule_results(model_path: str, rows: list[dict], sampling) -> dict:
    answers = [a[0] for a in answers_of(model_path, rows, sampling, seeds=[sampling.seed])]
    results = {}
    for rule, score in RULES.items():
        scores = [score(a.text, row["lang"], row["answer"]) for a, row in zip(answers, rows, strict=True)]
        results[rule] = scores
    return {"scores": results, "mean_tokens": sum(len(a.token_ids) for a in answers) / len(answers)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="base checkpoint (default: the SmolLM2 checkpoint under var/models)")
    parser.add_argument("--variants", default="full;lora;lora:learning_rate=5e-4", help="';'-separated")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sft_lora.json")
    args = parser.parse_args(argv)
    base = args.model or default_model()
    if base is None:
        parser.error("no checkpoint under var/models: run `make run` once, or pass --model PATH")
    variants = [variant_parse(v.strip()) for v in args.variants.split(";") if v.strip()]

    import torch

    from training.ml.evaluate import sampling_from
    from training.ml.sft import SFTStageConfig, train_sft

    torch.set_num_threads(args.threads)
    defaults = round_defaults()
    train, held_out = split_bank(bank_load(BANK), 0)
    records = [{"messages": [*conversation(row), {"role": "assistant", "content": row["answer"]}]} for row in train]
    sampling = sampling_from(defaults["evaluate"])
    report = {"model": base, "demonstrations": len(records), "held_out_prompts": len(held_out), "variants": {}}
    report["variants"]["base"] = {
        "reference_loss": reference_loss(base, held_out),
        **rule_results(base, held_out, sampling),
    }
    with tempfile.TemporaryDirectory(prefix="yushan-sft-lora-") as tmp:
        for name, settings in variants:
            folder = str(Path(tmp) / name.replace(":", "_").replace(",", "_"))
            started = time.perf_counter()
            metrics = train_sft(records, base, folder, SFTStageConfig(**{**defaults["sft"], **settings}))
            seconds = time.perf_counter() - started
            result = {"settings": settings, "seconds": seconds, "seconds_per_step": seconds / max(1, metrics["steps"])}
            result.update(metrics=metrics, reference_loss=reference_loss(folder, held_out))
            result.update(rule_results(folder, held_out, sampling))
            report["variants"][name] = result
            print(f"{name}: {seconds:.0f} s, held-out reference loss {result['reference_loss']:.3f}", flush=True)
    table_print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    print(f"\nreport: {args.out}")
    return 0


def table_print(report: dict) -> None:
    from benchmarks.closed_loop_teachers import interval_summary

    variants = report["variants"]
    reference = variants.get("full")
    print(f"\n{report['demonstrations']} demonstrations, {report['held_out_prompts']} held-out prompts")
    print("| variant | s (s/step) | held-out reference loss | " + " | ".join(RULES) + " | tokens |")
    print("|---|---|---|" + "---|" * len(RULES) + "---|")
    for name, result in variants.items():
        cells = []
        for rule in RULES:
            text = interval_text(interval_summary(result["scores"][rule]))
            if reference is not None and name not in ("full", "base"):
                text += f", vs full {interval_text(paired_difference(result['scores'][rule], reference['scores'][rule]), True)}"
            cells.append(text)
        timing = "-" if "seconds" not in result else f"{result['seconds']:.0f} ({result['seconds_per_step']:.2f})"
        print(
            f"| {name} | {timing} | {result['reference_loss']:.3f} | "
            + " | ".join(cells)
            + f" | {result['mean_tokens']:.1f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
