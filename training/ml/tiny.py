"""Tiny random Llama models with the SmolLM2 tokenizer, for tests and CI.

Same tokenizer and chat template as the real base model, a few small layers, random weights:
it loads in a second and generates nonsense quickly, which is all a test of the plumbing needs.
"""

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from training.ml import checkpoints


@dataclass
class TinyConfig:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    seed: int = 0


def load_smollm2_tokenizer(source: str | os.PathLike | None = None):
    """The SmolLM2 tokenizer: from a checkpoint folder, or else from the bundled GGUF."""
    from transformers import AutoTokenizer

    if source is not None:
        return AutoTokenizer.from_pretrained(str(source))
    gguf = checkpoints.bundled_gguf_path()
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def build_tiny_model(destination: str | os.PathLike, *, config: TinyConfig | None = None, tokenizer=None) -> Path:
    """Write a tiny random LlamaForCausalLM and the SmolLM2 tokenizer to `destination`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = config or TinyConfig()
    tokenizer = tokenizer or load_smollm2_tokenizer()
    torch.manual_seed(config.seed)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=end_of_turn,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_of_turn,
    )
    model = LlamaForCausalLM(model_config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=model_config.bos_token_id, eos_token_id=end_of_turn, pad_token_id=model_config.pad_token_id
    )
    source = {"format": "tiny-random", "config": asdict(config)}
    return checkpoints.save_checkpoint(model, tokenizer, Path(destination), source)
