"""A fast ROUGE check of a checkpoint on a GPU: many abstracts per batched ``generate`` call.

Used right after a device fine-tune, where time is short; the project's own evaluation
(`titlecraft eval`, one abstract at a time through core.generate) gives the reported figures.

    python scripts/device_quick_eval.py --model runs/NAME --data test.parquet --out metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.candidates import clean_title  # noqa: E402
from core.models import load_model  # noqa: E402
from core.prompts import build_prompt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    from rouge_score import rouge_scorer

    model, tokenizer, info = load_model(args.model)
    frame = pd.read_parquet(args.data).head(args.limit)
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    stops = [tokenizer.eos_token_id, *newline[-1:]]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    top1, best, samples = [], [], []
    started = time.perf_counter()
    for start in range(0, len(frame), args.batch):
        chunk = frame.iloc[start : start + args.batch]
        prompts = [build_prompt(tokenizer, info.template, a, 1024 - 48).input_ids for a in chunk["abstract"]]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        ids, mask = ids.to(info.device), mask.to(info.device)
        common = dict(attention_mask=mask, max_new_tokens=48, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
        with torch.no_grad():
            greedy = model.generate(ids, do_sample=False, **common)
            sampled = model.generate(
                ids, do_sample=True, temperature=0.8, top_p=0.95, num_return_sequences=args.n, **common
            )
        greedy_text = [clean_title(t) for t in tokenizer.batch_decode(greedy[:, width:], skip_special_tokens=True)]
        sampled_text = [clean_title(t) for t in tokenizer.batch_decode(sampled[:, width:], skip_special_tokens=True)]
        for row, reference in enumerate(chunk["title"]):
            scores = scorer.score(reference, greedy_text[row])
            top1.append({k: v.fmeasure for k, v in scores.items()})
            group = sampled_text[row * args.n : (row + 1) * args.n]
            best.append(max(scorer.score(reference, c)["rougeL"].fmeasure for c in group))
            samples.append({"reference": reference, "greedy": greedy_text[row], "sampled": group})
    seconds = time.perf_counter() - started
    metrics = {
        "model": info.name,
        "abstracts": len(top1),
        "greedy.rouge1": 100 * sum(s["rouge1"] for s in top1) / len(top1),
        "greedy.rouge2": 100 * sum(s["rouge2"] for s in top1) / len(top1),
        "greedy.rougeL": 100 * sum(s["rougeL"] for s in top1) / len(top1),
        f"best_of_{args.n}.rougeL": 100 * sum(best) / len(best),
        "seconds": seconds,
    }
    Path(args.out).write_text(json.dumps({"metrics": metrics, "samples": samples[:50]}, indent=1))
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
