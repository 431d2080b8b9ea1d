"""The GPU fast path: a static KV cache and captured CUDA graphs for the prefill and each decode step.

Running a small model eagerly on a GPU is bound by kernel launches (hundreds per forward pass), not by
arithmetic. A captured CUDA graph replays all of them with one launch. A graph needs fixed shapes and
addresses, so:
- the prefill runs on the prompt right-padded to a multiple of ``PROMPT_STEP`` tokens (attention is
  causal: padding after the prompt changes nothing before it), one graph per length bucket, so a new
  abstract replays an existing graph instead of capturing (or compiling) a new one;
- decoding uses a static KV cache whose capacity is bucketed too (prompt plus new tokens, rounded up
  to ``CAPACITY_STEP``); the prompt's keys and values are copied into all N rows, an attention mask
  hides the slots not written yet, and one graph per (rows, capacity, greedy) holds the whole step:
  forward pass, token choice, and the bookkeeping that prepares the next step.

On CUDA the next step is launched before the current tokens are handed over, so the GPU decodes while
Python turns tokens into text. With ``use_graphs=False`` the same code runs eagerly, which is how the
CPU tests check this path against the plain decoder.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence

import torch

from core.decoding import Prefill, StepTokens, last_logits_kwargs, model_device
from core.errors import TitlecraftWarning
from core.fused import fuse_projections
from core.sampling import TokenSampler, choose_tokens

PROMPT_STEP = 64
CAPACITY_STEP = 128
WARMUP_STEPS = 2
MAX_SESSIONS = 8
MAX_PREFILLS = 8


def on_device(device: torch.device):
    """Make the model's GPU current, so streams, graphs and events are those of that GPU."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def capture(function: Callable[[], None], device: torch.device):
    """Warm ``function`` up on a side stream (as CUDA graphs require), then record it as a graph."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_STEPS):
            function()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: another thread's CUDA work (a front end's) must not invalidate the capture.
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        function()
    return graph


def supports_fast_path(model) -> bool:
    """True for models whose cache layers are all full attention and whose forward is graph-safe.

    Sliding-window or chunked layers (and models like GPT-Neo that compute their local-attention mask
    from the cache length) would attend to the wrong slots of a static cache.
    """
    from transformers.cache_utils import get_layer_types_and_kwargs

    config = model.config.get_text_config(decoder=True)
    layer_types, _ = get_layer_types_and_kwargs(config)
    return (
        bool(getattr(model, "_can_compile_fullgraph", False))
        and set(layer_types) == {"full_attention"}
        and config._attn_implementation in ("sdpa", "eager")
        and bool(last_logits_kwargs(model))
    )


def prompt_bucket(prompt_tokens: int) -> int:
    """The padded prompt length whose prefill graph serves a prompt."""
    return -(-prompt_tokens // PROMPT_STEP) * PROMPT_STEP


def cache_capacity(prompt_tokens: int, max_new_tokens: int) -> int:
    """The static cache length for a pass, rounded up so that similar prompts share a graph."""
    needed = prompt_tokens + max_new_tokens
    return -(-needed // CAPACITY_STEP) * CAPACITY_STEP


class PaddedPrefill:
    """The prefill for prompts of up to ``length`` tokens: the prompt is right-padded into a buffer and
    the logits are taken at its last real token, whose index the graph reads from another buffer."""

    def __init__(self, model, length: int, use_graphs: bool):
        self.model = model
        self.device = model_device(model)
        self.input_ids = torch.zeros(1, length, dtype=torch.long, device=self.device)
        self.last_index = torch.zeros(1, dtype=torch.long, device=self.device)
        self.cache = None
        self.last_logits: torch.Tensor | None = None
        with on_device(self.device):
            self.graph = capture(self._forward, self.device) if use_graphs else None

    def _forward(self) -> None:
        output = self.model(input_ids=self.input_ids, use_cache=True, logits_to_keep=self.last_index)
        self.cache, self.last_logits = output.past_key_values, output.logits[:, -1]

    def run(self, prompt_ids: Sequence[int]) -> Prefill:
        """Prefill a prompt; the result lives in this graph's memory until its next run."""
        with on_device(self.device):
            self.input_ids[0, : len(prompt_ids)].copy_(torch.tensor(prompt_ids))
            self.last_index.fill_(len(prompt_ids) - 1)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._forward()
        return Prefill(tuple(prompt_ids), self.cache, self.last_logits)


