"""Title-only validation loss of model specs on one fixed sample of pairs, for quick paired comparisons.

The same loss the training loop reports (core/train.py: only title tokens and the end marker count,
abstracts cut at 384 tokens), in fp32 on the CPU, on ``--rows`` pairs drawn with ``--seed`` from
``--data``. Every spec sees the same pairs, so small differences between checkpoints are comparable.

    python scripts/validation_loss.py SPEC [SPEC ...] [--data data/prepared/validation.parquet] [--rows 250] [--threads 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import load_model  # noqa: E402
from core.train import TitleLoss, validation_loss  # noqa: E402
from core.train_data import ExampleEncoder, read_pairs  # noqa: E402

MAX_ABSTRACT_TOKENS = 384  # as the shipped adapter was trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", help="model specs: embedded, embedded-base, checkpoint folders")
    parser.add_argument("--data", default="data/prepared/validation.parquet")
    parser.add_argument("--rows", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs = read_pairs(args.data)
    random.Random(args.seed).shuffle(pairs)
    pairs = pairs[: args.rows]
    for spec in args.specs:
        start = time.perf_counter()
        model, tokenizer, info = load_model(spec, device="cpu", dtype=torch.float32)
        examples = ExampleEncoder(tokenizer, info.template, MAX_ABSTRACT_TOKENS).encode(pairs)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        loss = validation_loss(TitleLoss(model), examples, pad_id, "cpu", args.batch_size, bf16=False)
        print(f"{spec}: {loss:.4f} over {len(examples)} pairs ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
