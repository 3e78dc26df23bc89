"""Batched generation versus one prompt at a time, on the same prompts and model.

    .venv/bin/python benchmarks/generate_throughput.py [--model PATH] [--prompts 16] [--max-new-tokens 64]

Default model: the converted SmolLM2 base in MODEL_STORE (run `python manage.py
register_base_model` once to make it). Prompts: the demo project's, cycled to --prompts.

Both runs use training.ml.generation.TransformersGenerator with the same sampling parameters;
the batched one left-pads --batch-size prompts into each forward pass, the sequential one passes
one prompt at a time. Tokens counted are the answers' real tokens (up to and including the
end-of-turn token), not padding. A short warm-up runs first so neither side pays for it.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.ml.generation import SamplingParams, TransformersGenerator, default_cpu_threads  # noqa: E402

DEMO_PROMPTS = ROOT / "labeling" / "demo" / "demo_prompts.jsonl"


def default_model() -> Path:
    store = Path(os.environ.get("MODEL_STORE", ROOT / "var" / "models"))
    found = sorted((store / "base").glob("SmolLM2-135M-Instruct*/config.json"))
    if not found:
        sys.exit(
            f"No converted SmolLM2 under {store / 'base'}: run `python manage.py register_base_model` first, or pass --model."
        )
    return found[0].parent


def demo_conversations(count: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in DEMO_PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    conversations = [row.get("messages") or [{"role": "user", "content": row["prompt"]}] for row in rows]
    return [conversations[i % len(conversations)] for i in range(count)]


def timed(generator: TransformersGenerator, conversations, params: SamplingParams) -> tuple[int, float]:
    started = time.perf_counter()
    samples = generator.generate(conversations, params, seed=params.seed)
    return sum(s.new_tokens for s in samples), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="Checkpoint folder (default: SmolLM2 in MODEL_STORE).")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=default_cpu_threads(), help="Torch CPU threads (default: all cores but one)."
    )
    args = parser.parse_args()

    model = args.model or default_model()
    conversations = demo_conversations(args.prompts)
    params = SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed)
    batched = TransformersGenerator(model, batch_size=args.batch_size, cpu_threads=args.threads)
    sequential = TransformersGenerator(model, batch_size=1, cpu_threads=args.threads)
    print(
        f"model {model} on {batched.device} ({batched.dtype}, {args.threads} CPU threads); {len(conversations)} "
        f"prompts, max_new_tokens {args.max_new_tokens}, temperature {args.temperature}, batch size {args.batch_size}",
        flush=True,
    )
    warmup = SamplingParams(temperature=args.temperature, max_new_tokens=4, seed=args.seed)
    timed(batched, conversations[:2], warmup)
    timed(sequential, conversations[:1], warmup)

    tokens_b, seconds_b = timed(batched, conversations, params)
    rate_b = tokens_b / seconds_b
    print(f"batched     {tokens_b:6d} tokens in {seconds_b:7.1f} s = {rate_b:7.1f} tokens/s", flush=True)
    tokens_s, seconds_s = timed(sequential, conversations, params)
    rate_s = tokens_s / seconds_s
    print(f"sequential  {tokens_s:6d} tokens in {seconds_s:7.1f} s = {rate_s:7.1f} tokens/s")
    print(f"ratio       {rate_b / rate_s:.2f}x")


if __name__ == "__main__":
    main()
