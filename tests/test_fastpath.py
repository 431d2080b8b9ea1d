"""The static-cache fast path (run eagerly on CPU) must decode exactly what the plain decoder decodes."""

from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core import fastpath
from core.decoding import EagerDecoder, PrefillCache, shared_prefix
from core.errors import TitlecraftWarning
from core.fastpath import (
    CAPACITY_STEP,
    PROMPT_STEP,
    DecodeSession,
    PaddedPrefill,
    StaticDecoder,
    cache_capacity,
    prompt_bucket,
    supports_fast_path,
)
from core.generate import SamplingParams, TitleGenerator
from core.models import load_model
from core.sampling import SHORTLIST, TokenSampler, choose_tokens

ABSTRACT = "We propose a simple method for learning sparse representations of graphs with neural networks."


@pytest.fixture(scope="module")
def tiny_llama(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


def decode(decoder, prompt_ids, rows, steps, temperature=0.0, seed=0):
    sampler = TokenSampler(temperature, 0.9, seed, "cpu")
    return [tokens for tokens, _ in decoder.sample(prompt_ids, rows, steps, sampler)]


def test_supported_architectures(tiny_llama, tiny_gptneo_dir):
    assert supports_fast_path(tiny_llama[0])
    gptneo, _, _ = load_model(str(tiny_gptneo_dir), device="cpu")
    assert not supports_fast_path(gptneo)  # its local attention is computed from the cache length


def test_greedy_tokens_equal_the_eager_path(tiny_llama):
    model, tokenizer, _ = tiny_llama
    prompt_ids = tokenizer(ABSTRACT)["input_ids"]
    eager = decode(EagerDecoder(model), prompt_ids, rows=3, steps=40)
    fast = decode(StaticDecoder(model, use_graphs=False), prompt_ids, rows=3, steps=40)
    assert fast == eager
    assert len({tuple(step) for step in eager}) > 5  # the model does not just repeat one token


def test_sampled_tokens_equal_the_eager_path_for_the_same_seed(tiny_llama):
    model, tokenizer, _ = tiny_llama
    prompt_ids = tokenizer(ABSTRACT)["input_ids"]
    eager = decode(EagerDecoder(model), prompt_ids, rows=4, steps=20, temperature=0.8, seed=11)
    fast = decode(StaticDecoder(model, use_graphs=False), prompt_ids, rows=4, steps=20, temperature=0.8, seed=11)
    assert fast == eager
    assert any(len(set(step)) > 1 for step in eager)  # the rows are sampled apart


def test_generator_results_equal_on_both_paths(tiny_llama):
    model, tokenizer, info = tiny_llama
    params = SamplingParams(n=4, seed=5, max_new_tokens=12)
    eager = TitleGenerator(model, tokenizer, info, decoder=EagerDecoder(model)).generate(ABSTRACT, params)
    fast = TitleGenerator(model, tokenizer, info, decoder=StaticDecoder(model, use_graphs=False)).generate(
        ABSTRACT, params
    )
    assert [c.text for c in fast.candidates] == [c.text for c in eager.candidates]
    assert [c.score for c in fast.candidates] == pytest.approx([c.score for c in eager.candidates], abs=1e-4)


def test_prompts_of_similar_length_reuse_the_same_graphs(tiny_llama):
    model, tokenizer, _ = tiny_llama
    decoder = StaticDecoder(model, use_graphs=False)
    short = tokenizer(ABSTRACT)["input_ids"]
    longer = tokenizer(ABSTRACT + " It scales.")["input_ids"]
    assert prompt_bucket(len(short)) == prompt_bucket(len(longer)) == PROMPT_STEP
    assert cache_capacity(len(short), 8) == cache_capacity(len(longer), 8) == CAPACITY_STEP
    decode(decoder, short, rows=2, steps=8)
    decode(decoder, longer, rows=2, steps=8)
    assert list(decoder.prefills) == [PROMPT_STEP]
    assert list(decoder.sessions) == [(2, CAPACITY_STEP, True)]
    long_prompt = tokenizer(" ".join([ABSTRACT] * 8))["input_ids"]
    first = decode(decoder, long_prompt, rows=2, steps=8)
    assert list(decoder.prefills) == [PROMPT_STEP, prompt_bucket(len(long_prompt))]
    assert list(decoder.sessions) == [(2, CAPACITY_STEP, True), (2, cache_capacity(len(long_prompt), 8), True)]
    # Reused buffers are reset completely: the long prompt again, after a short one, gives the same tokens.
    decode(decoder, short, rows=2, steps=8)
    assert decode(decoder, long_prompt, rows=2, steps=8) == first
    assert first == decode(EagerDecoder(model), long_prompt, rows=2, steps=8)


def test_a_new_prompt_reuses_the_prefill_of_the_shared_start(tiny_llama):
    model, tokenizer, _ = tiny_llama
    first = tokenizer(ABSTRACT)["input_ids"]
    second = tokenizer(ABSTRACT + " It also scales to large graphs.")["input_ids"]
    reused = PrefillCache(model)
    reused.get(first)
    lengths = []
    hook = model.model.embed_tokens.register_forward_hook(lambda module, args, out: lengths.append(args[0].shape[1]))
    try:
        prefill = reused.get(second)
    finally:
        hook.remove()
    shared = shared_prefix(first, second)
    assert shared > 10 and lengths == [len(second) - shared]
    fresh = PrefillCache(model).get(second)
    assert torch.allclose(prefill.last_logits, fresh.last_logits, atol=1e-5)
    assert reused.get(first[:shared]).cache.get_seq_length() == shared  # a prefix of the last prompt


class HostReads(TorchDispatchMode):
    """Records the operations that make a GPU wait for the host to read a value, which a CUDA graph
    cannot capture: .item(), bool(tensor), .tolist(), and shapes that depend on values."""

    SYNCING = {
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.nonzero.default,
        torch.ops.aten.masked_select.default,
        torch.ops.aten.equal.default,
    }

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.SYNCING:
            self.seen.append(func)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("greedy", [False, True])
def test_the_captured_functions_never_read_values_on_the_host(tiny_llama, greedy):
    model, tokenizer, _ = tiny_llama
    prompt_ids = tokenizer(ABSTRACT)["input_ids"]
    sampler = TokenSampler(0.0 if greedy else 0.8, 0.9, 0, "cpu")
    with torch.inference_mode():
        padded = PaddedPrefill(model, prompt_bucket(len(prompt_ids)), use_graphs=False)
        prefill = padded.run(prompt_ids)
        session = DecodeSession(model, 2, CAPACITY_STEP, prefill, greedy, use_graphs=False)
        session.start(prefill, sampler)
        with HostReads() as reads:
            padded._forward()
            session.step()
    assert reads.seen == []
    assert session.position.item() == len(prompt_ids) + 1
    with HostReads() as reads:  # the detector detects: the eager sampler's shortlist reads on the host
        choose_tokens(prefill.last_logits, torch.rand(1), 0.8, 0.9, shortlist=SHORTLIST)
    assert reads.seen


def test_a_failed_compilation_falls_back_with_a_warning(tiny_llama, monkeypatch):
    model, tokenizer, _ = tiny_llama
    prompt_ids = tokenizer(ABSTRACT)["input_ids"]

    def failing_compile(function, **options):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", failing_compile)
    decoder = StaticDecoder(model, use_graphs=False, compile_step=True)
    with pytest.warns(TitlecraftWarning, match="without a compiled decode step: it failed with RuntimeError"):
        tokens = decode(decoder, prompt_ids, rows=2, steps=6)
    assert not decoder.compile_step
    assert tokens == decode(EagerDecoder(model), prompt_ids, rows=2, steps=6)


def test_a_failed_prefill_capture_keeps_the_decode_graphs(tiny_llama, monkeypatch):
    model, tokenizer, _ = tiny_llama
    prompt_ids = tokenizer(ABSTRACT)["input_ids"]

    def capture_all_but_the_prefill(function, device):
        if function.__name__ == "_forward":
            raise RuntimeError("capture failed")
        return SimpleNamespace(replay=function)  # replaying a graph runs what it recorded

    monkeypatch.setattr(fastpath, "capture", capture_all_but_the_prefill)
    decoder = StaticDecoder(model, use_graphs=True)
    with pytest.warns(TitlecraftWarning, match="without a CUDA graph for the prefill: it failed with RuntimeError"):
        tokens = decode(decoder, prompt_ids, rows=2, steps=6)
    assert not decoder.graph_prefill and decoder.graph_decode
    assert [session.graph is not None for session in decoder.sessions.values()] == [True]
    assert tokens == decode(EagerDecoder(model), prompt_ids, rows=2, steps=6)
