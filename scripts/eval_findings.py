"""The derived figures quoted in docs/evaluation.md, recomputed from evaluation reports and pair files.

    python scripts/eval_findings.py reports/embedded-finetuned reports/embedded-few-shot ...
    python scripts/eval_findings.py --copy-flag-rate data/prepared/train.parquet
    python scripts/eval_findings.py --paired OLD_REPORT NEW_REPORT
    python scripts/eval_findings.py --keep 5 REPORT_WITH_MORE_CANDIDATES
    python scripts/eval_findings.py --keep 5 --diversity 1.5 REPORT_WITH_MORE_CANDIDATES

For each report: the paired difference of top-1 ROUGE-L between consensus and score ranking (mean and
standard error over the same abstracts), and between a length-favouring ranking (mean log-probability
times the square root of the word count, i.e. roughly the summed log-probability over sqrt(length)) and
score ranking; the standard error of the score-ranked top-1 ROUGE-L, and for
few-shot reports how often the top title nearly copies (ROUGE-L >= 80) a retrieved example's title.
``--copy-flag-rate`` says how many real titles of a pair file the copy flag would mark. ``--paired``
compares two runs on the abstracts they share (top-1 and best-of-N ROUGE-L, new minus old). ``--keep K``
asks, for a report sampled with more than K candidates, what showing only the K highest-scoring would
give: best-of-K ROUGE-L against K candidates picked at random (the average over all subsets of K).
With ``--diversity W`` it instead compares, within the K + 3 highest-scoring (the pool the generator
keeps from with its default ``oversample``), the K highest-scoring with the K that ``keep_diverse`` keeps at weight W.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.candidates import copies_abstract, keep_diverse, rank_candidates  # noqa: E402
from core.generate import SamplingParams  # noqa: E402
from core.metrics import best_of_n, ranked_top, rouge  # noqa: E402

NEAR_COPY = 80.0
EXTRA_SAMPLES = SamplingParams().oversample  # the generator's pool is N + this
SAMPLE_TITLES = 20_000


def top1_rouge_l(sample: dict, ranking: str) -> float:
    top = ranked_top(sample, ranking)
    return rouge(top.text if top else "", sample["reference"])["rougeL"]


def length_favouring_rouge_l(sample: dict) -> float:
    """Top-1 ROUGE-L when candidates are ranked (usable first, as the generator does) by mean
    log-probability x sqrt(words)."""
    drafts = [(c["text"], c["score"] * len(c["text"].split()) ** 0.5) for c in sample["candidates"]]
    ranked = rank_candidates(drafts, sample["abstract"])
    return rouge(ranked[0].text if ranked else "", sample["reference"])["rougeL"]


def mean_and_error(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) / len(values) ** 0.5


def load_samples(report: Path) -> list[dict]:
    """The samples a report's metrics were computed over (a shorter --limit rescored a prefix of them)."""
    if not (report / "metrics.json").is_file():
        raise SystemExit(
            f"{report} has no metrics.json: its evaluation has not finished "
            "(run the same titlecraft eval command again to finish it)"
        )
    metrics = json.loads((report / "metrics.json").read_text())
    lines = (report / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines][: metrics["abstracts"]]


def report_findings(report: Path) -> None:
    samples = load_samples(report)
    score = [top1_rouge_l(sample, "score") for sample in samples]
    consensus = [top1_rouge_l(sample, "consensus") for sample in samples]
    difference, error = mean_and_error([c - s for c, s in zip(consensus, score, strict=True)])
    print(f"{report.name}: {len(samples)} abstracts")
    print(f"  top-1 ROUGE-L (score) {statistics.fmean(score):.1f} ± {mean_and_error(score)[1]:.1f} (standard error)")
    print(f"  consensus minus score, paired: {difference:+.1f} ± {error:.1f}")
    longer = [length_favouring_rouge_l(sample) for sample in samples]
    difference, error = mean_and_error([lf - s for lf, s in zip(longer, score, strict=True)])
    print(f"  length-favouring minus score, paired: {difference:+.1f} ± {error:.1f}")
    if any(sample["examples"] for sample in samples):
        copied = sum(
            any(rouge(ranked_top(sample, "score").text, title)["rougeL"] >= NEAR_COPY for title in sample["examples"])
            for sample in samples
        )
        print(f"  top title nearly copies a retrieved example's title: {copied} of {len(samples)}")


def best_rouge_l(sample: dict) -> float:
    return rouge(best_of_n(sample), sample["reference"])["rougeL"]


