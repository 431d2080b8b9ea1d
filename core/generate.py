"""Streamed, batched generation of N candidate titles for one abstract.

One pass samples all N candidates together and streams each one's text as its tokens arrive; a
candidate stops at its own newline or end-of-sequence token (one that runs out of new tokens first is
cut off, and flagged too long). Finished candidates are cleaned, scored
(mean log-probability of their sampled tokens under the untempered model), de-duplicated, flagged and
ranked (see core.candidates). The first pass samples a few more candidates than asked for and the
result keeps N of them: a candidate's score tracks its quality, so the shown set is better than N
samples at random, and near-variants of a kept title give way to different ones (docs/evaluation.md).
When sampling repeats itself, further passes sample the missing number (continuing the same random
stream) so that the researcher gets N distinct titles.

Event indices are slots: 0..N-1 plus ``start_index``; the extra candidates stream no events. A slot whose
candidate was a repeat (or empty) gets a second finished event: a distinct extra candidate when there is
one, else what a refill pass streams into it, so a front end can show exactly N different rows; the final
ranked list arrives in the GenerationResult.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace

import torch

from core.candidates import RANKINGS, Candidate, clean_title, keep_diverse, rank_candidates, title_key
from core.decoding import Decoder, EagerDecoder, model_device
from core.errors import TitlecraftError
from core.fastpath import StaticDecoder, supports_fast_path
from core.models import DTYPE_ENV, ModelInfo
from core.prompts import EMPTY_ABSTRACT, Example, Prompt, build_prompt, normalise_whitespace
from core.sampling import SEED_BITS, TokenSampler

__all__ = [
    "Candidate",
    "CandidateEvent",
    "GenerationResult",
    "SamplingParams",
    "TitleGenerator",
    "default_decoder",
]

# Passes after the first that may sample again to replace repeated candidates.
MAX_REFILL_PASSES = 3
# Each refill pass samples this much hotter: a model that keeps repeating a title is sure of it, and
# the same temperature mostly repeats it again.
REFILL_TEMPERATURE_RISE = 0.2
# Below this a sampled step is greedy in all but arithmetic: logits divided by a temperature such as
# 1e-40 overflow to infinity and sampling failed with an index error.
MIN_SAMPLING_TEMPERATURE = 0.01
NOT_A_NUMBER = (
    "The model's token probabilities are not numbers (NaN): its weights are damaged, or its numbers "
    f"overflow in this precision. Try {DTYPE_ENV}=float32, or another model."
)
# Prompts never use more of a long context than this: titles need the abstract, not 8k tokens.
PROMPT_CONTEXT_CAP = 1024
COMPILE_STEP_ENV = "TITLECRAFT_COMPILE_STEP"


@dataclass
class SamplingParams:
    """How candidates are sampled. ``temperature == 0`` is greedy (deterministic: one candidate).
    ``greedy_first`` decodes the first candidate of a fresh set greedily: the model's most likely
    title is always on offer, and the others are sampled around it. ``oversample`` extra candidates
    are sampled alongside the N, unseen, and N of all are kept: the best-ranked, then by score with
    near-variants of a kept title penalised by ``diversity`` (0: simply the N best-ranked)."""

    n: int = 5
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 40
    seed: int | None = None
    ranking: str = "score"
    greedy_first: bool = True
    oversample: int = 3
    diversity: float = 1.5

    def __post_init__(self) -> None:
        problems = []
        if self.n < 1:
            problems.append("the number of candidates must be at least 1")
        # NaN passes every comparison, so finiteness is checked first (a NaN temperature crashed sampling).
        if not math.isfinite(self.temperature):
            problems.append("the temperature must be a finite number")
        elif self.temperature < 0:
            problems.append("the temperature must not be negative")
        elif 0 < self.temperature < MIN_SAMPLING_TEMPERATURE:
            problems.append(f"the temperature must be 0 (greedy) or at least {MIN_SAMPLING_TEMPERATURE}")
        if not 0 < self.top_p <= 1:
            problems.append("top-p must be in (0, 1]")
        if self.max_new_tokens < 1:
            problems.append("max new tokens must be at least 1")
        if self.oversample < 0:
            problems.append("the number of extra candidates must not be negative")
        if not math.isfinite(self.diversity):
            problems.append("the diversity weight must be a finite number")
        elif self.diversity < 0:
            problems.append("the diversity weight must not be negative")
        if self.ranking not in RANKINGS:
            problems.append(f"ranking must be one of {', '.join(RANKINGS)}")
        if self.seed is not None and not 0 <= self.seed < 2**SEED_BITS:  # torch overflowed with a traceback
            problems.append(f"the seed must be a whole number from 0 to 2**{SEED_BITS} - 1")
        if problems:
            raise TitlecraftError("Invalid sampling settings: " + "; ".join(problems) + ".")


@dataclass
class CandidateEvent:
    """A candidate's text so far; ``finished`` events carry the cleaned text."""

    index: int
    text: str
    finished: bool


