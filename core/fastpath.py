"""The GPU fast path: a static KV cache and one captured CUDA graph per decode step.

Eager decoding of a small model on a GPU is bound by kernel launches (hundreds per step), not by
arithmetic. Capturing the whole step (forward pass, token choice, and the bookkeeping that prepares
the next step) in a CUDA graph turns it into one launch. A graph needs fixed shapes and addresses: the
KV cache is static, its capacity bucketed (prompt plus new tokens, rounded up to ``CAPACITY_STEP``) so
that new abstracts of similar length replay an existing graph instead of capturing a new one, and every
input lives in a buffer the graph reads. The prompt is never padded: its prefill stays eager (one call
per abstract, where launch overhead matters little) and is copied into every row of the static cache;
the attention mask hides the cache slots not written yet.

On CUDA the next step is launched before the current tokens are handed over, so the GPU decodes while
Python turns tokens into text. With ``use_graphs=False`` the same step runs eagerly, which is how the
CPU tests check this path against the plain decoder.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence

import torch

from core.decoding import Prefill, PrefillCache, StepTokens, last_logits_kwargs, model_device
from core.errors import TitlecraftWarning
from core.sampling import TokenSampler, choose_tokens

CAPACITY_STEP = 128
WARMUP_STEPS = 2
MAX_SESSIONS = 8


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
    )


def cache_capacity(prompt_tokens: int, max_new_tokens: int) -> int:
    """The static cache length for a pass, rounded up so that similar prompts share a graph."""
    needed = prompt_tokens + max_new_tokens
    return -(-needed // CAPACITY_STEP) * CAPACITY_STEP


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
        with self.on_device():
            self.host = self._host_buffers(rows) if self.device.type == "cuda" else []
            self.graph = self._capture() if use_graphs else None

    def on_device(self):
        """Make the model's GPU current, so streams, graphs and events are those of that GPU."""
        return torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()

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

    def _capture(self):
        """Warm up on a side stream (as CUDA graphs require), then record one step."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                self.step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another thread's CUDA work (a front end's) must not invalidate the capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.step()
        return graph

    def start(self, prefill: Prefill, sampler: TokenSampler) -> Callable[[], StepTokens]:
        """Load the prompt into every row and choose the first tokens from the prefill's logits."""
        with self.on_device():
            return self._start(prefill, sampler)

    def _start(self, prefill: Prefill, sampler: TokenSampler) -> Callable[[], StepTokens]:
        length = len(prefill.prompt_ids)
        for static_layer, prompt_layer in zip(self.cache.layers, prefill.cache.layers, strict=True):
            static_layer.keys[:, :, :length].copy_(prompt_layer.keys)
            static_layer.values[:, :, :length].copy_(prompt_layer.values)
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
        with self.on_device():
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


class StaticDecoder:
    """Decoder over a static KV cache, replaying a CUDA graph per step when ``use_graphs`` (default on CUDA).

    ``compile_step`` first compiles the step with TorchInductor, which fuses the many small element-wise
    kernels of a decoder layer (norms, rotary embeddings, activations): fewer kernels per graph replay,
    at the price of a compilation (tens of seconds) for every new (rows, capacity) pair.
    """

    def __init__(self, model, use_graphs: bool | None = None, compile_step: bool = False):
        self.model = model
        self.device = model_device(model)
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        self.compile_step = compile_step
        self.prefills = PrefillCache(model)
        self.sessions: OrderedDict[tuple[int, int, bool], DecodeSession] = OrderedDict()
        # On CUDA one step is kept in flight; elsewhere each step is computed when asked for.
        self.lookahead = 1 if self.device.type == "cuda" else 0

    def sample(
        self, prompt_ids: Sequence[int], rows: int, max_new_tokens: int, sampler: TokenSampler
    ) -> Iterator[StepTokens]:
        prefill = self.prefills.get(prompt_ids)
        with torch.inference_mode():
            capacity = cache_capacity(len(prompt_ids), max_new_tokens)
            session = self._session(rows, capacity, sampler.greedy, prefill)
            queued = deque([session.start(prefill, sampler)])
        for _ in range(1, max_new_tokens):
            if len(queued) > self.lookahead:
                yield queued.popleft()()
            with torch.inference_mode():
                queued.append(session.advance(sampler))
        while queued:
            yield queued.popleft()()

    def _session(self, rows: int, capacity: int, greedy: bool, prefill: Prefill) -> DecodeSession:
        key = (rows, capacity, greedy)
        if key in self.sessions:
            self.sessions.move_to_end(key)
            return self.sessions[key]
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.popitem(last=False)
        while True:
            try:
                session = DecodeSession(
                    self.model, rows, capacity, prefill, greedy, self.use_graphs, self.compile_step
                )
                break
            except torch.OutOfMemoryError:
                raise
            except Exception as error:  # noqa: BLE001 - a failed compile or capture: decode correctly, slower
                if not (self.use_graphs or self.compile_step):
                    raise
                dropped = "compilation" if self.compile_step else "CUDA graphs"
                warnings.warn(
                    f"decoding without {dropped}: it failed with {type(error).__name__}: {error}",
                    TitlecraftWarning,
                    stacklevel=3,
                )
                if self.compile_step:
                    self.compile_step = False
                else:
                    self.use_graphs = False
        self.sessions[key] = session
        return session

    def release(self) -> None:
        self.sessions.clear()
        self.prefills.clear()