def paired_runs(old: Path, new: Path) -> None:
    """New minus old per shared abstract: a change of model or settings measured without the abstracts' spread."""
    old_samples = {sample["abstract"]: sample for sample in load_samples(old)}
    shared = [(old_samples[s["abstract"]], s) for s in load_samples(new) if s["abstract"] in old_samples]
    print(f"{new} minus {old}, {len(shared)} shared abstracts:")
    for name, measure in (("top-1 ROUGE-L (score)", lambda s: top1_rouge_l(s, "score")), ("best-of-N ROUGE-L", best_rouge_l)):
        difference, error = mean_and_error([measure(b) - measure(a) for a, b in shared])
        print(f"  {name}: {difference:+.1f} ± {error:.1f}")


def keep_highest_scoring(report: Path, keep: int) -> None:
    """Best-of-K of the K highest-scoring candidates against K random ones, paired per abstract."""
    random_k, highest_k = [], []
    for sample in load_samples(report):
        candidates = sample["candidates"]
        scores = [rouge(c["text"], sample["reference"])["rougeL"] for c in candidates]
        subsets = list(itertools.combinations(range(len(candidates)), min(keep, len(candidates))))
        random_k.append(statistics.fmean(max(scores[i] for i in subset) for subset in subsets))
        highest = sorted(range(len(candidates)), key=lambda i: -candidates[i]["score"])[:keep]
        highest_k.append(max(scores[i] for i in highest))
    difference, error = mean_and_error([h - r for h, r in zip(highest_k, random_k, strict=True)])
    print(
        f"{report.name}: best of {keep}, {keep} random candidates {statistics.fmean(random_k):.1f}; "
        f"the {keep} highest-scoring {statistics.fmean(highest_k):.1f}; paired {difference:+.1f} ± {error:.1f}"
    )


def keep_diverse_findings(report: Path, keep: int, diversity: float) -> None:
    """Best-of-K of the K best-ranked against the diverse K, both from the generator's pool (the
    K + EXTRA_SAMPLES best-ranked), paired."""
    best_ranked, diverse = [], []
    for sample in load_samples(report):
        drafts = [(c["text"], c["score"]) for c in sample["candidates"]]
        pool = rank_candidates(drafts, sample["abstract"])[: keep + EXTRA_SAMPLES]
        for kept, found in ((pool[:keep], best_ranked), (keep_diverse(pool, keep, diversity), diverse)):
            found.append(max(rouge(c.text, sample["reference"])["rougeL"] for c in kept))
    difference, error = mean_and_error([d - b for d, b in zip(diverse, best_ranked, strict=True)])
    print(
        f"{report.name}: best of {keep} from the {keep + EXTRA_SAMPLES} best-ranked: the {keep} best-ranked "
        f"{statistics.fmean(best_ranked):.1f}; kept with diversity {diversity:g} {statistics.fmean(diverse):.1f}; "
        f"paired {difference:+.1f} ± {error:.1f}"
    )


def copy_flag_rate(pairs: Path) -> None:
    import pandas as pd

    frame = pd.read_parquet(pairs, columns=["title", "abstract"])
    frame = frame.sample(min(SAMPLE_TITLES, len(frame)), random_state=1)
    flagged = sum(copies_abstract(title, abstract) for title, abstract in zip(frame.title, frame.abstract))
    print(f"{pairs}: the copy flag marks {flagged} of {len(frame)} real titles ({100 * flagged / len(frame):.2f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", type=Path, help="evaluation report folders")
    parser.add_argument("--copy-flag-rate", type=Path, metavar="PARQUET", help="a pair file with real titles")
    parser.add_argument("--keep", type=int, metavar="K", help="compare the K highest-scoring candidates with K random ones")
    parser.add_argument("--diversity", type=float, metavar="W", help="with --keep: the diverse K against the K best-ranked")
    parser.add_argument("--paired", nargs=2, type=Path, metavar=("OLD", "NEW"), help="two report folders to compare")
    args = parser.parse_args()
    for report in args.reports:
        if args.keep and args.diversity is not None:
            keep_diverse_findings(report, args.keep, args.diversity)
        elif args.keep:
            keep_highest_scoring(report, args.keep)
        else:
            report_findings(report)
    if args.paired:
        paired_runs(*args.paired)
    if args.copy_flag_rate:
        copy_flag_rate(args.copy_flag_rate)


if __name__ == "__main__":
    main()
