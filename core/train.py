"""Fine-tune a causal LM to write titles: loss on the title tokens only, dynamic padding, resumable.

Runs as one process or as a data-parallel job under ``torchrun`` / ``accelerate launch`` (each rank
trains on its own share of the batches; DDP averages the gradients). Only the title positions go
through the output layer: the abstract is context, so computing its 49k-way logits would be wasted work.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.distributed import Ranks, all_reduce_sum, barrier, init_distributed, is_main_process
from core.errors import TitlecraftError
from core.models import (
    ADAPTER_WEIGHTS,
    CHECKPOINT_META,
    EMBEDDED,
    adapter_checkpoint,
    attach_adapter,
    file_sha256,
    load_model,
    resolve_device,
)
from core.paths import refuse_file_in_the_way
from core.prompts import COMPLETION, normalise_whitespace
from core.sampling import SEED_BITS
from core.train_data import (
    CUDA_PAD_MULTIPLE,
    Example,
    ExampleEncoder,
    collate,
    length_grouped_batches,
    read_pairs,
)

STATE_DIR = "last"
RUN_IDENTITY = "run.json"
PRECISIONS = ("auto", "bf16", "fp32")
BUDGET_CLOCK_STEPS = (10, 50)  # --max-minutes times the steps between these two to plan the rest,
BUDGET_CLOCK_SHARE = 0.1  # or fewer, once they took this share of the budget (slow CPU steps, short runs)


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in titlecraft.json so a checkpoint documents itself."""

    train: str
    out: str
    val: str | None = None
    base: str = "embedded"
    extra: list[str] = field(default_factory=list)
    extra_weight: float = 1.0
    lora: bool = False
    init_adapter: str | None = None  # continue this LoRA adapter ("embedded": the shipped one)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    epochs: float = 1.0
    lr: float | None = None  # default: 1e-4 full fine-tune, 1e-3 LoRA
    batch_size: int = 32
    grad_accum: int = 1
    max_abstract_tokens: int = 384
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    seed: int = 0
    eval_every: int = 200
    val_limit: int = 2000
    limit: int | None = None
    max_minutes: float | None = None
    compile: bool = False  # torch.compile the decoder layers (fuses their element-wise work on a GPU)
    precision: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU; "bf16" / "fp32" force one
    device: str = "auto"
    template: str = COMPLETION

    def __post_init__(self) -> None:
        """Refuse impossible settings at once, before minutes of data reading and model loading."""
        # inf and NaN pass or confuse the range checks below: inf epochs overflowed the step count, and an
        # inf learning rate or loss weight trained to NaN, so non-finite numbers are refused first.
        numbers = {"--epochs": self.epochs, "--lr": self.lr, "--extra-weight": self.extra_weight,
                   "--max-minutes": self.max_minutes, "the warm-up ratio": self.warmup_ratio}
        non_finite = [f"{name} must be a finite number" for name, value in numbers.items()
                      if value is not None and not math.isfinite(value)]
        if non_finite:
            raise TitlecraftError("Invalid training settings: " + "; ".join(non_finite) + ".")
        rules = {
            "--batch-size must be at least 1": self.batch_size >= 1,
            "--grad-accum must be at least 1": self.grad_accum >= 1,
            "--epochs must be more than 0": self.epochs > 0,
            "--lr must not be negative": self.lr is None or self.lr >= 0,
            "--max-abstract-tokens must be at least 1": self.max_abstract_tokens >= 1,
            "--eval-every must be at least 1": self.eval_every >= 1,
            "the validation limit must be at least 1": self.val_limit >= 1,
            "--limit must be at least 1": self.limit is None or self.limit >= 1,
            "--max-minutes must be more than 0": self.max_minutes is None or self.max_minutes > 0,
            "--lora-r must be at least 1": self.lora_r >= 1,
            # LoRA scales its update by alpha / r: at 0 the adapter learns nothing, below it the update is reversed
            "--lora-alpha must be more than 0": self.lora_alpha > 0,
            "--extra-weight must be more than 0": self.extra_weight > 0,
            "the warm-up ratio must be in [0, 1)": 0 <= self.warmup_ratio < 1,
            f"the precision must be one of {', '.join(PRECISIONS)}": self.precision in PRECISIONS,
            # torch.manual_seed overflowed with a traceback after the data was read; the range is sampling's
            f"--seed must be a whole number from 0 to 2**{SEED_BITS} - 1": 0 <= self.seed < 2**SEED_BITS,
        }
        problems = [rule for rule, holds in rules.items() if not holds]
        if problems:
            raise TitlecraftError("Invalid training settings: " + "; ".join(problems) + ".")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.lora else 1e-4)

    def uses_bf16(self, device: str) -> bool:
        """bf16 autocast by default only on CUDA: most CPUs emulate bf16 slowly, but those with AMX
        units (recent Xeons) train 1.3x (LoRA) to 1.7x (full) faster with it, so a CPU user can ask for it."""
        return self.precision == "bf16" or (self.precision == "auto" and device.startswith("cuda"))