class DecodeSession:
    """Static cache and buffers for one (rows, capacity); the decode step reads and advances them."""

    def __init__(
        self,
        model,
        rows: int,
        capacity: int,
        prefill: Prefill,
        greedy: bool,
        use_graphs: bool,
        compile_step: bool = False,
    ):
        from transformers import StaticCache

        self.model = model
        self.device = model_device(model)
        self.logits_kwargs = last_logits_kwargs(model)
        prompt_layers = prefill.cache.layers
        dtype = prompt_layers[0].keys.dtype
        self.cache = StaticCache(config=model.config, max_cache_len=capacity)
        self.cache.early_initialization(
            batch_size=rows,
            num_heads=[layer.keys.shape[1] for layer in prompt_layers],
            head_dim=[layer.keys.shape[-1] for layer in prompt_layers],
            dtype=dtype,
            device=self.device,
        )
        self.masked = torch.finfo(dtype).min
        self.greedy = greedy
        self.input_ids = torch.zeros(rows, 1, dtype=torch.long, device=self.device)
        self.position = torch.zeros(1, dtype=torch.long, device=self.device)
        self.mask = torch.full((rows, 1, 1, capacity), self.masked, dtype=dtype, device=self.device)
        self.uniforms = torch.zeros(rows, device=self.device)
        self.temperature = torch.ones((), device=self.device)
        self.top_p = torch.ones((), device=self.device)
        self.tokens = torch.zeros(rows, dtype=torch.long, device=self.device)
        self.log_probs = torch.zeros(rows, device=self.device)
        self.next_host = 0
        self.step = (
            torch.compile(self._step_body, fullgraph=True, dynamic=False) if compile_step else self._step_body
        )
        with on_device(self.device):
            self.host = self._host_buffers(rows) if self.device.type == "cuda" else []
            self.graph = capture(self.step, self.device) if use_graphs else None

    def _host_buffers(self, rows: int) -> list:
        """Two pinned slots: one step being copied while the previous one is read."""
        return [
            (
                torch.empty(rows, dtype=torch.long, pin_memory=True),
                torch.empty(rows, dtype=torch.float32, pin_memory=True),
                torch.cuda.Event(),
            )
            for _ in range(2)
        ]

    def _step_body(self) -> None:
        """One decode step over the buffers: attend to the new slot, choose tokens, move on by one."""
        rows = self.input_ids.shape[0]
        self.mask.index_fill_(-1, self.position, 0.0)
        logits = self.model(
            input_ids=self.input_ids,
            position_ids=self.position.view(1, 1).expand(rows, 1),
            attention_mask=self.mask,
            past_key_values=self.cache,
            use_cache=True,
            **self.logits_kwargs,
        ).logits[:, -1]
        tokens, log_probs = choose_tokens(logits, self._uniforms(), self.temperature, self.top_p)
        self.tokens.copy_(tokens)
        self.log_probs.copy_(log_probs)
        self.input_ids.copy_(tokens.unsqueeze(-1))
        self.position.add_(1)

    def start(self, prefill: Prefill, sampler: TokenSampler) -> Callable[[], StepTokens]:
        """Load the prompt into every row and choose the first tokens from the prefill's logits."""
        with on_device(self.device):
            return self._start(prefill, sampler)

    def _start(self, prefill: Prefill, sampler: TokenSampler) -> Callable[[], StepTokens]:
        length = len(prefill.prompt_ids)
        for static_layer, prompt_layer in zip(self.cache.layers, prefill.cache.layers, strict=True):
            static_layer.keys[:, :, :length].copy_(prompt_layer.keys[:, :, :length])
            static_layer.values[:, :, :length].copy_(prompt_layer.values[:, :, :length])
            static_layer.cumulative_length.fill_(length)
        self.mask.fill_(self.masked)
        self.mask[..., :length] = 0.0
        self.position.fill_(length)
        self.temperature.fill_(sampler.temperature)
        self.top_p.fill_(sampler.top_p)
        if not self.greedy:
            sampler.fill_uniforms(self.uniforms)
        rows = self.input_ids.shape[0]
        tokens, log_probs = choose_tokens(
            prefill.last_logits.expand(rows, -1), self._uniforms(), self.temperature, self.top_p
        )
        self.input_ids.copy_(tokens.unsqueeze(-1))
        return self._hand_over(tokens, log_probs)

    def _uniforms(self) -> torch.Tensor | None:
        return None if self.greedy else self.uniforms

    def advance(self, sampler: TokenSampler) -> Callable[[], StepTokens]:
        """Launch the next decode step."""
        with on_device(self.device):
            if not self.greedy:
                sampler.fill_uniforms(self.uniforms)
            if self.graph is not None:
                self.graph.replay()
            else:
                self.step()
            return self._hand_over(self.tokens, self.log_probs)

    def _hand_over(self, tokens: torch.Tensor, log_probs: torch.Tensor) -> Callable[[], StepTokens]:
        """Start moving a step's results to the host; the returned call waits for them."""
        if not self.host:
            result = (tokens.tolist(), log_probs.tolist())
            return lambda: result
        host_tokens, host_log_probs, copied = self.host[self.next_host]
        self.next_host ^= 1
        host_tokens.copy_(tokens, non_blocking=True)
        host_log_probs.copy_(log_probs, non_blocking=True)
        copied.record()

        def result() -> StepTokens:
            copied.synchronize()
            return host_tokens.tolist(), host_log_probs.tolist()

        return result