@dataclass
class GenerationResult:
    """The ranked candidates and how the generation went; ``params.seed`` is the seed actually used."""

    candidates: list[Candidate]
    notice: str | None
    seconds: float
    first_token_seconds: float | None
    new_tokens: int
    tokens_per_second: float
    cancelled: bool
    device: str
    model: str
    params: SamplingParams


@dataclass
class _Row:
    """One sampled sequence of a pass."""

    slot: int
    token_ids: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    text: str = ""
    finished: bool = False
    cut_off: bool = False  # stopped by max_new_tokens, not at its own end

    @property
    def score(self) -> float:
        return sum(self.log_probs) / len(self.log_probs) if self.log_probs else float("-inf")


@dataclass
class _Progress:
    """What a generation has produced so far, across its passes."""

    started: float
    first_token: float | None = None
    new_tokens: int = 0
    cancelled: bool = False


def _after_label_lines(text: str) -> str:
    """``text`` from its first line that holds more than a label: instruct models often answer "Title:" or
    "**Abstract:**" and put the title on the next line, whose newline must not end the candidate."""
    while "\n" in text:
        first, rest = text.split("\n", 1)
        if clean_title(first):
            break
        text = rest.lstrip()
    return text


def compile_step_requested() -> bool:
    """Whether ``$TITLECRAFT_COMPILE_STEP`` asks the GPU fast path to compile its decode step.

    Off by default: a compiled step decodes 20 candidates about 2.4x faster on an H200 (docs/results),
    but each new (candidates, cache length) pair costs a compilation of many seconds first.
    """
    chosen = os.environ.get(COMPILE_STEP_ENV, "0")
    if chosen not in ("0", "1"):
        raise TitlecraftError(f"${COMPILE_STEP_ENV} must be 0 or 1, not {chosen!r}")
    return chosen == "1"


def default_decoder(model) -> Decoder:
    """The CUDA-graph fast path on CUDA where the architecture allows it (its decode step compiled if
    ``$TITLECRAFT_COMPILE_STEP`` is 1), plain decoding elsewhere."""
    compile_step = compile_step_requested()
    if model_device(model).type == "cuda" and supports_fast_path(model):
        return StaticDecoder(model, compile_step=compile_step)
    return EagerDecoder(model)


def stop_token_ids(tokenizer, model) -> frozenset[int]:
    """End-of-sequence ids from the tokenizer and generation config, and every special token (a title
    never contains one; a chat model's next turn marker means the reply is over)."""
    ids = set(tokenizer.all_special_ids)
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(source)
    return frozenset(ids)