# ---------------------------------------------------------------- model


def decoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of identical blocks of a transformer body (``layers`` in Llama, ``h`` in GPT-Neo):
    its longest ModuleList."""
    stacks = [module for module in backbone.modules() if isinstance(module, nn.ModuleList)]
    if not stacks:
        raise TitlecraftError(f"{type(backbone).__name__} has no stack of layers to compile")
    return max(stacks, key=len)


class TitleLoss(nn.Module):
    """Wraps a causal LM so that its forward returns the summed title-token loss and the token count.

    Only positions whose next token is a label reach the output layer (for a model whose forward changes
    the output layer's logits, the sequence positions that hold one in any row, through that forward).
    Being one module, it can be wrapped by DistributedDataParallel as a whole.
    """

    def __init__(self, causal_lm: nn.Module):
        super().__init__()
        self.causal_lm = causal_lm
        base = causal_lm.get_base_model() if hasattr(causal_lm, "get_base_model") else causal_lm
        self.backbone = base.get_decoder()
        self.head = base.get_output_embeddings()
        self._compiled_layers: list[nn.Module] = []
        self.head_gives_logits = _head_gives_the_models_logits(causal_lm, self.backbone, self.head)

    def compile_backbone(self) -> None:
        """Compile the decoder layer once and reuse it for every layer (regional compilation).

        Fusing the element-wise work inside a layer is where the gain is, and compiling the whole body
        instead takes minutes (about 4 for the embedded model on a 2-core CPU, against half a minute).
        Sizes are dynamic: batches are padded only to their longest member, so a static compile would
        recompile for each length.
        """
        self._compiled_layers = list(decoder_layers(self.backbone))
        for layer in self._compiled_layers:
            layer.forward = torch.compile(layer.forward, dynamic=True)

    def _uncompile(self) -> None:
        for layer in self._compiled_layers:
            del layer.forward  # the instance attribute: the class's forward runs again
        self._compiled_layers = []

    def _eager_if_the_compile_fails(self, run: Callable[[], torch.Tensor]) -> torch.Tensor:
        try:
            return run()
        except torch._dynamo.exc.BackendCompilerFailed as error:
            if not self._compiled_layers:
                raise
            # A compile fails before the step computes anything: the same step runs eagerly.
            print(f"torch.compile failed, training continues uncompiled: {str(error).splitlines()[0]}", flush=True)
            self._uncompile()
        return run()

    def _title_logits(self, input_ids, attention_mask, target_positions):
        """The logits at the title positions (flat indices into the batch)."""
        # No KV cache in training: a cache would also give each compiled layer guards of its own.
        inputs = dict(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        if self.head_gives_logits:
            hidden = self._eager_if_the_compile_fails(lambda: self.backbone(**inputs).last_hidden_state)
            return self.head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, target_positions))
        # The model changes the output layer's logits (scaling, soft-capping): only its forward gives them,
        # asked for the sequence positions that hold a title position in any row.
        rows, columns = target_positions // input_ids.shape[1], target_positions % input_ids.shape[1]
        kept, index = torch.unique(columns, return_inverse=True)
        logits = self._eager_if_the_compile_fails(lambda: self.causal_lm(**inputs, logits_to_keep=kept).logits)
        return logits[rows, index]

    def forward(self, input_ids, attention_mask, target_positions, target_ids, target_weights):
        logits = self._title_logits(input_ids, attention_mask, target_positions)
        token_loss = F.cross_entropy(logits.float(), target_ids, reduction="none")
        return (token_loss * target_weights).sum(), target_ids.numel()


@torch.no_grad()
def _head_gives_the_models_logits(causal_lm: nn.Module, backbone: nn.Module, head: nn.Module) -> bool:
    """Whether the output layer alone gives the model's logits. Some models change them after it (Gemma's
    soft-capping, Granite's and Cohere's scaling); trained on the output layer's, they learned other logits
    than they generate from. Compared on a few tokens, in eval mode (no dropout)."""
    was_training = causal_lm.training
    causal_lm.eval()
    try:
        ids = torch.arange(8, device=next(causal_lm.parameters()).device).unsqueeze(0)
        inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        model_logits = causal_lm(**inputs).logits.float()
        head_logits = head(backbone(**inputs).last_hidden_state).float()
    finally:
        causal_lm.train(was_training)
    return model_logits.shape == head_logits.shape and torch.allclose(model_logits, head_logits, rtol=1e-3, atol=1e-4)


def continuing_adapter(config: TrainConfig) -> TrainConfig:
    """The settings of a run that continues ``config.init_adapter``: that adapter's base, rank and
    template, so the result is again one adapter on the same base (it loads, merged, at full speed)."""
    _, meta = adapter_checkpoint(config.init_adapter)
    if config.base not in (EMBEDDED, meta["base"]):
        raise TitlecraftError(
            f"the adapter in {config.init_adapter} was trained on {meta['base']}, not {config.base}; drop --base"
        )
    lora = meta["lora"]
    template = meta.get("template", config.template)
    return replace(config, base=meta["base"], lora=True, lora_r=lora["r"], lora_alpha=lora["lora_alpha"], template=template)


def _lora_model(model, config: TrainConfig):
    from peft import LoraConfig, get_peft_model

    if config.init_adapter:
        return attach_adapter(model, *adapter_checkpoint(config.init_adapter))

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        bias="none",
    )
    return get_peft_model(model, lora)


def lora_settings(peft_model) -> dict:
    """The LoRA settings as plain JSON, enough for core.models to rebuild and merge the adapter."""
    config = peft_model.peft_config["default"]
    return {
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted({name.rsplit(".", 1)[-1] for name in config.target_modules}),
        "bias": "none",
    }


# ---------------------------------------------------------------- training loop


@dataclass
class Progress:
    """What is saved in ``out/last`` so an interrupted run continues from the same step and data."""

    step: int = 0
    planned_steps: int = 0
    best_val_loss: float | None = None
    best_step: int | None = None
    tokens_seen: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)


def _schedule(progress: Progress, warmup_ratio: float) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_ratio`` of the planned steps, then cosine decay to a tenth of the peak.
    Both follow the plan when --max-minutes shrinks it: a warm-up kept at its share of the first plan
    could outlast the shrunk run, which then never reached its peak rate nor decayed from it."""

    def factor(step: int) -> float:
        warmup = max(1, int(progress.planned_steps * warmup_ratio))
        if step < warmup:
            return (step + 1) / warmup
        span = max(1, progress.planned_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / span)))

    return factor


