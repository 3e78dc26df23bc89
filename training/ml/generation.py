"""Sampling answers from a policy checkpoint, batched across prompts.

A Generator loads a model once; `generator_for(path)` keeps a few per process, so a worker that
runs many generation tasks (or a web process serving the playground) loads each model once.
Prompts are left-padded into batches (one prompt at a time is 3–4× slower on CPU), generation
stops at the end-of-turn token, and every Sample records the seed of the batch that drew it.

transformers is the default backend. Where `vllm` imports and CUDA is present, `backend="auto"`
picks vLLM behind the same interface.
"""

import difflib
import functools
import gc
import importlib.util
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from training.ml.chat_template import end_of_turn_ids, render
from training.ml.decoding import sample_batch
from training.ml.options import SEED_RANGE, setting

OnStep = Callable[[], None]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = setting(0.8, "sampling temperature (0: greedy)", range=(0, 10))
    top_p: float = setting(
        0.95,
        "nucleus sampling: the smallest set of tokens with this much probability",
        range=(0, 1),
        min_exclusive=True,
    )
    # 50 is what transformers applied when none was given, and what answers were drawn with so far.
    top_k: int = setting(50, "sample from the k likeliest tokens only (0: no top-k cut)", range=(0, 1_000_000))
    max_new_tokens: int = setting(256, "tokens sampled per answer at most", range=(1, 32768))
    repetition_penalty: float = setting(1.0, "1: none", range=(0, 10), min_exclusive=True)
    seed: int = setting(0, range=SEED_RANGE)

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0 (0 means greedy).")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1].")
        if self.top_k < 0 or self.max_new_tokens < 1 or self.repetition_penalty <= 0:
            raise ValueError("top_k >= 0, max_new_tokens >= 1 and repetition_penalty > 0 are required.")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    text: str
    finish_reason: str  # "stop": the model ended its turn; "length": cut at max_new_tokens
    new_tokens: int
    seed: int  # seed of the batch (transformers) or of this request (vLLM) that drew it
    attempt: int = 0  # 0 for the first draw, n for the n-th resampling of a duplicate


def default_cpu_threads() -> int:
    """All cores but one: the web server and the other worker need one."""
    return max(1, (os.cpu_count() or 2) - 1)


def pick_device() -> tuple[str, str]:
    """CUDA with bf16 where supported (else fp16), otherwise CPU float32."""
    import torch

    if torch.cuda.is_available():
        return "cuda", "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "cpu", "float32"


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that compute in bf16 natively


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 is emulated
    and slower than float32. Read from /proc/cpuinfo once per process (every sampling call asks),
    so False off Linux."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in CPU_BF16_FLAGS)


def pick_sampling_device() -> tuple[str, str]:
    """Where and in what precision to sample answers: as pick_device, but bf16 on a CPU that computes
    in bf16 natively, as on a GPU. Sampling is decoding-bound, and on such a CPU bf16 halves it
    (SmolLM2, 64 answers of 48 tokens, 2 cores: 15.7 s against 31.6 s). Training, the reward
    model's scores and log-probabilities stay in pick_device's precision."""
    device, dtype = pick_device()
    if device == "cpu" and cpu_has_native_bf16():
        return device, "bfloat16"
    return device, dtype


def for_sampling(model):
    """`model` in pick_sampling_device's precision: itself where that is its own, else a copy (the
    policy a trainer holds in float32 is sampled from a bf16 copy on such a CPU)."""
    import copy

    import torch

    dtype = getattr(torch, pick_sampling_device()[1])
    if next(model.parameters()).dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype).eval()


def vllm_usable() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


