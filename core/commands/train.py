"""``titlecraft train``: fine-tune a model on prepared pairs (plus curated exports) into a checkpoint."""

from __future__ import annotations

import argparse
import json

from core.distributed import is_main_process
from core.paths import refuse_empty_path
from core.train import PRECISIONS, TrainConfig, train


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune a model (loss on titles only); resumes if interrupted",
        description="Fine-tune a causal LM on (abstract, title) pairs. Re-running the same command resumes.",
    )
    parser.add_argument("--base", default="embedded", help="embedded (default), embedded-base, a hub id or a checkpoint dir")
    parser.add_argument("--train", required=True, help="training pairs: a prepared parquet split or an SFT JSONL export")
    parser.add_argument("--val", help="validation parquet: its loss picks the best checkpoint (without it, the last step is published)")
    # extend: with argparse's default, `--extra a.jsonl --extra b.jsonl` trained on b.jsonl alone, without a word
    parser.add_argument("--extra", nargs="*", action="extend", default=[],
                        help="curated SFT JSONL exports (titlecraft export --format sft): --extra A B or --extra A --extra B")
    parser.add_argument("--extra-weight", type=float, default=1.0, help="loss weight of the --extra pairs (default 1)")
    parser.add_argument("--out", required=True, help="checkpoint directory, e.g. runs/NAME")
    parser.add_argument("--lora", action="store_true", help="train a LoRA adapter (peft) instead of all weights")
    parser.add_argument(
        "--init-adapter",
        help="continue training this LoRA adapter: 'embedded' (the shipped one) or a --lora checkpoint dir; "
        "its base, rank and template are kept, so the result replaces it",
    )
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, help="peak learning rate (default 1e-4, or 1e-3 with --lora)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--max-abstract-tokens", type=int, default=384)
    parser.add_argument("--eval-every", type=int, default=200, help="steps between validation runs and saves")
    parser.add_argument("--limit", type=int, help="train on a random sample of this many pairs")
    parser.add_argument("--max-minutes", type=float, help="shrink the schedule to finish within this time")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the decoder layers (about a minute): fuses their kernels on a GPU; no faster on a CPU",
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on CPU; bf16 also pays on CPUs with AMX (recent Xeons: 1.3-1.7x faster)",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refuse_empty_path(args.out, "--out")
    config = TrainConfig(
        train=args.train,
        val=args.val,
        out=args.out,
        base=args.base,
        extra=args.extra,
        extra_weight=args.extra_weight,
        lora=args.lora,
        init_adapter=args.init_adapter,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_abstract_tokens=args.max_abstract_tokens,
        eval_every=args.eval_every,
        limit=args.limit,
        max_minutes=args.max_minutes,
        compile=args.compile,
        precision=args.precision,
        device=args.device,
        seed=args.seed,
    )
    out = train(config, on_progress=lambda record: None)
    if not is_main_process():
        return 0
    print(f"checkpoint: {out}")
    print(json.dumps({k: v for k, v in json.loads((out / "titlecraft.json").read_text()).items() if k in ("steps", "best_val_loss", "seconds", "tokens_seen")}))
    return 0
