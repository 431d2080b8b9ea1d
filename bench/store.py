"""Durable decisions per second: the store's commit-per-decision against baselines in the same run.

The store commits every decision on its own with WAL and synchronous=FULL. FULL rather than NORMAL:
under WAL, NORMAL already survives a process crash, but a power cut can drop the last commits, and a
curation decision is a person's work. A person makes a few decisions a second at most, so the only
question is whether an fsync per decision is fast enough, and this prints it next to

  * plain sqlite3 autocommit: the same INSERTs, one commit each, same pragmas (the store's own cost);
  * one transaction: the same INSERTs committed once (what a commit per decision costs).

    python bench/store.py [--decisions 500] [--rounds 7] [--dir FOLDER]   # FOLDER: the disk to measure on
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.store import Store  # noqa: E402

INSERT_DECISION = (
    "INSERT INTO decisions (abstract_id, candidate_id, action, reason, decided_at) "
    "VALUES (?, ?, 'reject', ?, '2026-01-01T00:00:00.000+00:00')"
)


def prepared_store(path: Path) -> tuple[Store, int, list[int]]:
    store = Store(path)
    abstract_id = store.add_abstract("An abstract whose candidates are decided on again and again.")
    _, candidate_ids = store.record_generation(
        abstract_id, "bench", "bench", {}, 0, "cpu", 0.0, 0.0, [{"text": f"Candidate {n}"} for n in range(8)]
    )
    return store, abstract_id, candidate_ids


def store_decisions(folder: Path, count: int) -> float:
    store, _, candidate_ids = prepared_store(folder / "store.db")
    with store:
        start = time.perf_counter()
        for step in range(count):
            store.reject(candidate_ids[step % len(candidate_ids)], reason=f"reason {step}")
        return count / (time.perf_counter() - start)


def raw_inserts(folder: Path, name: str, count: int, one_transaction: bool) -> float:
    store, abstract_id, candidate_ids = prepared_store(folder / name)
    store.close()
    connection = sqlite3.connect(folder / name, isolation_level=None)
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA foreign_keys = ON")
    start = time.perf_counter()
    if one_transaction:
        connection.execute("BEGIN")
    for step in range(count):
        connection.execute(INSERT_DECISION, (abstract_id, candidate_ids[step % len(candidate_ids)], f"reason {step}"))
    if one_transaction:
        connection.execute("COMMIT")
    rate = count / (time.perf_counter() - start)
    connection.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=500, help="decisions per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are printed")
    parser.add_argument("--dir", type=Path, default=None, help="folder on the disk to measure (default: temp)")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"store": [], "autocommit": [], "batched": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        # Interleaved rounds, so a burst of disk activity from elsewhere hits all three alike.
        for round_number in range(args.rounds):
            round_folder = Path(folder) / str(round_number)
            round_folder.mkdir()
            rates["store"].append(store_decisions(round_folder, args.decisions))
            rates["autocommit"].append(raw_inserts(round_folder, "autocommit.db", args.decisions, False))
            rates["batched"].append(raw_inserts(round_folder, "batched.db", args.decisions, True))
    ours, autocommit, batched = (statistics.median(rates[name]) for name in ("store", "autocommit", "batched"))
    print(f"{args.rounds} rounds x {args.decisions} decisions, WAL + synchronous=FULL, under {folder}; medians:")
    print(f"store, one durable commit per decision: {ours:10.0f} decisions/s")
    print(f"plain sqlite3 autocommit, same INSERTs: {autocommit:10.0f} decisions/s  "
          f"(store / this = {ours / autocommit:.2f})")
    print(f"same INSERTs in one transaction:        {batched:10.0f} decisions/s  "
          f"(store / this = {ours / batched:.3f})")


if __name__ == "__main__":
    main()
