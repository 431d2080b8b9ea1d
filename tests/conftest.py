"""Shared fixtures: tiny random checkpoints that load through ``core.models.load_model(str(dir))``.

The tokenizer is a byte-level BPE trained in memory on a few sentences, so the fixtures need neither
the network nor the embedded model's cache, and build in well under a second.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import pytest
from tiny_tokenizer import build_tiny_tokenizer

# The suite compares exact tokens between code paths on tiny random models, whose near-tied logits
# would make those comparisons depend on bf16 rounding; the CPU's default dtype (bf16 where the CPU
# has AMX) has tests of its own in tests/test_models.py and tests/test_generate.py.
os.environ["TITLECRAFT_DTYPE"] = "float32"

def _save_checkpoint(folder, model, tokenizer, template: str):
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    (folder / "titlecraft.json").write_text(json.dumps({"name": folder.name, "template": template}))
    return folder


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A 2-layer random LlamaForCausalLM (hidden 32, grouped-query attention) with a chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer(chat=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    return _save_checkpoint(tmp_path_factory.mktemp("tiny-llama"), model, tokenizer, "chat")


@pytest.fixture(scope="session")
def tiny_gptneo_dir(tmp_path_factory):
    """A 2-layer random GPTNeoForCausalLM (one global, one local attention layer), completion template."""
    import torch
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    tokenizer = build_tiny_tokenizer(chat=False)
    config = GPTNeoConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        attention_types=[[["global", "local"], 1]],
        window_size=256,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPTNeoForCausalLM(config)
    return _save_checkpoint(tmp_path_factory.mktemp("tiny-gptneo"), model, tokenizer, "completion")


@contextmanager
def _model_call_lengths(model):
    """Record the input length of every forward call of ``model``: a prompt run has more than one
    token, a decode step exactly one."""
    lengths: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: lengths.append(kwargs["input_ids"].shape[-1]), with_kwargs=True
    )
    try:
        yield lengths
    finally:
        hook.remove()


@pytest.fixture
def model_call_lengths():
    """``with model_call_lengths(model) as lengths:`` records the input length of each forward call."""
    return _model_call_lengths
