"""Choosing the next token of every candidate row: greedy, or temperature plus nucleus (top-p) sampling.

A sampled token is an inverse-CDF draw: one uniform number per row, walked along the nucleus in
descending-probability order. That is plain tensor arithmetic (no ``torch.multinomial``, no host
synchronisation), so the same function runs eagerly and inside a captured CUDA graph, and the same
uniforms give the same tokens on both decoding paths. Eagerly, the nucleus is first looked for among
the ``shortlist`` most likely tokens (a partial sort): that is exact whenever they hold ``top_p`` of
the mass, the usual case for a trained model, and saves a full sort of the vocabulary on a CPU.
"""

from __future__ import annotations

import secrets

import torch

SHORTLIST = 256
# Seeds are drawn from, and given seeds must fit, 63 bits: the store keeps them in SQLite's signed 64-bit
# INTEGER, and evaluation seeds numpy's generator too, which takes no negative seed.
SEED_BITS = 63


def _descending(probs: torch.Tensor, top_p, shortlist: int | None) -> tuple[torch.Tensor, ...]:
    """(sorted probabilities, their token ids, cumulative sums), covering at least the nucleus."""
    if shortlist is not None and shortlist < probs.shape[-1]:
        top_probs, top_ids = probs.topk(shortlist, dim=-1)
        cumulative = top_probs.cumsum(dim=-1)
        if bool((cumulative[:, -1] >= top_p).all()):
            return top_probs, top_ids, cumulative
    sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
    return sorted_probs, sorted_ids, sorted_probs.cumsum(dim=-1)


def sample_nucleus(
    probs: torch.Tensor, uniforms: torch.Tensor, top_p: float | torch.Tensor, shortlist: int | None = None
) -> torch.Tensor:
    """Draw one token per row from the smallest set of most likely tokens whose mass reaches
    ``top_p``, renormalised. ``shortlist`` needs a host synchronisation: never inside a graph."""
    sorted_probs, sorted_ids, cumulative = _descending(probs, top_p, shortlist)
    # At least one token: a row of NaN probabilities (a broken model) has none below top_p, and an
    # index of -1 failed here (on a GPU, a device-side assert that ends the process's CUDA use); its
    # NaN scores are reported by the generator instead.
    nucleus_size = ((cumulative - sorted_probs) < top_p).sum(dim=-1, keepdim=True).clamp(min=1)
    nucleus_mass = cumulative.gather(-1, nucleus_size - 1)
    position = (cumulative < uniforms.unsqueeze(-1) * nucleus_mass).sum(dim=-1, keepdim=True)
    position = torch.minimum(position, nucleus_size - 1)
    return sorted_ids.gather(-1, position).squeeze(-1)


def choose_tokens(
    logits: torch.Tensor,
    uniforms: torch.Tensor | None,
    temperature: float | torch.Tensor,
    top_p: float | torch.Tensor,
    shortlist: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of ``logits`` (rows, vocab); ``uniforms`` (rows,) is None for greedy.

    Returns the tokens and their log-probabilities under the untempered model, which is what
    candidate scores average. ``temperature`` and ``top_p`` may be 0-dim tensors so that a captured
    graph reads them from buffers.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    if uniforms is None:
        tokens = log_probs.argmax(dim=-1)
    else:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        tokens = sample_nucleus(probs, uniforms, top_p, shortlist)
    return tokens, log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


class TokenSampler:
    """The sampling settings of one generation and its random stream.

    One generator serves every pass of a generation, so a refill pass continues the stream (new
    candidates) while a fixed seed reproduces the whole generation. The first ``greedy_rows`` rows
    draw 0, which picks each step's most likely token: those rows decode greedily inside a sampled
    batch, on both decoding paths, without a separate pass.
    """

    def __init__(self, temperature: float, top_p: float, seed: int | None, device: torch.device | str):
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = seed if seed is not None else secrets.randbits(SEED_BITS)
        self.greedy = self.temperature == 0.0
        self.greedy_rows = 0
        self.generator = torch.Generator(device=torch.device(device)).manual_seed(self.seed)

    def fill_uniforms(self, buffer: torch.Tensor) -> torch.Tensor:
        """Fill ``buffer`` with the next uniform draws in [0, 1) (0 for greedy rows) and return it."""
        buffer.uniform_(generator=self.generator)
        buffer[: self.greedy_rows] = 0.0
        return buffer

    def uniforms(self, rows: int, device: torch.device) -> torch.Tensor | None:
        """Fresh draws for one decoding step, or None when greedy."""
        if self.greedy:
            return None
        return self.fill_uniforms(torch.empty(rows, device=device))
