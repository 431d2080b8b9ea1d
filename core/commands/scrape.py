"""``titlecraft scrape``: harvest arXiv (abstract, title) pairs over OAI-PMH into a pair parquet file."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from core.commands import comma_separated


def _iso_date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scrape",
        help="harvest arXiv pairs over OAI-PMH; re-running resumes an interrupted harvest",
        description=(
            "Harvest titles and abstracts of an arXiv set over OAI-PMH (through arxivscraper). "
            "--from/--until select records by their OAI datestamp (last update), so older papers that "
            "were revised in the window are included; each row's date is its v1 submission date. "
            "Re-running the same command resumes an interrupted harvest (on a later day too: default dates "
            "stay those of the day it started). "
            "The endpoint is $TITLECRAFT_OAI_URL or --oai-url (default http://export.arxiv.org/oai2)."
        ),
    )
    parser.add_argument("--category", required=True, help="arXiv set as arxivscraper names it: cs, stat, cs.CL, ...")
    # append: with argparse's default, `--subcats cs.AI --subcats cs.LG` kept cs.LG records alone, without a word
    parser.add_argument("--subcats", action="append", help="keep records in any of these categories, e.g. "
                        "cs.AI,cs.LG,cs.CL (or --subcats cs.AI --subcats cs.LG)")
    parser.add_argument("--from", dest="date_from", type=_iso_date, help="first datestamp, YYYY-MM-DD (default: 1st of this month)")
    parser.add_argument("--until", dest="date_until", type=_iso_date, help="last datestamp, YYYY-MM-DD (default: today)")
    parser.add_argument("--out", help="pair parquet to write (default data/raw/arxiv-CATEGORY-FROM-UNTIL.parquet, "
                        "never replacing a finished harvest there)")
    parser.add_argument("--oai-url", help="OAI-PMH endpoint (overrides $TITLECRAFT_OAI_URL)")
    parser.set_defaults(func=run)


def default_out(args: argparse.Namespace) -> str:
    """The parquet file of a harvest without --out. Its name holds neither the subcategories nor the
    month a defaulted --from stands for, so a file there from a finished harvest may be another's (last
    month's, other subcats): it is refused, never replaced. An unfinished harvest there resumes."""
    from core.arxiv import PARTIAL_SUFFIX
    from core.errors import TitlecraftError

    out = Path(f"data/raw/arxiv-{args.category}-{args.date_from or 'month'}-{args.date_until or 'today'}.parquet")
    if out.exists() and not out.with_name(out.name + PARTIAL_SUFFIX).exists():
        raise TitlecraftError(
            f"{out} holds an earlier harvest, which this one would replace: name the file to write with --out "
            "(or move that one away to harvest into the default name again)"
        )
    return str(out)


def run(args: argparse.Namespace) -> int:
    from core.arxiv import harvest
    from core.paths import refuse_empty_path

    refuse_empty_path(args.out, "--out")
    out = args.out or default_out(args)
    result = harvest(
        args.category,
        out,
        subcats=comma_separated(args.subcats),
        date_from=args.date_from,
        date_until=args.date_until,
        base_url=args.oai_url,
    )
    resumed = ", resumed" if result.resumed else ""
    print(f"{result.rows:,} pairs written to {result.out} ({result.records:,} records in {result.pages} pages{resumed})")
    return 0
