"""Stacked q/k/v and gate/up projections must compute what the separate ones compute."""

import warnings

import torch

from core.decoding import EagerDecoder
from core.errors import TitlecraftWarning
from core.fastpath import StaticDecoder
from core.fused import fuse_projections
from core.models import load_model
from core.sampling import TokenSampler

ABSTRACT = "We propose a simple method for learning sparse representations of graphs with neural networks."


def logits(model, input_ids):
    with torch.inference_mode():
        return model(input_ids=input_ids).logits


def test_fused_layers_compute_the_same_logits_without_copying_weights(tiny_llama_dir):
    plain, tokenizer, _ = load_model(str(tiny_llama_dir), device="cpu")
    fused, _, _ = load_model(str(tiny_llama_dir), device="cpu")
    layers = fused.config.num_hidden_layers
    parameters = sum(p.numel() for p in fused.parameters())
    assert fuse_projections(fused) == 2 * layers  # every attention and every MLP block
    assert fuse_projections(fused) == 2 * layers  # a second call fuses nothing twice
    attention = fused.model.layers[0].self_attn
    assert attention.q_proj.weight.data_ptr() == attention.qkv_weight.data_ptr()  # a view, not a copy
    assert sum(p.numel() for p in fused.parameters()) == parameters
    input_ids = torch.tensor([tokenizer(ABSTRACT)["input_ids"]])
    torch.testing.assert_close(logits(fused, input_ids), logits(plain, input_ids), rtol=1e-5, atol=1e-5)


def greedy_steps(decoder, tokenizer, steps=30):
    sampler = TokenSampler(0.0, 1.0, 0, "cpu")
    return [tokens for tokens, _ in decoder.sample(tokenizer(ABSTRACT)["input_ids"], 3, steps, sampler)]


def test_the_fast_path_fuses_and_decodes_what_the_unfused_model_decodes(tiny_llama_dir):
    plain, tokenizer, _ = load_model(str(tiny_llama_dir), device="cpu")
    model, _, _ = load_model(str(tiny_llama_dir), device="cpu")
    decoder = StaticDecoder(model, use_graphs=False)
    assert model.model.layers[0].mlp.gate_up_weight.shape[0] == 2 * model.config.intermediate_size
    expected = greedy_steps(EagerDecoder(plain), tokenizer)
    assert greedy_steps(decoder, tokenizer) == expected
    unfused = StaticDecoder(plain, use_graphs=False, fuse=False)
    assert not hasattr(plain.model.layers[0].self_attn, "qkv_weight")
    assert greedy_steps(unfused, tokenizer) == expected


def test_other_architectures_are_left_alone(tiny_gptneo_dir):
    model, _, _ = load_model(str(tiny_gptneo_dir), device="cpu")
    assert fuse_projections(model) == 0


def test_the_compiled_step_compiles_the_fused_layers_whole(tiny_llama_dir):
    # A fused forward that broke the full-graph compile would silently cost the GPU its compiled step.
    plain, tokenizer, _ = load_model(str(tiny_llama_dir), device="cpu")
    model, _, _ = load_model(str(tiny_llama_dir), device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", TitlecraftWarning)  # the fallback warns
        decoder = StaticDecoder(model, use_graphs=False, compile_step=True)
        assert greedy_steps(decoder, tokenizer, steps=12) == greedy_steps(EagerDecoder(plain), tokenizer, steps=12)
    assert decoder.compile_step
