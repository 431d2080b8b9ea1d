"""Console entry point: core's subcommands plus ``tui``, which a bare ``titlecraft`` starts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from core.cli import build_parser, run
from core.paths import refuse_empty_path

TUI = "tui"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(TUI, help="curate titles in the terminal app (what a bare `titlecraft` runs)")
    parser.add_argument(
        "--model", default="embedded", help="embedded, embedded-base, a checkpoint directory or a hub id"
    )
    parser.add_argument("--db", default=None, help="the SQLite store (default: $TITLECRAFT_DB or data/titlecraft.db)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    from tui.app import TitlecraftApp

    refuse_empty_path(args.db, "--db")
    TitlecraftApp(model_spec=args.model, db_path=args.db, device=args.device).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser, subparsers = build_parser()
    register(subparsers)
    argv = list(sys.argv[1:] if argv is None else argv)
    # `titlecraft` and `titlecraft --db x.db` open the app; `titlecraft --help` still lists everything.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = [TUI, *argv]
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
