"""``titlecraft import FILE``: queue abstracts (and curated titles from SFT exports) for curation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.importer import import_file, read_rows
from core.paths import refuse_empty_path
from core.store import DB_PATH_ENV, Store


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import",
        help="queue abstracts from JSONL, CSV, parquet, an SFT export or plain text",
        description=(
            "Queue abstracts for curation. JSONL/CSV/parquet rows need an 'abstract' column and may have "
            "'title' (kept as the reference title) and 'arxiv_id'; SFT exports ({prompt, completion}) and "
            "csv/parquet exports ('title' beside 'reference_title') import their titles as curated; .txt "
            "files are plain text, abstracts separated by blank lines. Re-importing a file adds nothing twice, so "
            "running the same command again finishes an import stopped with ctrl+c."
        ),
    )
    parser.add_argument("file", type=Path, help="the file to import")
    parser.add_argument("--db", help=f"the store (default: ${DB_PATH_ENV} or data/titlecraft.db)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    refuse_empty_path(args.db, "--db")
    rows = read_rows(args.file)  # a file with nothing to import is refused before a new store is created
    with Store(args.db) as store:
        summary = import_file(store, args.file, rows)
    for problem in summary.problems:
        print(f"error: {problem}", file=sys.stderr)
    for clash in summary.reference_title_clashes:
        print(f"warning: {clash}", file=sys.stderr)
    line = (
        f"imported {summary.imported}, already present {summary.already_present}, "
        f"errors {len(summary.problems)} (into {store.path})"
    )
    if clashes := len(summary.reference_title_clashes):
        rows = "1 row" if clashes == 1 else f"{clashes} rows"
        line += f"; {rows} repeated an abstract with a different reference title (the first title was kept)"
    print(line)
    return 1 if summary.problems else 0
