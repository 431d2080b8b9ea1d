"""``titlecraft generate``: candidate titles for one abstract, filling in live in the terminal.

Torch and transformers are imported only when the command runs, so other subcommands start quickly.
"""

from __future__ import annotations

import argparse
import codecs
import json
import shutil
import sys
import time
import unicodedata
from pathlib import Path
from typing import TextIO

from core.errors import TitlecraftError
from core.prompts import EMPTY_ABSTRACT, normalise_whitespace

REDRAWS_PER_SECOND = 20


def printable(text: str) -> str:
    """Model output shown in a terminal: control characters (escape sequences) become U+FFFD."""
    return "".join(char if char.isprintable() else "\ufffd" for char in text)


def cell_width(char: str) -> int:
    """Terminal columns a character takes: two for wide CJK/emoji, none for combining marks."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def fit_to_width(line: str, columns: int) -> str:
    """``line`` cut to at most ``columns`` terminal columns, ending in "…" when cut. Counting characters
    instead let CJK or emoji titles wrap onto a second row, which the in-place redraw does not move up
    over, so every redraw left a garbled copy behind."""
    if sum(map(cell_width, line)) <= columns:
        return line
    kept, used = [], 1  # room for the ellipsis
    for char in line:
        used += cell_width(char)
        if used > columns:
            break
        kept.append(char)
    return "".join(kept) + "…"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate candidate titles for an abstract (from --file or stdin)",
        description="Stream N candidate titles for an abstract, then print them ranked with scores and flags.",
    )
    parser.add_argument("--model", default="embedded", help="embedded, embedded-base, a checkpoint directory or a hub id")
    parser.add_argument("-n", type=int, default=None, help="how many distinct candidates (default: 5)")
    parser.add_argument("--temperature", type=float, default=None, help="0 is greedy (default: 0.8)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default: 0.95)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="token limit per title (default: 40)")
    parser.add_argument("--seed", type=int, default=None, help="fix the random stream to repeat a run")
    parser.add_argument("--greedy-first", action=argparse.BooleanOptionalAction, default=None,
                        help="decode the first candidate greedily, the others sampled (default: on)")
    parser.add_argument("--oversample", type=int, default=None, metavar="K", help="also sample K unseen "
                        "candidates and keep the n best-ranked of all (default: 3; 0 samples exactly n)")
    parser.add_argument("--diversity", type=float, default=None, metavar="W", help="when keeping n of more, "
                        "penalise a candidate's ROUGE-L to those kept by W (default: 1.5; 0 keeps the n best-ranked)")
    parser.add_argument("--ranking", choices=("score", "consensus"), default=None, help="order by mean "
                        "log-probability (default) or by agreement with the other candidates")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--file", type=Path, help="read the abstract from this file instead of stdin")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the live view")
    parser.set_defaults(func=run)


def read_abstract(path: Path | None) -> str:
    """The abstract from a file or stdin, as UTF-8 text (a binary file is a clear error, not a crash).

    A leading UTF-8 byte order mark (Notepad and some clipboards add one) is dropped: it is no part of
    the abstract, and a mark alone would otherwise pass as a non-empty abstract."""
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise TitlecraftError(f"cannot read {path}: {error.strerror or error}") from None
    else:
        if sys.stdin.isatty():
            print("Paste the abstract, then press Ctrl-D on an empty line:", file=sys.stderr)
        data = sys.stdin.buffer.read()
    mark = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[mark:].decode("utf-8")
    except UnicodeDecodeError as error:
        source = path if path is not None else "standard input"
        raise TitlecraftError(
            f"{source} is not UTF-8 text (byte {mark + error.start} cannot be decoded): give the abstract as plain text"
        ) from None


def sampling_params(args: argparse.Namespace):
    """SamplingParams with only the options given on the command line overriding its defaults."""
    from core.generate import SamplingParams

    given = {
        "n": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "ranking": args.ranking,
        "greedy_first": args.greedy_first,
        "oversample": args.oversample,
        "diversity": args.diversity,
    }
    return SamplingParams(**{name: value for name, value in given.items() if value is not None})


class LiveView:
    """Shows candidates as they stream: redrawn in place on a terminal, one line per finished
    candidate otherwise (pipes and logs get no escape codes)."""

    def __init__(self, out: TextIO):
        self.out = out
        self.redraw = out.isatty()
        self.texts: dict[int, tuple[str, bool]] = {}
        self.lines_drawn = 0
        self.last_draw = 0.0

    def __call__(self, event) -> None:
        self.texts[event.index] = (event.text, event.finished)
        if not self.redraw:
            if event.finished:
                print(f"[{event.index + 1}] {printable(event.text)}", file=self.out, flush=True)
            return
        now = time.monotonic()
        if event.finished or now - self.last_draw >= 1 / REDRAWS_PER_SECOND:
            self.draw()
            self.last_draw = now

    def draw(self) -> None:
        size = shutil.get_terminal_size()
        lines = []
        for index in sorted(self.texts):
            text, finished = self.texts[index]
            line = f"{'✓' if finished else '…'} {index + 1:>2}. {printable(text)}"
            lines.append(fit_to_width(line, size.columns - 1))
        # The cursor cannot move up past the top row: a list taller than the terminal would be redrawn
        # below itself, scrolling a partial copy into the history at every redraw.
        height = max(2, size.lines - 1)
        if len(lines) > height:
            lines = [*lines[: height - 1], f"… and {len(lines) - height + 1} more"]
        up = f"\x1b[{self.lines_drawn}F" if self.lines_drawn else ""
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.lines_drawn = len(lines)

    def close(self) -> None:
        if self.redraw and self.texts:
            self.draw()


def print_ranked(result, out: TextIO) -> None:
    first = "-" if result.first_token_seconds is None else f"{result.first_token_seconds:.2f} s"
    count = len(result.candidates)
    print(
        f"\n{count} candidate{'' if count == 1 else 's'} from {result.model} on {result.device} in "
        f"{result.seconds:.2f} s (first token {first}, {result.tokens_per_second:.0f} tokens/s)",
        file=out,
    )
    for candidate in result.candidates:
        flags = f"  [{', '.join(candidate.flags)}]" if candidate.flags else ""
        print(f"{candidate.rank:>2}. {printable(candidate.text)}  ({candidate.score:.2f}){flags}", file=out)


def result_json(result) -> dict:
    return {
        "candidates": [{"text": c.text, "score": c.score, "flags": c.flags} for c in result.candidates],
        "model": result.model,
        "device": result.device,
        "seconds": result.seconds,
        "first_token_seconds": result.first_token_seconds,
        "notice": result.notice,
    }


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    if params.temperature == 0 and args.n is not None and args.n > 1:  # eval refuses this; here one title is still useful
        print(f"note: --temperature 0 decodes greedily, which gives one candidate, not {args.n}", file=sys.stderr)
    abstract = read_abstract(args.file)
    if not normalise_whitespace(abstract):
        raise TitlecraftError(EMPTY_ABSTRACT)
    from core.generate import TitleGenerator
    from core.models import load_model

    model, tokenizer, info = load_model(args.model, device=args.device)
    generator = TitleGenerator(model, tokenizer, info)
    if args.json:
        result = generator.generate(abstract, params)
        print(json.dumps(result_json(result), ensure_ascii=False))
        return 0
    view = LiveView(sys.stdout)
    result = generator.generate(abstract, params, on_event=view)
    view.close()
    if result.notice:
        print(f"note: {result.notice}", file=sys.stderr)
    print_ranked(result, sys.stdout)
    return 0
