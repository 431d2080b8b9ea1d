"""A handful of real (abstract, title) rows from the shared arXiv pair file, read without loading all of it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

SHARED_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-ai" / "pairs.parquet"


def shared_pairs(count: int) -> pd.DataFrame:
    """The first ``count`` rows of the shared pair file (one small batch, not the 188k rows)."""
    batch = next(pq.ParquetFile(SHARED_PAIRS).iter_batches(batch_size=count))
    return batch.to_pandas()
