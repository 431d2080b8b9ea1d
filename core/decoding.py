"""Token-level decoding of N candidate rows that share one prompt.

The prompt is run through the model once (batch of one); its KV cache is then expanded to N rows, so a
batch of N candidates costs one prefill, not N. The last prompt's prefill is kept, which makes the
refill passes and the TUI's "more" start decoding at once, and lets the next abstract skip the prompt
tokens it shares with the previous one.

A decoder yields, step by step, every row's next token and its log-probability as Python lists; it does
not know about text, stops or cancellation: the caller simply stops iterating.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from core.sampling import SHORTLIST, TokenSampler, choose_tokens

StepTokens = tuple[list[int], list[float]]


class Decoder(Protocol):
    """Yields (tokens, log-probabilities) per step, one entry per row, at most ``max_new_tokens`` times."""

    def sample(
        self, prompt_ids: Sequence[int], rows: int, max_new_tokens: int, sampler: TokenSampler
    ) -> Iterator[StepTokens]: ...

    def prefill(self, prompt_ids: Sequence[int]) -> None:
        """Run the prompt now and keep its cache, so that sampling from it starts decoding at once."""

    def release(self) -> None:
        """Drop cached tensors (after an out-of-memory error, before the allocator's cache is emptied)."""


@dataclass
class Prefill:
    """A prompt's KV cache (batch of one) and the logits that predict its first new token."""

    prompt_ids: tuple[int, ...]
    cache: object
    last_logits: torch.Tensor  # (1, vocab)


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def last_logits_kwargs(model) -> dict:
    """Ask for the last position's logits only where the model supports it (a prefill's biggest tensor)."""
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        return {"logits_to_keep": 1}
    return {}


def shared_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading tokens two prompts have in common."""
    count = 0
    for a, b in zip(first, second):
        if a != b:
            break
        count += 1
    return count


def copy_cache(cache):
    """A copy whose layers can be cropped or extended without touching the original.

    Shallow copies of the layers suffice: cropping, expanding and appending all assign new tensors.
    """
    copied = copy.copy(cache)
    copied.layers = [copy.copy(layer) for layer in cache.layers]
    return copied


class PrefillCache:
    """Runs prefills, keeping the most recent one. A new prompt reuses the cached keys and values of
    the tokens it shares with the previous prompt at its start (the chat template's system turn and
    instruction, few-shot examples) and only runs the rest through the model."""

    def __init__(self, model):
        self.model = model
        self.logits_kwargs = last_logits_kwargs(model)
        self._last: Prefill | None = None

    @torch.inference_mode()
    def get(self, prompt_ids: Sequence[int]) -> Prefill:
        key = tuple(prompt_ids)
        last, self._last = self._last, None
        if last is not None and last.prompt_ids == key:
            self._last = last
            return last
        cache, reused = None, 0
        if last is not None and last.cache.is_croppable:
            # At least one token must run through the model to predict the first new token.
            reused = min(shared_prefix(last.prompt_ids, key), len(key) - 1)
        if reused:
            cache = copy_cache(last.cache)
            cache.crop(reused - len(last.prompt_ids))
        del last  # free the old cache before the new one is built
        ids = torch.tensor([key[reused:]], device=model_device(self.model))
        output = self.model(input_ids=ids, past_key_values=cache, use_cache=True, **self.logits_kwargs)
        self._last = Prefill(key, output.past_key_values, output.logits[:, -1])
        return self._last

    def clear(self) -> None:
        self._last = None


@torch.inference_mode()
def expand_cache(cache, rows: int):
    """A copy of a batch-of-one cache with ``rows`` rows; the original stays intact for the next pass."""
    expanded = copy_cache(cache)
    expanded.batch_repeat_interleave(rows)
    return expanded


class EagerDecoder:
    """Plain decoding with the model's dynamic KV cache: works for every causal LM, on every device."""

    def __init__(self, model):
        self.model = model
        self.prefills = PrefillCache(model)

    def sample(
        self, prompt_ids: Sequence[int], rows: int, max_new_tokens: int, sampler: TokenSampler
    ) -> Iterator[StepTokens]:
        prefill = self.prefills.get(prompt_ids)
        cache = expand_cache(prefill.cache, rows)
        logits = prefill.last_logits.expand(rows, -1)
        for step in range(max_new_tokens):
            uniforms = sampler.uniforms(rows, logits.device)
            tokens, log_probs = choose_tokens(logits, uniforms, sampler.temperature, sampler.top_p, SHORTLIST)
            yield tokens.tolist(), log_probs.tolist()
            if step + 1 < max_new_tokens:
                logits = self._step(tokens, cache)

    def prefill(self, prompt_ids: Sequence[int]) -> None:
        self.prefills.get(prompt_ids)

    @torch.inference_mode()
    def _step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        # Every row has the same length, so no attention mask or position ids are needed.
        return self.model(input_ids=tokens.unsqueeze(-1), past_key_values=cache, use_cache=True).logits[:, -1]

    def release(self) -> None:
        self.prefills.clear()
