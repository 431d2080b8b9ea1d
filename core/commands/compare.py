"""``titlecraft compare``: one table and one chart over several ``titlecraft eval`` folders."""

from __future__ import annotations

import argparse

from core.paths import refuse_empty_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare evaluation runs in one markdown table and one PNG chart",
        description=(
            "Read metrics.json from each evaluation folder and write a markdown table (--out, a .md name) and a bar "
            "chart beside it (same name, .png). Warns when the runs scored different abstracts, and names the "
            "generation settings (temperature, dtype, ...) in which they differ."
        ),
    )
    parser.add_argument("runs", nargs="+", metavar="FOLDER", help="folders written by `titlecraft eval`")
    parser.add_argument("--out", default="reports/compare.md", help="markdown file (default reports/compare.md)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.compare import compare

    refuse_empty_path(args.out, "--out")
    table, chart, _ = compare(args.runs, args.out)
    print(f"wrote {table} and {chart}")
    return 0
