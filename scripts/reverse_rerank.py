"""Does a title that "explains" its abstract make a better top candidate? A re-ranking experiment.

For every candidate of an evaluation report, a language model scores how much the title raises the
likelihood of the abstract: log P(abstract | "Title: t\\nAbstract:") - log P(abstract | "Abstract:"),
summed over the abstract's first --abstract-tokens tokens (a noisy-channel / PMI signal, as used to
re-rank summaries). The top candidate is then re-picked by score + weight x that gain, usable
candidates first as in the generator, and compared with score ranking on the same candidates.

    python scripts/reverse_rerank.py REPORT [--model embedded-base] [--threads 2]

Findings in docs/evaluation.md: it lowers top-1 ROUGE-L at every weight tried, so it is not built in.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.candidates import rank_candidates  # noqa: E402
from core.metrics import rouge  # noqa: E402
from core.models import load_model  # noqa: E402
from eval_findings import load_samples, mean_and_error  # noqa: E402

WEIGHTS = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def abstract_gains(model, tokenizer, abstract: str, titles: list[str], abstract_tokens: int) -> list[float]:
    """Nats by which each title raises log P(abstract), all rows in one padded batch."""
    abstract_ids = tokenizer(" " + abstract, add_special_tokens=False)["input_ids"][:abstract_tokens]
    prefixes = ["Abstract:"] + [f"Title: {title}\nAbstract:" for title in titles]
    prefix_ids = [tokenizer(prefix, add_special_tokens=False)["input_ids"] for prefix in prefixes]
    rows = [ids + abstract_ids for ids in prefix_ids]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
    token_log_probs = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None])[..., 0]
    totals = [
        token_log_probs[i, len(prefix) - 1 : len(prefix) - 1 + len(abstract_ids)].sum().item()
        for i, prefix in enumerate(prefix_ids)
    ]
    return [total - totals[0] for total in totals[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", type=Path, help="an evaluation report folder (samples.jsonl)")
    parser.add_argument("--model", default="embedded-base", help="the model that scores abstracts (default embedded-base)")
    parser.add_argument("--abstract-tokens", type=int, default=256, help="abstract tokens scored (default 256)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, _ = load_model(args.model, dtype=torch.float32)
    per_weight: dict[float, list[float]] = {weight: [] for weight in WEIGHTS}
    samples = load_samples(args.report)
    for number, sample in enumerate(samples, start=1):
        candidates = sample["candidates"]
        gains = abstract_gains(model, tokenizer, sample["abstract"], [c["text"] for c in candidates], args.abstract_tokens)
        for weight, picks in per_weight.items():
            drafts = [(c["text"], c["score"] + weight * gain) for c, gain in zip(candidates, gains, strict=True)]
            top = rank_candidates(drafts, sample["abstract"])[0]
            picks.append(rouge(top.text, sample["reference"])["rougeL"])
        print(f"\r{number}/{len(samples)} abstracts", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    baseline = per_weight[0.0]
    print(f"{args.report}: top-1 ROUGE-L by score {statistics.fmean(baseline):.1f} ({len(baseline)} abstracts)")
    for weight in WEIGHTS[1:]:
        difference, error = mean_and_error([a - b for a, b in zip(per_weight[weight], baseline, strict=True)])
        print(f"  score + {weight} x abstract gain: {statistics.fmean(per_weight[weight]):.1f}, paired {difference:+.1f} ± {error:.1f}")


if __name__ == "__main__":
    main()
