"""Embedded model start-up: cold load (de-quantise the GGUF, merge the adapter, write the cache) vs
warm load (read the cached safetensors), in the same run, with their ratio.

    python bench/load.py [--repeats 3]

The cold load writes into a temporary cache directory, so the user's cache is left alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import EMBEDDED, EMBEDDED_BASE, load_model  # noqa: E402


def timed_load(spec: str, cache_dir: str) -> float:
    start = time.perf_counter()
    load_model(spec, device="cpu", cache_dir=cache_dir)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="warm loads to take the median of")
    args = parser.parse_args()
    print(f"{'model':16s} {'cold s':>8s} {'warm s':>8s} {'ratio':>7s}")
    for spec in (EMBEDDED_BASE, EMBEDDED):
        with tempfile.TemporaryDirectory() as cache_dir:
            cold = timed_load(spec, cache_dir)
            warm = statistics.median(timed_load(spec, cache_dir) for _ in range(args.repeats))
        print(f"{spec:16s} {cold:8.2f} {warm:8.2f} {cold / warm:6.1f}x")


if __name__ == "__main__":
    main()
