"""``titlecraft stats``: how much has been curated, and how each model's candidates fared."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from core.store import DB_PATH_ENV, Store


def register(subparsers) -> None:
    parser = subparsers.add_parser("stats", help="count abstracts, candidates, decisions and curated pairs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--db", type=Path, help=f"the store (default: ${DB_PATH_ENV} or data/titlecraft.db)")
    parser.set_defaults(func=run)


def collect(store: Store) -> dict[str, Any]:
    with store.snapshot():
        models = [
            {**asdict(stats), "acceptance_rate": stats.acceptance_rate, "edit_rate": stats.edit_rate}
            for stats in store.model_stats()
        ]
        return {**store.counts(), "models": models}


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def run(args: argparse.Namespace) -> int:
    with Store(args.db, create=False, reads_only=True) as store:
        stats = collect(store)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    decisions = stats["decisions"]
    per_action = ", ".join(f"{action} {count}" for action, count in decisions.items())
    print(f"abstracts      {stats['abstracts']}")
    print(f"generations    {stats['generations']}")
    print(f"candidates     {stats['candidates']}")
    print(f"decisions      {sum(decisions.values())} ({per_action})")
    print(f"curated pairs  {stats['curated']}")
    print(f"rejected       {stats['rejected']}")
    print(f"queued         {stats['queued']}")
    for model in stats["models"]:
        print(
            f"model {model['model_spec']}: {model['candidates']} candidates, {model['decided']} decided, "
            f"accepted {_rate(model['acceptance_rate'])}, edited {_rate(model['edit_rate'])}"
        )
    return 0
