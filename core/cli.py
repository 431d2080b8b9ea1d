"""The ``titlecraft`` command line: subcommands are discovered from the modules in core.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings
from collections.abc import Sequence

from core import commands
from core.errors import TitlecraftError, TitlecraftWarning


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """Build the parser with every subcommand found in core.commands registered."""
    parser = argparse.ArgumentParser(prog="titlecraft", description="Title your papers with a curated small LM.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser, subparsers


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Print our own warnings as one readable line instead of Python's source-location format, and
    any warning through tqdm.write: a progress bar being drawn is cleared first and redrawn below,
    where a plain print would continue the bar's line."""
    from tqdm import tqdm

    if issubclass(category, TitlecraftWarning):
        text, file = f"warning: {message}", sys.stderr
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n")
    tqdm.write(text, file=file or sys.stderr)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Dispatch parsed arguments; user-facing errors become one line on stderr and exit status 2."""
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except TitlecraftError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `titlecraft generate | head` closed the pipe: the reader has what it wanted
        # Python flushes stdout again at exit, which would fail once more; point it at nothing instead.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command a closed pipe ended
    except OSError as error:  # a file the command needed could not be read or written: the user's to fix
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # a command may say what it kept (train: the step to resume from)
        print(f"interrupted: {interrupt}" if str(interrupt) else "interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parser()
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    sys.exit(main())
