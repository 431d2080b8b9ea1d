"""Could a learned ranking pick a better top candidate than the score does? An upper-bound probe.

    python scripts/learned_rerank.py reports/embedded-finetuned [--splits 10]

Each shown candidate of an evaluation report gets seven features: its score (mean token
log-probability), its rank, its consensus (mean ROUGE-L F1 to the other candidates of its set), its word
count and the square root of it, whether it has a colon, and its ROUGE-1 overlap with the abstract. A
ridge regression learns ROUGE-L against the reference from the features of half the abstracts and picks
the top candidate of the other half; the halves swap, over ``--splits`` random halvings. It prints the
learned pick's top-1 ROUGE-L against the generator's own top candidate on the same abstracts, with the
paired difference (mean and standard error over abstracts, averaged over the splits). The weights are
learned on abstracts of the very split they are tested on, so the figure flatters the learned ranking.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.metrics import rouge  # noqa: E402

RIDGE = 1.0


def candidate_features(sample: dict) -> np.ndarray:
    texts = [candidate["text"] for candidate in sample["candidates"]]
    rows = []
    for index, candidate in enumerate(sample["candidates"]):
        others = [rouge(candidate["text"], other)["rougeL"] for j, other in enumerate(texts) if j != index]
        words = len(candidate["text"].split())
        rows.append([
            candidate["score"],
            -candidate["rank"],
            statistics.fmean(others) if others else 0.0,
            words,
            words**0.5,
            float(":" in candidate["text"]),
            rouge(candidate["text"], sample["abstract"])["rouge1"],
        ])
    return np.array(rows, dtype=float)


def fit_ridge(features: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised ridge regression: (mean, scale, weights with the intercept last)."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-9
    design = np.c_[(features - mean) / scale, np.ones(len(features))]
    weights = np.linalg.solve(design.T @ design + RIDGE * np.eye(design.shape[1]), design.T @ targets)
    return mean, scale, weights


def predict(model: tuple[np.ndarray, np.ndarray, np.ndarray], features: np.ndarray) -> np.ndarray:
    mean, scale, weights = model
    return np.c_[(features - mean) / scale, np.ones(len(features))] @ weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--splits", type=int, default=10)
    args = parser.parse_args()
    samples = [json.loads(line) for line in (args.report / "samples.jsonl").read_text().splitlines() if line]
    samples = [sample for sample in samples if len(sample["candidates"]) > 1]
    features = [candidate_features(sample) for sample in samples]
    quality = [np.array([rouge(c["text"], s["reference"])["rougeL"] for c in s["candidates"]]) for s in samples]
    shown_top = [float(values[int(np.argmin([c["rank"] for c in s["candidates"]]))]) for s, values in zip(samples, quality, strict=True)]
    learned_means, differences = [], []
    for split in range(args.splits):
        order = np.random.default_rng(split).permutation(len(samples))
        halves = (order[: len(order) // 2], order[len(order) // 2 :])
        picked = np.zeros(len(samples))
        for train, test in (halves, halves[::-1]):
            model = fit_ridge(np.vstack([features[i] for i in train]), np.concatenate([quality[i] for i in train]))
            for i in test:
                picked[i] = quality[i][int(np.argmax(predict(model, features[i])))]
        learned_means.append(float(picked.mean()))
        differences.append(picked - np.array(shown_top))
    mean_difference = np.mean(differences, axis=0)
    error = float(mean_difference.std(ddof=1) / len(mean_difference) ** 0.5)
    print(
        f"{args.report}: {len(samples)} abstracts; top-1 ROUGE-L shown {statistics.fmean(shown_top):.1f}, "
        f"learned ranking {statistics.fmean(learned_means):.1f} (paired {mean_difference.mean():+.1f} ± {error:.1f}, "
        f"over {args.splits} halvings)"
    )


if __name__ == "__main__":
    main()
