"""Title-quality metrics over evaluated samples: ROUGE, BLEU, usability, copying, diversity, length.

A sample is one abstract's record from ``samples.jsonl``: its reference title and its candidates (text,
score, flags). Metrics are recomputed from samples, never accumulated during generation, so a resumed
run and a re-ranked run score exactly what was generated. ROUGE, BLEU and rates are percentages (0-100).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from statistics import fmean

from core.candidates import (
    COPIES_ABSTRACT,
    Candidate,
    candidate_flags,
    rank_candidates,
    title_key,
    title_words,
    word_count,
)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F1 (stemmed, as rouge-score computes it) as percentages."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: 100 * scores[name].fmeasure for name in ROUGE_TYPES}


def sentence_bleu(prediction: str, reference: str) -> float:
    import sacrebleu

    return sacrebleu.sentence_bleu(prediction, [reference]).score


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacreBLEU over the whole set: the standard figure, less noisy than a mean of sentence scores."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), [list(references)]).score


def distinct_n(titles: Sequence[str], n: int = 2) -> float | None:
    """Unique n-grams over all n-grams in a set of titles (percent); None when no title has n words."""
    grams = [tuple(words[i : i + n]) for words in map(title_words, titles) for i in range(len(words) - n + 1)]
    return 100 * len(set(grams)) / len(grams) if grams else None


def length_ratio(prediction: str, reference: str) -> float:
    """Words in the prediction over words in the reference, counted as the length flags count them
    (Chinese and Japanese, written without spaces, a word per two characters: split at spaces, any two
    such titles were one word each, a ratio of 1 whatever their lengths)."""
    return word_count(prediction) / max(word_count(reference), 1)


def _cut_off(candidate: dict) -> bool:
    """Whether a stored candidate ran out of new tokens (samples written before this was kept: no)."""
    return bool(candidate.get("cut_off"))


def ranked_top(sample: dict, ranking: str) -> Candidate | None:
    """The first candidate under a ranking, re-ranked (and re-flagged) from the stored candidates."""
    drafts = [(candidate["text"], candidate["score"]) for candidate in sample["candidates"]]
    cut_off = {candidate["text"] for candidate in sample["candidates"] if _cut_off(candidate)}
    ranked = rank_candidates(drafts, sample["abstract"], ranking, cut_off)
    return ranked[0] if ranked else None


def best_of_n(sample: dict) -> str:
    """The oracle pick: the candidate (flagged or not) with the highest ROUGE-L to the reference."""
    texts = [candidate["text"] for candidate in sample["candidates"]]
    if not texts:
        return ""
    return max(texts, key=lambda text: rouge(text, sample["reference"])["rougeL"])


def overlap_metrics(predictions: Sequence[str], references: Sequence[str], prefix: str) -> dict[str, float]:
    """Mean ROUGE F1s, corpus BLEU and mean sentence BLEU of predictions against references."""
    scores = [rouge(prediction, reference) for prediction, reference in zip(predictions, references)]
    metrics = {f"{prefix}.{name}": fmean(score[name] for score in scores) for name in ROUGE_TYPES}
    metrics[f"{prefix}.bleu"] = corpus_bleu(predictions, references)
    metrics[f"{prefix}.sentence_bleu"] = fmean(sentence_bleu(p, r) for p, r in zip(predictions, references))
    return metrics


def set_metrics(samples: Sequence[dict], n: int) -> dict[str, float]:
    """Metrics of the candidate sets that do not depend on a ranking; flags are recomputed, as
    rankings are, so stored samples are always judged by the current rules."""
    flags = [
        candidate_flags(c["text"], sample["abstract"], _cut_off(c)) for sample in samples for c in sample["candidates"]
    ]
    distinct_counts = [len({title_key(c["text"]) for c in sample["candidates"]}) for sample in samples]
    diversities = [d for sample in samples if (d := distinct_n([c["text"] for c in sample["candidates"]])) is not None]
    return {
        "usable_rate": 100 * fmean(not found for found in flags) if flags else 0.0,
        "copy_rate": 100 * fmean(COPIES_ABSTRACT in found for found in flags) if flags else 0.0,
        "distinct2": fmean(diversities) if diversities else 0.0,
        "distinct_candidates": fmean(distinct_counts),
        "full_set_rate": 100 * fmean(count >= n for count in distinct_counts),
        "seconds_per_abstract": fmean(sample["seconds"] for sample in samples),
    }


def ranking_metrics(samples: Sequence[dict], ranking: str) -> dict[str, float]:
    """Overlap, length and usability of each sample's top candidate under ``ranking``."""
    tops = [ranked_top(sample, ranking) for sample in samples]
    texts = [top.text if top else "" for top in tops]
    references = [sample["reference"] for sample in samples]
    metrics = overlap_metrics(texts, references, "top1")
    metrics["top1.length_ratio"] = fmean(length_ratio(text, ref) for text, ref in zip(texts, references))
    metrics["top1.usable_rate"] = 100 * fmean(top is not None and top.usable for top in tops)
    return metrics


def score_samples(samples: Sequence[dict], n: int, rankings: Sequence[str]) -> dict[str, float]:
    """All metrics; ``top1.*`` follow the first ranking, and with several each gets ``<ranking>.top1.*``."""
    if not samples:
        return {}
    metrics = overlap_metrics([best_of_n(s) for s in samples], [s["reference"] for s in samples], "best_of_n")
    metrics.update(set_metrics(samples, n))
    by_ranking = {ranking: ranking_metrics(samples, ranking) for ranking in rankings}
    primary = by_ranking[rankings[0]]
    metrics.update(primary)
    metrics["length_ratio"] = primary["top1.length_ratio"]
    if len(rankings) > 1:
        for ranking, named in by_ranking.items():
            metrics.update({f"{ranking}.{key}": value for key, value in named.items()})
    return metrics