class TitleGenerator:
    """Generates candidate titles with one loaded model. Passes are serialised: a new pass waits for
    the previous one, which stops within one decode step once its ``cancel`` event is set."""

    def __init__(
        self,
        model,
        tokenizer,
        info: ModelInfo,
        max_prompt_tokens: int | None = None,
        decoder: Decoder | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.max_prompt_tokens = max_prompt_tokens
        self.decoder = decoder or default_decoder(model)
        self.stop_ids = stop_token_ids(tokenizer, model)
        self.last_result: GenerationResult | None = None
        self._pass_lock = threading.Lock()
        # Fast tokenizers are not safe to call from two threads (the editor counts while a worker runs).
        self._tokenizer_lock = threading.Lock()

    def prompt_budget(self, max_new_tokens: int) -> int:
        """Tokens the prompt may use: min(context, 1024) minus the room for the title, unless set."""
        if self.max_prompt_tokens is not None:
            return self.max_prompt_tokens
        return min(self.info.context_length, PROMPT_CONTEXT_CAP) - max_new_tokens

    def build_prompt(self, abstract: str, max_new_tokens: int, examples: Sequence[Example] = ()) -> Prompt:
        budget = self.prompt_budget(max_new_tokens)
        with self._tokenizer_lock:
            try:
                return build_prompt(self.tokenizer, self.info.template, abstract, budget, examples)
            except ValueError as error:
                if self.max_prompt_tokens is None:  # the budget is what the title's tokens leave: name them
                    window = budget + max_new_tokens
                    error = (f"{max_new_tokens} new tokens leave no room for the abstract in the model's context of "
                             f"{window} tokens; ask for fewer new tokens")
                raise TitlecraftError(f"Cannot build a prompt for {self.info.name}: {error}.") from None

    def count_tokens(self, abstract: str, max_new_tokens: int = SamplingParams.max_new_tokens) -> tuple[int, int]:
        """(abstract tokens, tokens that would be dropped to fit the prompt) for the editor's live count."""
        prompt = self.build_prompt(abstract, max_new_tokens)
        return prompt.abstract_tokens, prompt.dropped_tokens

    def prefill(
        self, abstract: str, max_new_tokens: int = SamplingParams.max_new_tokens, examples: Sequence[Example] = ()
    ) -> bool:
        """Run the prompt of a generation that may follow and keep its cache, so that the generation
        starts decoding at once (the app calls this while the researcher edits). Skipped, returning
        False, for an empty abstract or while a pass runs: it never delays a generation."""
        if not normalise_whitespace(abstract):
            return False
        prompt = self.build_prompt(abstract, max_new_tokens, examples)
        if not self._pass_lock.acquire(blocking=False):
            return False
        try:
            self.decoder.prefill(prompt.input_ids)
        except torch.OutOfMemoryError:
            self._free_memory()
            return False
        finally:
            self._pass_lock.release()
        return True

    def generate(
        self,
        abstract: str,
        params: SamplingParams | None = None,
        examples: Sequence[Example] = (),
        on_event: Callable[[CandidateEvent], None] | None = None,
        cancel: threading.Event | None = None,
        start_index: int = 0,
        avoid: Sequence[str] = (),
    ) -> GenerationResult:
        """Run a generation to the end; ``on_event`` is called from this thread for every event.

        If ``on_event`` raises, the stream is closed at once: a caught error that is kept would otherwise
        keep the suspended stream, and with it the pass lock every later generation waits for.
        """
        stream = self.stream(abstract, params, examples, cancel, start_index=start_index, avoid=avoid)
        with contextlib.closing(stream):
            while True:
                try:
                    event = next(stream)
                except StopIteration as done:
                    return done.value
                if on_event is not None:
                    on_event(event)

    def stream(
        self,
        abstract: str,
        params: SamplingParams | None = None,
        examples: Sequence[Example] = (),
        cancel: threading.Event | None = None,
        *,
        start_index: int = 0,
        avoid: Sequence[str] = (),
        force_length: bool = False,
    ) -> Generator[CandidateEvent, None, GenerationResult]:
        """Yield CandidateEvents as tokens arrive; returns (and stores in ``last_result``) the result.

        ``avoid`` lists titles already shown (the TUI's "more"): candidates equal to one of them count
        as repeats. ``force_length`` samples exactly ``max_new_tokens`` tokens per candidate, ignoring
        ends, in a single pass: benchmarks use it to compare equal work.
        """
        params = params or SamplingParams()
        started = time.perf_counter()
        if not normalise_whitespace(abstract):
            raise TitlecraftError(EMPTY_ABSTRACT)
        prompt = self.build_prompt(abstract, params.max_new_tokens, examples)
        sampler = TokenSampler(params.temperature, params.top_p, params.seed, model_device(self.model))
        progress = _Progress(started)
        out_of_memory = False
        with self._pass_lock:
            try:
                drafts = yield from self._sample_distinct(
                    prompt, params, sampler, cancel, start_index, avoid, force_length, progress
                )
            except torch.OutOfMemoryError:
                out_of_memory = True
            if out_of_memory:
                self._free_memory()
                raise TitlecraftError(
                    f"The GPU ran out of memory generating {params.n} candidates: ask for fewer candidates "
                    "(or fewer new tokens)."
                )
        seconds = time.perf_counter() - started
        ranked = rank_candidates(
            [(title, score) for title, score, _ in drafts],
            normalise_whitespace(abstract),
            params.ranking,
            cut_off={title for title, _, cut_off in drafts if cut_off},
        )
        result = GenerationResult(
            candidates=keep_diverse(ranked, params.n, params.diversity),
            notice=prompt.notice,
            seconds=seconds,
            first_token_seconds=None if progress.first_token is None else progress.first_token - started,
            new_tokens=progress.new_tokens,
            tokens_per_second=progress.new_tokens / seconds if seconds > 0 else 0.0,
            cancelled=progress.cancelled,
            device=self.info.device,
            model=self.info.name,
            params=replace(params, seed=sampler.seed),
        )
        self.last_result = result
        return result

    def _free_memory(self) -> None:
        self.decoder.release()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _sample_distinct(
        self,
        prompt: Prompt,
        params: SamplingParams,
        sampler: TokenSampler,
        cancel: threading.Event | None,
        start_index: int,
        avoid: Sequence[str],
        force_length: bool,
        progress: _Progress,
    ) -> Generator[CandidateEvent, None, list[tuple[str, float, bool]]]:
        """Sample passes until N distinct cleaned titles exist (or the refill bound is reached); returns
        every distinct draft as (title, score, cut off), the extra candidates' too (slots N and up), for
        ranking to choose from."""
        seen = {title_key(clean_title(title)) for title in avoid}
        kept: dict[int, tuple[str, float, bool]] = {}
        # Greedy decoding repeats itself exactly: one row, and nothing to refill. Benchmarks
        # (force_length) compare exactly N rows of work.
        if sampler.greedy:
            open_slots = [0]
        else:
            open_slots = list(range(params.n + (0 if force_length else params.oversample)))
        # "More titles" (something to avoid) wants new ones: the greedy title was already shown.
        sampler.greedy_rows = 1 if params.greedy_first and not avoid else 0
        for _ in range(1 + MAX_REFILL_PASSES):
            rows = yield from self._sample_pass(
                prompt, open_slots, params, sampler, cancel, start_index, force_length, progress
            )
            if any(math.isnan(row.score) for row in rows):
                raise TitlecraftError(NOT_A_NUMBER)
            sampler.greedy_rows = 0  # a refill replaces repeats of it
            sampler.temperature += REFILL_TEMPERATURE_RISE
            for row in rows:
                title = clean_title(row.text)
                key = title_key(title)
                if key and key not in seen:  # an empty title is no title: its slot is refilled
                    seen.add(key)
                    kept[row.slot] = (title, row.score, row.cut_off)
            if progress.cancelled:
                # Stopped: the rows on screen, as far as they got, are what is kept; the unseen extra
                # candidates (cut short too) never were on screen and must not replace them.
                return [kept[slot] for slot in sorted(kept) if slot < params.n]
            if not force_length:
                yield from self._fill_repeats_from_extras(kept, params.n, start_index)
            missing = params.n - len(kept)
            if missing <= 0 or force_length or sampler.greedy:
                break
            # Refill into the shown slots that hold a repeat (there are at least `missing` of them).
            open_slots = [slot for slot in range(params.n) if slot not in kept][:missing]
        return [kept[slot] for slot in sorted(kept)]

    @staticmethod
    def _fill_repeats_from_extras(
        kept: dict[int, tuple[str, float, bool]], n: int, start_index: int
    ) -> Generator[CandidateEvent, None, None]:
        """Move distinct unseen extra candidates into the shown slots that hold a repeat (or nothing), so
        that the streamed rows end as N different titles without a refill pass."""
        repeats = [slot for slot in range(n) if slot not in kept]
        extras = [slot for slot in sorted(kept) if slot >= n]
        for slot, extra in zip(repeats, extras, strict=False):
            kept[slot] = kept.pop(extra)
            yield CandidateEvent(start_index + slot, kept[slot][0], True)

    def _sample_pass(
        self,
        prompt: Prompt,
        slots: Sequence[int],
        params: SamplingParams,
        sampler: TokenSampler,
        cancel: threading.Event | None,
        start_index: int,
        force_length: bool,
        progress: _Progress,
    ) -> Generator[CandidateEvent, None, list[_Row]]:
        """One batched pass over ``slots``: stream each row's text until it stops."""
        rows = [_Row(slot) for slot in slots]
        shown = params.n  # slots from here on are the unseen extra candidates
        steps = self.decoder.sample(prompt.input_ids, len(rows), params.max_new_tokens, sampler)
        try:
            for tokens, log_probs in steps:
                if progress.first_token is None:
                    progress.first_token = time.perf_counter()
                for row, token, log_prob in zip(rows, tokens, log_probs, strict=True):
                    if not row.finished:
                        progress.new_tokens += 1
                        changed = self._extend(row, token, log_prob, force_length)
                        if (changed or row.finished) and row.slot < shown:
                            yield CandidateEvent(start_index + row.slot, self._shown(row), row.finished)
                if all(row.finished for row in rows):
                    break
                if cancel is not None and cancel.is_set():
                    progress.cancelled = True
                    return rows
        finally:
            steps.close()
        for row in rows:
            if not row.finished:  # stopped by max_new_tokens
                row.finished = row.cut_off = True
                if row.slot < shown:
                    yield CandidateEvent(start_index + row.slot, self._shown(row), True)
        return rows

    def _extend(self, row: _Row, token: int, log_prob: float, force_length: bool) -> bool:
        """Add a token to a row; True when its visible text changed. Marks the row finished at its end."""
        row.log_probs.append(log_prob)
        if token in self.stop_ids and not force_length:
            row.finished = True
            return False
        row.token_ids.append(token)
        # A character spelt by several tokens decodes to U+FFFD until its last token arrives; a row cut
        # before then (max_new_tokens) has no character there, not a replacement mark.
        text = self.tokenizer.decode(row.token_ids, skip_special_tokens=True).lstrip().rstrip("\ufffd")
        if not force_length:
            text = _after_label_lines(text)
            if "\n" in text:
                text = text.split("\n", 1)[0]
                row.finished = True
        changed = text != row.text
        row.text = text
        return changed

    @staticmethod
    def _shown(row: _Row) -> str:
        return clean_title(row.text) if row.finished else row.text