def training_autocast(device: str, bf16: bool):
    """The autocast context of a training or validation step (bench/train.py times steps under it too)."""
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16, enabled=bf16)


def _diverged_advice(config: TrainConfig, out: Path, record: dict) -> str:
    """Why a loss that is not a number stops the run: every later step, and a "best" checkpoint judged
    by it, would be NaN too (NaN never compares lower, so the first one stayed best)."""
    kept = f" The best checkpoint so far stays in {out / 'best'}." if (out / "best").is_dir() else ""
    return (
        f"Training diverged at step {record['step']}: the loss is not a number "
        f"(train {record['train_loss']}, validation {record.get('val_loss', 'not measured')}). The learning rate "
        f"(--lr {config.learning_rate:g}) is too high for this model, or its weights are damaged; train again with a lower "
        f"--lr and a new --out.{kept}"
    )


@torch.no_grad()
def validation_loss(
    loss_model: TitleLoss, examples: Sequence[Example], pad_id: int, device: str, batch_size: int, bf16: bool
) -> float:
    loss_model.eval()
    total = count = 0.0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        batch = collate([examples[i] for i in order[start : start + batch_size]], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        with training_autocast(device, bf16):
            loss_sum, tokens = loss_model(**batch)
        total += float(loss_sum)
        count += int(tokens)
    loss_model.train()
    return total / max(count, 1)


def _trainable_state(model, lora: bool) -> dict[str, torch.Tensor]:
    if lora:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model)
    return dict(model.named_parameters())  # unlike state_dict(), lists tied weights once


def save_checkpoint(model, tokenizer, folder: Path, meta: dict, lora: bool) -> None:
    """Write a checkpoint core.models loads directly, atomically (staging folder, then rename)."""
    from safetensors.torch import save_file

    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if lora:
        state = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in _trainable_state(model, True).items()}
        save_file(state, str(staging / ADAPTER_WEIGHTS))
    else:
        model.config.use_cache = True  # off while training; whoever generates from the checkpoint wants it
        try:
            model.save_pretrained(staging, safe_serialization=True)
        finally:
            model.config.use_cache = False
        tokenizer.save_pretrained(staging)
    (staging / CHECKPOINT_META).write_text(json.dumps(meta, indent=2))
    _replace_folder(staging, folder)


def _replace_folder(staging: Path, folder: Path) -> None:
    old = _previous_copy(folder)
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)


