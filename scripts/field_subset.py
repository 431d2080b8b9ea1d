"""Files for a field-adaptation check: one arXiv category's pairs, as a researcher in that field would curate them.

    python scripts/field_subset.py --category cs.RO --out /tmp/field

Writes ``curated.jsonl`` (--curated pairs of the validation split in the SFT format that
``titlecraft export --format sft`` writes), ``val.parquet`` (the next --val pairs of the validation split)
and ``test.parquet`` (all the category's test pairs), by primary category, shuffled with --seed.
docs/evaluation.md shows the train and eval commands run on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.dataset import read_pairs  # noqa: E402
from core.prompts import completion_prompt, completion_target  # noqa: E402


def in_category(path: Path, category: str):
    frame = read_pairs(path)
    primary = frame["categories"].fillna("").str.split().str[0]
    return frame[primary == category].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", default="cs.RO")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--curated", type=int, default=400)
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    validation = in_category(args.prepared / "validation.parquet", args.category).sample(frac=1, random_state=args.seed)
    curated = validation.iloc[: args.curated]
    with open(args.out / "curated.jsonl", "w", encoding="utf-8") as handle:
        for abstract, title in zip(curated["abstract"], curated["title"], strict=True):
            handle.write(json.dumps({"prompt": completion_prompt(abstract), "completion": completion_target(title)}) + "\n")
    validation.iloc[args.curated : args.curated + args.val].to_parquet(args.out / "val.parquet")
    test = in_category(args.prepared / "test.parquet", args.category)
    test.to_parquet(args.out / "test.parquet")
    print(f"{args.category}: {len(curated)} curated, {min(args.val, len(validation) - len(curated))} validation, {len(test)} test pairs in {args.out}")


if __name__ == "__main__":
    main()