class BaseGenerator:
    backend = "base"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock = threading.Lock()  # one generation at a time per loaded model

    def generate(
        self, conversations: list[list[dict]], params: SamplingParams, *, seed: int, on_step: OnStep | None = None
    ) -> list[Sample]:
        """One sample per conversation. `on_step` is called as decoding goes (every token with
        transformers); it may raise to abort, e.g. when the job was cancelled."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.backend, "path": str(self.path)}

    def sample_distinct(
        self,
        conversations: list[list[dict]],
        k: int,
        params: SamplingParams,
        *,
        max_resamples: int = 3,
        on_step: OnStep | None = None,
    ) -> list[list[Sample]]:
        """K distinct, non-empty answers per conversation.

        Empty answers, answers with invalid text (a U+FFFD replacement character: bytes that are
        no UTF-8) and near-duplicates of an answer already kept (answer_near_duplicate) are drawn
        again, at most `max_resamples` more times; a conversation that still has fewer than K
        comes back short and the caller decides (generation skips it rather than show a padded task).
        """
        kept: list[list[Sample]] = [[] for _ in conversations]
        for attempt in range(max_resamples + 1):
            wanted = [index for index, answers in enumerate(kept) for _ in range(k - len(answers))]
            if not wanted:
                break
            seed = params.seed + attempt * 1_000_003
            samples = self.generate([conversations[i] for i in wanted], params, seed=seed, on_step=on_step)
            for index, sample in zip(wanted, samples, strict=True):
                sample.attempt = attempt
                if len(kept[index]) < k and answer_acceptable(sample.text, kept[index]):
                    kept[index].append(sample)
        return kept


REPLACEMENT_CHARACTER = "\ufffd"
NEAR_DUPLICATE_RATIO = 0.9


def answer_text_clean(text: str) -> str:
    """Decoded answer text without a cut-off last character: byte-level BPE splits a CJK character
    over several tokens, so an answer cut at max_new_tokens can end in the first bytes of one,
    which decode to U+FFFD. Those are dropped; whitespace is trimmed."""
    return text.strip().rstrip(REPLACEMENT_CHARACTER).strip()


def _normalised(text: str) -> str:
    kept = (c for c in unicodedata.normalize("NFKC", text).casefold() if unicodedata.category(c)[0] in "LNS")
    return "".join(kept)


def answer_near_duplicate(a: str, b: str) -> bool:
    """The same answer but for case, spacing and punctuation (「玉山。」 and 「玉山」), or nine tenths
    the same characters (difflib's ratio): annotators cannot rank two of those against each other."""
    a, b = _normalised(a), _normalised(b)
    if a == b:
        return True
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= NEAR_DUPLICATE_RATIO


def answer_acceptable(text: str, kept: list["Sample"]) -> bool:
    """Worth showing beside `kept`: not empty, valid text, and no near-duplicate of one of them."""
    if not text or REPLACEMENT_CHARACTER in text:
        return False
    return not any(answer_near_duplicate(text, other.text) for other in kept)


class TransformersGenerator(BaseGenerator):
    backend = "transformers"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 16,
        max_prompt_tokens: int = 1536,
        cpu_threads: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().__init__(path)
        auto_device, auto_dtype = pick_sampling_device()
        self.device = device or auto_device
        self.dtype = dtype or (auto_dtype if self.device == auto_device else "float32")
        if self.device == "cpu" and cpu_threads:
            # Process-wide. More threads than free cores makes torch's spinning threads fight:
            # measured 3.7x slower with 2 threads than with 1 on a busy 2-core machine.
            torch.set_num_threads(cpu_threads)
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.tokenizer.padding_side = "left"  # new tokens must follow every prompt directly
        self.tokenizer.truncation_side = "left"  # a very long conversation keeps its latest turns
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, self.dtype))
        self.model.to(self.device).eval()
        self.stop_ids = end_of_turn_ids(self.tokenizer)
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.stop_ids[0]

    def describe(self) -> dict:
        return {**super().describe(), "device": self.device, "dtype": self.dtype, "batch_size": self.batch_size}

    def generate(
        self, conversations: list[list[dict]], params: SamplingParams, *, seed: int, on_step: OnStep | None = None
    ) -> list[Sample]:
        """One sample per conversation, in batches of similar length (less padding)."""
        texts = [render(self.tokenizer, messages, add_generation_prompt=True) for messages in conversations]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        results: list[Sample | None] = [None] * len(texts)
        with self.lock:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                chunk_seed = seed + start
                samples = self._generate_batch([texts[i] for i in chunk], params, chunk_seed, on_step)
                for index, sample in zip(chunk, samples, strict=True):
                    results[index] = sample
        return results

    def _generate_batch(
        self, texts: list[str], params: SamplingParams, seed: int, on_step: OnStep | None
    ) -> list[Sample]:
        inputs = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_prompt_tokens,
            add_special_tokens=False,
        ).to(self.device)
        new_tokens = sample_batch(
            self.model,
            inputs["input_ids"],
            inputs["attention_mask"],
            params,
            stop_ids=self.stop_ids,
            seed=seed,
            on_step=on_step,
        )
        return [self._sample(tokens, seed) for tokens in new_tokens]

    def _sample(self, tokens: list[int], seed: int) -> Sample:
        stop = next((i for i, token in enumerate(tokens) if token in self.stop_ids), None)
        kept = tokens if stop is None else tokens[:stop]
        text = answer_text_clean(self.tokenizer.decode(kept, skip_special_tokens=True))
        return Sample(
            text=text,
            finish_reason="length" if stop is None else "stop",
            new_tokens=len(tokens) if stop is None else stop + 1,
            seed=seed,
        )


