"""Console entry point: core's subcommands plus ``tui``, which a bare ``titlecraft`` starts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.cli import build_parser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser, subparsers = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["generate"]  # until the TUI lands, a bare `titlecraft` runs the generator
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