def _previous_copy(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.old")


# What a run leaves in --out before its first complete save: staging copies and replaced folders.
RUN_SCRATCH = frozenset(f".{name}.{kind}" for name in (STATE_DIR, "best") for kind in ("staging", "old"))


def _refuse_a_folder_of_other_files(out: Path) -> None:
    """Refuse an --out folder that holds files of its own rather than this run's unfinished state.

    A run replaces out/best and out/last and moves its checkpoint's files into out, so in a folder of
    earlier runs (one of them named best) or of anything else it deleted or overwrote the user's files.
    """
    if not out.is_dir():
        return
    names = sorted(item.name for item in out.iterdir())
    if set(names) <= RUN_SCRATCH or (out / STATE_DIR / "progress.json").is_file() or _holds_first_best_of(out):
        return
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    raise TitlecraftError(
        f"{out} already holds other files ({shown}); training writes its checkpoint into --out and would "
        "overwrite them: choose a new or empty folder"
    )


def _create_out_folder(out: Path) -> None:
    """Create --out before the model loads: a folder that cannot be created or written failed only at
    the first save, --eval-every steps of training later, which were lost."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TitlecraftError(f"cannot create the checkpoint folder {out}: {error.strerror or error}") from None
    if not os.access(out, os.W_OK):
        raise TitlecraftError(f"cannot write the checkpoint folder {out}: it is not writable")


def _holds_first_best_of(out: Path) -> bool:
    """Whether out/best is this run's own first save (it is written just before the first resume state)."""
    try:
        meta = json.loads((out / "best" / CHECKPOINT_META).read_text())
        return Path(meta["config"]["out"]).resolve() == out.resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _recover_replaced_folder(folder: Path) -> None:
    """A kill between the two renames of _replace_folder leaves only the previous copy: put it back."""
    old = _previous_copy(folder)
    if old.is_dir() and not folder.exists():
        os.replace(old, folder)


# Settings a resumed run may change: where and how fast it runs, and how often it reports. The data
# files count by their contents (hashes), not by the paths they were named with.
RESUMABLE_CHANGES = frozenset(
    {"out", "device", "compile", "max_minutes", "eval_every", "val_limit", "train", "val", "extra"}
)


def _run_identity(config: TrainConfig, provenance: dict, processes: int) -> dict:
    """What an interrupted run's saved state must match to be resumed: the settings that shape its
    steps, the number of data-parallel processes (each step takes a batch per process, so the batches of
    a step depend on it), and the hashes of its data and continued adapter (main rank only: the others
    have none)."""
    settings = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}
    data = [entry["sha256"] for entry in provenance.get("data", [])]
    adapter = provenance.get("init_adapter", {}).get("sha256")
    return {"config": settings, "processes": processes, "data": data, "init_adapter": adapter}


def _require_same_run(state_dir: Path, identity: dict, out: Path) -> None:
    path = state_dir / RUN_IDENTITY
    if not path.is_file():
        return  # saved before runs recorded their identity
    saved = json.loads(path.read_text())
    before, now = saved["config"], identity["config"]
    changed = sorted(key for key in {*before, *now} if before.get(key) != now.get(key))
    if saved.get("processes", identity["processes"]) != identity["processes"]:  # states saved before it was kept pass
        changed.append(f"processes: {saved['processes']}, not {identity['processes']}")
    if saved.get("data") != identity.get("data") or saved.get("init_adapter") != identity.get("init_adapter"):
        changed.append("data files")
    if changed:
        raise TitlecraftError(
            f"{out} holds an interrupted run with other settings ({', '.join(changed)}); re-run it with its own "
            "settings to resume it, or choose another --out"
        )


def _save_state(
    folder: Path, model, optimizer, scheduler, progress: Progress, lora: bool, identity: dict
) -> None:
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in _trainable_state(model, lora).items()}
    save_file(state, str(staging / "weights.safetensors"))
    # Through a buffer: torch.save writing the file itself met a full disk with "RuntimeError: [enforce fail
    # at inline_container.cc] unexpected pos", where a plain write raises the OSError that names the cause.
    optimizer_state = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, optimizer_state)
    (staging / "optimizer.pt").write_bytes(optimizer_state.getbuffer())
    (staging / "progress.json").write_text(json.dumps(asdict(progress)))
    (staging / RUN_IDENTITY).write_text(json.dumps(identity))
    _replace_folder(staging, folder)


def _load_state(folder: Path, model, optimizer, scheduler, lora: bool) -> Progress:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "weights.safetensors"))
    if lora:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, weights)
    else:
        model.load_state_dict(weights, strict=False)
    states = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    return Progress(**json.loads((folder / "progress.json").read_text()))


def _log(message: str, ranks: Ranks) -> None:
    if ranks.main:
        print(message, flush=True)


def train(config: TrainConfig, on_progress: Callable[[dict], None] | None = None) -> Path:
    """Run (or resume) a training job and return the checkpoint directory; one job at a time per --out."""
    out = Path(config.out)
    refuse_file_in_the_way(out, folder=True)  # now, not when the first checkpoint is saved
    with _only_job_writing(out):
        return _train(config, on_progress)