class VLLMGenerator(BaseGenerator):
    """vLLM on a GPU worker: same interface, one seed per request."""

    backend = "vllm"

    def __init__(self, path: str | os.PathLike, *, dtype: str | None = None, gpu_memory_utilization: float = 0.5):
        from vllm import LLM

        super().__init__(path)
        self.dtype = dtype or pick_device()[1]
        self.llm = LLM(model=str(path), dtype=self.dtype, gpu_memory_utilization=gpu_memory_utilization)
        self.tokenizer = self.llm.get_tokenizer()
        self.stop_ids = end_of_turn_ids(self.tokenizer)

    def describe(self) -> dict:
        return {**super().describe(), "device": "cuda", "dtype": self.dtype}

    def generate(
        self, conversations: list[list[dict]], params: SamplingParams, *, seed: int, on_step: OnStep | None = None
    ) -> list[Sample]:
        from vllm import SamplingParams as VLLMSamplingParams

        if on_step:
            on_step()  # vLLM runs the whole batch at once: check before starting it

        prompts = [
            {
                "prompt_token_ids": self.tokenizer(
                    render(self.tokenizer, m, add_generation_prompt=True), add_special_tokens=False
                )["input_ids"]
            }
            for m in conversations
        ]
        greedy = params.temperature == 0
        requests = [
            VLLMSamplingParams(
                n=1,
                temperature=params.temperature,
                top_p=1.0 if greedy else params.top_p,
                top_k=params.top_k or -1,
                max_tokens=params.max_new_tokens,
                repetition_penalty=params.repetition_penalty,
                seed=seed + i,
                stop_token_ids=self.stop_ids,
            )
            for i in range(len(prompts))
        ]
        with self.lock:
            outputs = self.llm.generate(prompts, requests, use_tqdm=False)
        samples = []
        for i, output in enumerate(outputs):
            completion = output.outputs[0]
            samples.append(
                Sample(
                    text=answer_text_clean(completion.text),
                    finish_reason="stop" if completion.finish_reason == "stop" else "length",
                    new_tokens=len(completion.token_ids),
                    seed=seed + i,
                )
            )
        return samples


# --- one loaded model per path, per process ---------------------------------------------------

_cache: OrderedDict[tuple, BaseGenerator] = OrderedDict()
_cache_lock = threading.Lock()


def generator_for(path: str | os.PathLike, *, backend: str = "auto", cache_size: int = 2, **options) -> BaseGenerator:
    """The loaded generator for this checkpoint, loading it on first use.

    Keeps the `cache_size` most recently used models (the arena needs two at once); older ones
    are dropped to bound memory.
    """
    if backend == "auto":
        backend = "vllm" if vllm_usable() else "transformers"
    key = (str(Path(path).resolve()), backend, tuple(sorted(options.items())))
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        generator = VLLMGenerator(path, **options) if backend == "vllm" else TransformersGenerator(path, **options)
        _cache[key] = generator
        while len(_cache) > max(cache_size, 1):
            _cache.popitem(last=False)
            _free_memory()
        return generator


def generators_clear() -> None:
    with _cache_lock:
        _cache.clear()
    _free_memory()


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