# What the decoder drops, in this order, when building a graph holder fails (and how a warning names it).
OPTIMISATIONS = {
    "compile_step": "a compiled decode step",
    "graph_decode": "CUDA graphs for decoding",
    "graph_prefill": "a CUDA graph for the prefill",
}


class StaticDecoder:
    """Decoder over a static KV cache, replaying CUDA graphs when ``use_graphs`` (default on CUDA).

    ``compile_step`` also compiles the decode step with TorchInductor before capturing it, which fuses
    the many small element-wise kernels of a decoder layer (norms, rotary embeddings, activations):
    fewer kernels per replay, at the price of a compilation (tens of seconds) for every new
    (rows, capacity) pair. A compilation or capture that fails is dropped with a warning, and only
    that one: a failed prefill capture leaves the decode graphs in place.

    ``fuse`` (default) stacks each Llama layer's q/k/v and gate/up weights so that a step runs two
    multiplies where it ran five (core.fused); the model is changed in place and computes the same.
    """

    def __init__(self, model, use_graphs: bool | None = None, compile_step: bool = False, fuse: bool = True):
        if fuse:
            fuse_projections(model)
        self.model = model
        self.device = model_device(model)
        use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        self.graph_prefill = self.graph_decode = use_graphs
        self.compile_step = compile_step
        self.prefills: OrderedDict[int, PaddedPrefill] = OrderedDict()
        self.last_prefill: Prefill | None = None
        self.sessions: OrderedDict[tuple[int, int, bool], DecodeSession] = OrderedDict()
        # On CUDA one step is kept in flight; elsewhere each step is computed when asked for.
        self.lookahead = 1 if self.device.type == "cuda" else 0

    def sample(
        self, prompt_ids: Sequence[int], rows: int, max_new_tokens: int, sampler: TokenSampler
    ) -> Iterator[StepTokens]:
        with torch.inference_mode():
            prefill = self._prefill(prompt_ids)
            capacity = cache_capacity(len(prompt_ids), max_new_tokens)
            session = self._cached(
                self.sessions,
                (rows, capacity, sampler.greedy),
                MAX_SESSIONS,
                lambda: DecodeSession(
                    self.model, rows, capacity, prefill, sampler.greedy, self.graph_decode, self.compile_step
                ),
                ("compile_step", "graph_decode"),
            )
            queued = deque([session.start(prefill, sampler)])
        for _ in range(1, max_new_tokens):
            if len(queued) > self.lookahead:
                yield queued.popleft()()
            with torch.inference_mode():
                queued.append(session.advance(sampler))
        while queued:
            yield queued.popleft()()

    def prefill(self, prompt_ids: Sequence[int]) -> None:
        with torch.inference_mode():
            self._prefill(prompt_ids)

    def _prefill(self, prompt_ids: Sequence[int]) -> Prefill:
        """The last prefill when the prompt is the same (refills, "more"), else a run of its bucket's graph."""
        if self.last_prefill is None or self.last_prefill.prompt_ids != tuple(prompt_ids):
            length = prompt_bucket(len(prompt_ids))
            padded = self._cached(
                self.prefills,
                length,
                MAX_PREFILLS,
                lambda: PaddedPrefill(self.model, length, self.graph_prefill),
                ("graph_prefill",),
            )
            self.last_prefill = padded.run(prompt_ids)
        return self.last_prefill

    def _cached(self, cache: OrderedDict, key, limit: int, build: Callable, optimisations: Sequence[str]):
        """The cached graph holder for ``key``, else a new one (dropping the least recently used).
        If building fails, the first of ``optimisations`` still on is turned off and building retried."""
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        while len(cache) >= limit:
            cache.popitem(last=False)
        while True:
            try:
                cache[key] = build()
                return cache[key]
            except torch.OutOfMemoryError:
                raise
            except Exception as error:  # noqa: BLE001 - a failed compile or capture: decode correctly, slower
                dropped = next((name for name in optimisations if getattr(self, name)), None)
                if dropped is None:
                    raise
                setattr(self, dropped, False)
                warnings.warn(
                    f"decoding without {OPTIMISATIONS[dropped]}: it failed with {type(error).__name__}: {error}",
                    TitlecraftWarning,
                    stacklevel=4,
                )

    def release(self) -> None:
        self.sessions.clear()
        self.prefills.clear()
        self.last_prefill = None
