"""Token choice: nucleus membership, draw frequencies, the shortlist shortcut, untempered scores."""

import math

import pytest
import torch

from core.sampling import TokenSampler, choose_tokens, sample_nucleus


def test_nucleus_is_the_smallest_set_reaching_top_p_and_draws_are_renormalised():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    uniforms = (torch.arange(1000) + 0.5) / 1000
    tokens = torch.cat([sample_nucleus(probs, u.view(1), 0.8) for u in uniforms])
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts == [0, 625, 0, 375]  # {1, 3} holds 0.8; within it 0.5/0.8 and 0.3/0.8
    assert sample_nucleus(probs, torch.tensor([0.99]), 0.81).item() == 0  # 0.81 needs the third token


def test_shortlist_gives_the_same_tokens_as_a_full_sort():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5000, generator=generator) * 4
    probs = torch.softmax(logits, dim=-1)
    uniforms = torch.rand(64, generator=generator)
    full = sample_nucleus(probs, uniforms, 0.9)
    assert torch.equal(sample_nucleus(probs, uniforms, 0.9, shortlist=256), full)  # the shortlist suffices
    flat = torch.softmax(torch.randn(64, 5000, generator=generator) * 0.1, dim=-1)
    assert torch.equal(sample_nucleus(flat, uniforms, 0.9, shortlist=256), sample_nucleus(flat, uniforms, 0.9))


def test_greedy_and_scores_are_untempered():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    tokens, log_probs = choose_tokens(logits, None, 0.0, 0.95)
    assert tokens.tolist() == [1, 2]
    expected = torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(log_probs, expected)
    sampled, sampled_log_probs = choose_tokens(logits, torch.tensor([0.0, 0.0]), 0.3, 1.0)
    assert sampled.tolist() == [1, 2]  # u = 0 picks the most likely token
    assert sampled_log_probs[0].item() == pytest.approx(math.log(math.exp(3) / (math.e + math.exp(3) + math.exp(2))))


def test_sampler_streams_are_reproducible():
    first, second = TokenSampler(0.8, 0.9, 3, "cpu"), TokenSampler(0.8, 0.9, 3, "cpu")
    assert torch.equal(first.uniforms(4, torch.device("cpu")), second.uniforms(4, torch.device("cpu")))
    assert TokenSampler(0.0, 0.9, 3, "cpu").uniforms(4, torch.device("cpu")) is None


def test_greedy_rows_draw_zero_and_leave_the_other_rows_stream_unchanged():
    plain, pinned = TokenSampler(0.8, 0.9, 3, "cpu"), TokenSampler(0.8, 0.9, 3, "cpu")
    pinned.greedy_rows = 1
    expected, draws = plain.uniforms(4, torch.device("cpu")), pinned.uniforms(4, torch.device("cpu"))
    assert draws[0].item() == 0.0 and torch.equal(draws[1:], expected[1:])
