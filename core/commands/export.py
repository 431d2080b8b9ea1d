"""``titlecraft export``: write curated pairs as SFT, chat, DPO, parquet, CSV or a datasets folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.export import FORMATS, export
from core.paths import refuse_empty_path
from core.store import DB_PATH_ENV, Store


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help="write curated pairs as fine-tuning data")
    parser.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    parser.add_argument("--out", required=True, help="the file (or folder, for hf) to write")
    parser.add_argument("--since", metavar="DATE", help="only pairs decided on or after this date (YYYY-MM-DD)")
    parser.add_argument("--model", metavar="SPEC", help="only pairs whose title came from this model spec "
                        "(a checkpoint folder however its path is spelled)")
    parser.add_argument("--db", type=Path, help=f"the store (default: ${DB_PATH_ENV} or data/titlecraft.db)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refuse_empty_path(args.out, "--out")
    with Store(args.db, create=False, reads_only=True) as store:
        result = export(store, args.format, args.out, since=args.since, model=args.model)
    print(f"wrote {result.rows} {result.format} row{'' if result.rows == 1 else 's'} to {result.path}")
    return 0