@contextlib.contextmanager
def _only_job_writing(out: Path) -> Iterator[None]:
    """Hold a lock beside --out while a job trains into it. The same command started again meanwhile (in
    another terminal) took the first job's saved state for an interrupted run's and trained beside it,
    both replacing best/ and last/: the published checkpoint mixed the two, with exit status 0 for both."""
    if not is_main_process():  # the main process alone saves, and speaks for a data-parallel job
        yield
        return
    import fcntl

    lock_path = out.with_name(f".{out.name}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = lock_path.open("w")
    except OSError as error:
        raise TitlecraftError(f"cannot create the checkpoint folder {out}: {error.strerror or error}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TitlecraftError(
                f"another titlecraft train is writing into {out}; wait for it to finish, or choose another --out"
            ) from None
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def _train(config: TrainConfig, on_progress: Callable[[dict], None] | None) -> Path:
    from tqdm.auto import tqdm

    # Batch shapes vary from step to step; expandable segments keep the CUDA allocator from fragmenting.
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    out = Path(config.out)
    state_dir = out / STATE_DIR
    if is_main_process():  # one repairer: two processes racing to rename the same folder, one failed
        for folder in (state_dir, out / "best"):
            _recover_replaced_folder(folder)
    if (out / CHECKPOINT_META).is_file() and not (state_dir / "progress.json").is_file():
        raise TitlecraftError(f"{out} already holds a finished run; choose another --out")
    _refuse_a_folder_of_other_files(out)
    if Path(config.base).expanduser().is_dir():  # the checkpoint names its base: it must load from anywhere
        config = replace(config, base=str(Path(config.base).expanduser().resolve()))
    if config.init_adapter:
        config = continuing_adapter(config)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    bf16 = config.uses_bf16(device)
    # LoRA freezes the base, so under bf16 autocast it can sit in bf16; a full fine-tune keeps fp32 master weights.
    dtype = torch.bfloat16 if (config.lora and bf16) else torch.float32
    train_pairs, extra_pairs, val_pairs, trained_on = _read_data(config)  # a bad file fails now, not after the model loads
    _create_out_folder(out)
    ranks = init_distributed(device)
    if device.startswith("cuda") and ranks.world > 1:
        device = f"cuda:{ranks.local}"  # loaded there directly: loaded on cuda:0 first, K copies met there
    model, tokenizer, info = load_model(config.base, device=device, dtype=dtype)
    if trained_on:
        _log(f"--val: {trained_on} of its pairs are training pairs too; validating on the others", ranks)
    if not config.val:
        _log("no --val: no validation loss is measured and the last step is published, not the best "
             "(pass --val data/prepared/validation.parquet to keep the best checkpoint)", ranks)
    provenance = _provenance(config) if ranks.main else {}  # only the main rank writes checkpoints
    if config.lora:
        model = _lora_model(model, config)
    model.train()
    if hasattr(model, "config"):
        model.config.use_cache = False

    encoder = ExampleEncoder(tokenizer, config.template, config.max_abstract_tokens)
    examples = encoder.encode(train_pairs)
    for pairs in extra_pairs:
        examples += encoder.encode(pairs, weight=config.extra_weight)
    val_examples = encoder.encode(val_pairs) if val_pairs else []
    _refuse_examples_beyond_the_context([*examples, *val_examples], info.context_length, encoder)
    lengths = [len(e.input_ids) for e in examples]
    pad_multiple = CUDA_PAD_MULTIPLE if device.startswith("cuda") else 1
    target_counts = [e.target_tokens for e in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    loss_model = TitleLoss(model)
    if config.compile:
        loss_model.compile_backbone()
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(loss_model, device_ids=[ranks.local] if device.startswith("cuda") else None)
    else:
        wrapped = loss_model
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters,
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        betas=(0.9, 0.98),
        fused=device.startswith("cuda"),
    )
    # The last step of an epoch may hold fewer micro-batches: every example is seen once per epoch.
    steps_per_epoch = math.ceil(
        len(length_grouped_batches(lengths, config.batch_size, config.seed, 0)) / (config.grad_accum * ranks.world)
    )
    progress = Progress(planned_steps=max(1, math.ceil(steps_per_epoch * config.epochs)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(progress, config.warmup_ratio))
    identity = _run_identity(config, provenance, ranks.world)
    barrier()  # every process reads the saved state as the main process repaired it
    if (state_dir / "progress.json").is_file():
        if ranks.main:
            _require_same_run(state_dir, identity, out)
        progress.__dict__.update(asdict(_load_state(state_dir, model, optimizer, scheduler, config.lora)))
        _log(f"resuming from step {progress.step} of {progress.planned_steps}", ranks)

    micro_per_step = config.grad_accum * ranks.world
    epoch_batches: dict[int, list[list[int]]] = {}

    def micro_batches(step: int) -> tuple[list[list[int]], bool]:
        """The micro-batches this rank runs at a step, a pure function of (seed, step) so that resume is
        exact, and whether they count. In an epoch's shorter last step a rank may have none left; it then
        runs one that does not count (its loss weighted 0), because data-parallel ranks step together."""
        result = []
        for k in range(config.grad_accum):
            index = (step * micro_per_step) + k * ranks.world + ranks.rank
            epoch, position = divmod(index, steps_per_epoch * micro_per_step)
            if epoch not in epoch_batches:
                epoch_batches[epoch] = length_grouped_batches(lengths, config.batch_size, config.seed, epoch)
            batches = epoch_batches[epoch]
            if position >= len(batches):  # past the epoch's end, in its shorter last step
                if result:
                    break
                return [batches[position % len(batches)]], False
            result.append(batches[position])
        return result, True

    # The examples this rank trained on, those of the steps before a resume included (they are a pure
    # function of the step): ranks/rank<N>.json records them for the whole run.
    seen_examples: list[int] = []
    for done in range(progress.step):
        batches, counted = micro_batches(done)
        if counted:
            seen_examples.extend(i for indices in batches for i in indices)
    bar = tqdm(total=progress.planned_steps, initial=progress.step, disable=not ranks.main, desc="training", unit="step")
    started = time.perf_counter() - progress.seconds
    window_tokens, window_start = 0, time.perf_counter()
    clock_start = started
    # A run of few steps starts its clock early enough to plan with most of the budget left.
    clock_from = min(BUDGET_CLOCK_STEPS[0], progress.planned_steps // 5)
    replanned = False
    eval_every = max(1, config.eval_every)
    try:
        while progress.step < progress.planned_steps:
            optimizer.zero_grad(set_to_none=True)
            batches, counted = micro_batches(progress.step)
            targets = sum(target_counts[i] for indices in batches for i in indices) if counted else 0
            targets = all_reduce_sum([float(targets)], device)[0] / ranks.world
            step_tokens = 0
            step_loss = torch.zeros((), device=device)
            for micro, indices in enumerate(batches):
                cpu_batch = collate([examples[i] for i in indices], pad_id, pad_multiple)
                if counted:
                    seen_examples.extend(indices)
                    step_tokens += int(cpu_batch["attention_mask"].sum())
                else:  # repeated only to step with the other ranks: it must add no gradient (nor count as seen)
                    cpu_batch["target_weights"].zero_()
                batch = {k: v.to(device, non_blocking=True) for k, v in cpu_batch.items()}
                sync = micro == len(batches) - 1 or ranks.world == 1
                context = wrapped.no_sync() if (ranks.world > 1 and not sync) else contextlib.nullcontext()
                with context, training_autocast(device, bf16):
                    loss_sum, _ = wrapped(**batch)
                    loss = loss_sum / max(targets, 1.0)
                loss.backward()
                step_loss += loss.detach()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            step_lr = scheduler.get_last_lr()[0]  # this step's: after scheduler.step() it is the next one's
            optimizer.step()
            scheduler.step()
            progress.step += 1
            step_tokens = int(all_reduce_sum([float(step_tokens)], device)[0])
            progress.tokens_seen += step_tokens
            window_tokens += step_tokens
            bar.update(1)
            if config.max_minutes and progress.step == clock_from:
                clock_start = time.perf_counter()
            if config.max_minutes and not replanned:
                if progress.step > clock_from:
                    timed_steps, timed_from = progress.step - clock_from, clock_start
                    due = timed_steps >= BUDGET_CLOCK_STEPS[1] - BUDGET_CLOCK_STEPS[0]
                else:  # steps so slow that the untimed ones take the clock's share: plan from them all
                    timed_steps, timed_from, due = progress.step, started, False
                due = due or time.perf_counter() - timed_from >= BUDGET_CLOCK_SHARE * config.max_minutes * 60
                if all_reduce_sum([float(due)], device)[0]:  # every rank re-plans at the same step
                    _replan_for_time_budget(progress, config, started, timed_from, timed_steps, ranks, device)
                    replanned = True
            if progress.step % eval_every == 0 or progress.step == progress.planned_steps:
                now = time.perf_counter()
                # Each rank's loss is its title tokens' loss over the step's mean tokens per rank (DDP then
                # averages the gradients): the step's mean loss per title token is the mean over the ranks.
                train_loss = all_reduce_sum([float(step_loss)], device)[0] / ranks.world
                record = {
                    "step": progress.step,
                    "train_loss": round(train_loss, 4),
                    "lr": step_lr,
                    "tokens_per_second": round(window_tokens / max(now - window_start, 1e-9)),
                }
                if val_examples:
                    record["val_loss"] = round(validation_loss(loss_model, val_examples, pad_id, device, config.batch_size, bf16), 4)
                if not all(math.isfinite(record[key]) for key in ("train_loss", "val_loss") if key in record):
                    raise TitlecraftError(_diverged_advice(config, out, record))
                window_tokens, window_start = 0, time.perf_counter()
                progress.history.append(record)
                progress.seconds = time.perf_counter() - started
                bar.set_postfix({k: v for k, v in record.items() if k in ("train_loss", "val_loss")})
                improved = "val_loss" not in record or progress.best_val_loss is None or record["val_loss"] < progress.best_val_loss
                if ranks.main:
                    with _disk_errors_said_in_words(out, progress.step):
                        if improved:
                            progress.best_val_loss = record.get("val_loss")
                            progress.best_step = progress.step
                            save_checkpoint(model, tokenizer, out / "best", _meta(config, info, progress, model, len(examples), provenance), config.lora)
                        _save_state(state_dir, model, optimizer, scheduler, progress, config.lora, identity)
                barrier()
                if on_progress:
                    on_progress(record)
    except torch.OutOfMemoryError:
        raise TitlecraftError(_out_of_memory_advice(config, out)) from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted_advice(state_dir)) from None
    bar.close()
    progress.seconds = time.perf_counter() - started
    if ranks.main:
        _publish(out, config, info, progress, model, len(examples), provenance)
        (out / "ranks").mkdir(exist_ok=True)
        # Finished: the resume state goes, in one rename first, so a kill meanwhile never leaves a state
        # without its progress (which a re-run would take for no state, and train again from scratch).
        finished = out / f".{STATE_DIR}.finished"
        shutil.rmtree(finished, ignore_errors=True)
        if state_dir.exists():
            os.replace(state_dir, finished)
        shutil.rmtree(finished, ignore_errors=True)
    barrier()
    (out / "ranks" / f"rank{ranks.rank}.json").write_text(json.dumps({"rank": ranks.rank, "examples": seen_examples}))
    return out


def _read_data(config: TrainConfig) -> tuple[list, list[list], list, int]:
    """The training pairs (sampled to ``limit``), each extra file's pairs, the validation sample and how
    many validation pairs were dropped for being trained on."""
    train_pairs = read_pairs(config.train)
    if config.limit:
        train_pairs = random.Random(config.seed).sample(train_pairs, min(config.limit, len(train_pairs)))
    extra_pairs = [read_pairs(extra) for extra in config.extra]
    for extra, pairs in zip(config.extra, extra_pairs, strict=True):
        if not pairs:  # trained without the curated pairs the user asked for
            raise TitlecraftError(f"--extra {extra} holds no pairs; export them with titlecraft export --format sft")
    if not train_pairs and not any(extra_pairs):
        raise TitlecraftError(f"no training examples in {config.train}")
    val_pairs: list = []
    trained_on = 0
    if config.val:
        val_pairs = read_pairs(config.val)
        if not val_pairs:  # no validation would run, and no best checkpoint be picked, without a word
            raise TitlecraftError(f"--val {config.val} holds no pairs")
        val_pairs, trained_on = _held_out(val_pairs, [train_pairs, *extra_pairs], config.val)
        val_pairs = random.Random(config.seed).sample(val_pairs, min(config.val_limit, len(val_pairs)))
    return train_pairs, extra_pairs, val_pairs, trained_on


def _held_out(val_pairs: list, training: list[list], val_path: str) -> tuple[list, int]:
    """The validation pairs whose abstract is not trained on, and how many were: a loss measured on
    training pairs falls to the end and would pick the most overfit checkpoint as the best."""
    trained = {normalise_whitespace(abstract) for pairs in training for abstract, _ in pairs}
    held_out = [pair for pair in val_pairs if normalise_whitespace(pair[0]) not in trained]
    if not held_out:
        raise TitlecraftError(
            f"--val {val_path}: all its {len(val_pairs)} pairs are training pairs too, so its loss could not "
            "pick the best checkpoint; pass pairs kept out of training (titlecraft prepare writes validation.parquet)"
        )
    return held_out, len(val_pairs) - len(held_out)


def _refuse_examples_beyond_the_context(examples: Sequence[Example], context: int, encoder: ExampleEncoder) -> None:
    """Refuse examples longer than the model's positions, naming an abstract limit that fits them all: they
    failed at the first step with an IndexError from inside a learned position embedding (GPT-Neo, GPT-2)
    or, with rotary positions, trained on positions beyond those the model learned and generates within."""
    too_long = [example for example in examples if len(example.input_ids) > context]
    if not too_long:
        return
    longest_title = max(example.target_tokens for example in examples)
    fitting = context - encoder.template_tokens - longest_title - encoder.CUT_MARGIN
    advice = (
        f"lower --max-abstract-tokens (now {encoder.max_abstract_tokens}) to {fitting} or less"
        if fitting >= 1
        else f"their titles alone take up to {longest_title} tokens: are the data's title and abstract swapped?"
    )
    raise TitlecraftError(
        f"{len(too_long)} of the {len(examples)} training and validation examples are longer than the model's "
        f"context of {context} tokens (the longest holds {max(len(e.input_ids) for e in too_long)}); {advice}"
    )


def _interrupted_advice(state_dir: Path) -> str:
    """What a run stopped with ctrl+c kept, so the researcher knows that re-running it resumes."""
    progress = state_dir / "progress.json"
    if not progress.is_file():
        return "no step was saved yet; the same command starts the run again"
    step = json.loads(progress.read_text())["step"]
    return f"step {step} is saved in {state_dir}; the same command resumes from there"


def _saved_step(out: Path) -> int | None:
    """The step a re-run resumes from, if one was saved."""
    saved = out / STATE_DIR / "progress.json"
    return json.loads(saved.read_text())["step"] if saved.is_file() else None


# The errors of a disk without room for a save: full, over a quota, or over a file-size limit.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@contextlib.contextmanager
def _disk_errors_said_in_words(out: Path, step: int) -> Iterator[None]:
    """A save the disk refuses (full, a quota; or a folder made read-only) is one line naming the cause, what
    to do (make room only where room is what lacks) and what a re-run resumes from, not safetensors' or
    torch's traceback. The saves replace folders only once complete, so the last
    complete state is intact."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, SafetensorError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        code = error.errno if isinstance(error, OSError) else None
        if isinstance(error, SafetensorError):  # "Error while serializing: I/O error: <cause> (os error N)"
            found = re.search(r"\(os error (\d+)\)", reason)
            code = int(found[1]) if found else None
            reason = reason.rsplit("I/O error: ", 1)[-1].split(" (os error")[0]
        remedy = "make room" if code in _NO_ROOM else "fix that"  # a read-only folder is no full disk
        saved = _saved_step(out)
        kept = f"it resumes from step {saved}" if saved is not None else "no step is saved yet: it starts again"
        raise TitlecraftError(f"could not save step {step} in {out}: {reason}; {remedy} and re-run the same command ({kept})") from None


def _out_of_memory_advice(config: TrainConfig, out: Path) -> str:
    """What to do when a step does not fit: smaller micro-batches, the same effective batch; and what was kept.
    Those settings shape the run's steps, so a saved run is not resumed with them: they need a new --out."""
    saved = _saved_step(out)
    kept = (
        f", into a new --out: the run saved at step {saved} in {out} resumes only with its own settings"
        if saved is not None
        else "; nothing was saved yet (the first save comes at the first validation step)"
    )
    smaller = max(1, config.batch_size // 2)
    return (
        f"the GPU ran out of memory at batch size {config.batch_size}: re-run with --batch-size {smaller} "
        f"--grad-accum {config.grad_accum * 2} (the same examples per step) or a lower --max-abstract-tokens{kept}"
    )


def _replan_for_time_budget(
    progress: Progress, config: TrainConfig, started: float, clock_start: float, timed_steps: int, ranks: Ranks,
    device: str,
) -> None:
    """Shrink the planned steps to fit --max-minutes, so the cosine schedule still completes.

    The step time is measured over ``timed_steps`` steps after a few warm-up steps (CUDA start-up would
    inflate it), or over all steps so far when they already took BUDGET_CLOCK_SHARE of the budget (slow
    CPU steps); 5% of the budget is kept for validation runs and saves. Data-parallel processes all take
    the main process's plan: each planning from its own clock, processes that reached the loop apart
    planned other step counts, and the one with steps left hung in its next step's collective.
    """
    now = time.perf_counter()
    per_step = (now - clock_start) / timed_steps
    remaining = 0.95 * config.max_minutes * 60 - (now - started)
    affordable = progress.step + int(remaining / per_step)
    affordable = int(all_reduce_sum([float(affordable) if ranks.main else 0.0], device)[0])
    if affordable < progress.planned_steps:
        fitting = max(progress.step + 1, affordable)
        _log(f"time budget: {fitting} of {progress.planned_steps} steps fit in {config.max_minutes} min", ranks)
        progress.planned_steps = fitting


def _provenance(config: TrainConfig) -> dict:
    """The hashes of what the run starts from (data files, a continued adapter): computed once, as the
    data files alone can be tens of MB and the metadata is written at every improvement."""
    data_files = [config.train, *config.extra] + ([config.val] if config.val else [])
    provenance = {"data": [{"path": str(p), "sha256": file_sha256(p)} for p in data_files]}
    if config.init_adapter:
        folder, _ = adapter_checkpoint(config.init_adapter)
        provenance["init_adapter"] = {"path": str(folder), "sha256": file_sha256(folder / ADAPTER_WEIGHTS)}
    return provenance


def _meta(config: TrainConfig, info, progress: Progress, model, example_count: int, provenance: dict) -> dict:
    meta = {
        "name": Path(config.out).name,
        "template": config.template,
        "base": config.base,
        "base_name": info.name,
        "data": provenance["data"],
        "examples": example_count,
        "steps": progress.step,
        "planned_steps": progress.planned_steps,
        "tokens_seen": progress.tokens_seen,
        "seconds": round(progress.seconds, 1),
        "best_val_loss": progress.best_val_loss,
        "best_step": progress.best_step,
        "history": progress.history,
        "config": asdict(config),
        # What the defaults resolved to: "config" keeps the options as given ("lr": null, "device": "auto").
        "trained_with": {
            "lr": config.learning_rate,
            "device": info.device,
            "precision": "bf16 autocast" if config.uses_bf16(info.device) else "fp32",
        },
    }
    if config.lora:
        meta["lora"] = lora_settings(model)
    if "init_adapter" in provenance:
        meta["init_adapter"] = provenance["init_adapter"]
    return meta


def _publish(
    out: Path, config: TrainConfig, info, progress: Progress, model, example_count: int, provenance: dict
) -> None:
    """Make the best checkpoint the run's result: ``out`` itself holds weights and titlecraft.json."""
    best = out / "best"
    meta = _meta(config, info, progress, model, example_count, provenance)
    if best.is_dir():
        best_meta = json.loads((best / CHECKPOINT_META).read_text())
        meta.update({k: best_meta[k] for k in ("steps",)})
        meta["history"] = progress.history
        written = best / f".{CHECKPOINT_META}.partial"
        written.write_text(json.dumps(meta, indent=2))
        os.replace(written, best / CHECKPOINT_META)
        # titlecraft.json goes last: until it has, a re-run finds the rest of best/ and finishes the move.
        for item in sorted(best.iterdir(), key=lambda item: item.name == CHECKPOINT_META):
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
        best.rmdir()
