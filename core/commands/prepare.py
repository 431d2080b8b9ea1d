"""``titlecraft prepare``: clean, de-duplicate and split pair files by date into train/validation/test."""

from __future__ import annotations

import argparse

from core.commands import comma_separated
from core.dataset import DEFAULT_TOKEN_SAMPLE, DEFAULT_TRAIN_UNTIL, DEFAULT_VAL_UNTIL
from core.paths import refuse_empty_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="clean, de-duplicate and split pair files by date (train/validation/test parquet + summary)",
        description=(
            "Read pair files (.parquet or .pq, .jsonl, .csv), drop short and duplicate rows and rows whose date "
            "is not readable as YYYY-MM-DD, split by date (undated rows go to train, those whose arXiv id names a "
            "month from --train-until on are dropped), remove test titles and abstracts from the earlier splits, "
            "and write train/validation/test.parquet, summary.json, summary.md and a token-length histogram into "
            "--out. The new set replaces the --out folder as a whole (a kill never leaves old and new splits "
            "mixed), so one holding other files is refused."
        ),
    )
    # extend: with argparse's default, `--in a.parquet --in b.parquet` read b.parquet alone, dropping a without a word
    parser.add_argument("--in", dest="inputs", nargs="+", action="extend", required=True, metavar="FILE",
                        help="pair files (--in A B or --in A --in B); earlier files win duplicates")
    parser.add_argument("--out", default="data/prepared", help="output folder (default data/prepared)")
    parser.add_argument("--train-until", default=DEFAULT_TRAIN_UNTIL, help=f"train: dates before this (default {DEFAULT_TRAIN_UNTIL})")
    parser.add_argument("--val-until", default=DEFAULT_VAL_UNTIL, help=f"validation: dates before this; test: from it (default {DEFAULT_VAL_UNTIL})")
    # append: with argparse's default, `--categories cs.CL --categories cs.AI` kept cs.AI rows alone, without a word
    parser.add_argument("--categories", action="append", help="keep rows in any of these categories, e.g. "
                        "cs.CL,cs.AI (or --categories cs.CL --categories cs.AI)")
    parser.add_argument("--tokenizer", default="embedded", help="model whose tokenizer measures lengths (default: embedded)")
    parser.add_argument(
        "--token-sample",
        type=int,
        default=DEFAULT_TOKEN_SAMPLE,
        help=f"rows tokenised for the length statistics (default {DEFAULT_TOKEN_SAMPLE:,}; 0 = all rows)",
    )
    parser.set_defaults(func=run)


def load_tokenizer(spec: str):
    """The tokenizer for length statistics (its own function so tests can swap in a fast one)."""
    from core.models import load_tokenizer as load_model_tokenizer

    return load_model_tokenizer(spec)


class LazyTokenizer:
    """The --tokenizer, loaded when prepare first tokenises: by then it has read and checked the inputs
    and settings, so a mistyped file or date is reported at once, not after the embedded model was
    de-quantised for it (about 20 s on a fresh install), nor hidden by a tokenizer that cannot load."""

    def __init__(self, spec: str):
        self.spec = spec
        self.tokenizer = None

    def __call__(self, *args, **kwargs):
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.spec)
        return self.tokenizer(*args, **kwargs)


def run(args: argparse.Namespace) -> int:
    from core.dataset import prepare

    refuse_empty_path(args.out, "--out")
    summary = prepare(
        args.inputs,
        args.out,
        tokenizer=LazyTokenizer(args.tokenizer),
        tokenizer_name=args.tokenizer,
        train_until=args.train_until,
        val_until=args.val_until,
        categories=comma_separated(args.categories),
        token_sample=args.token_sample,
    )
    sizes = ", ".join(f"{name} {rows:,}" for name, rows in summary["splits"].items())
    print(f"{sizes} rows written to {args.out} (summary.md there)")
    return 0
