"""Beam search as a decoding baseline for the sampled candidates, on the abstracts an eval scores.

    python scripts/beam_baseline.py --data data/prepared/validation.parquet --limit 100 --beams 5

Runs ``model.generate`` with N beams (N returned sequences, stopping at a newline or end of sequence)
on the first --limit abstracts of the same seeded shuffle ``titlecraft eval`` uses, cleans the beams
with the generator's rules, and prints top-1 and best-of-N ROUGE-L and the distinct titles per set,
to set beside ``titlecraft eval`` on the same data, limit and seed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.candidates import clean_title, title_key  # noqa: E402
from core.evaluate import load_generator, select_rows  # noqa: E402
from core.metrics import rouge  # noqa: E402


def baseline_parser(doc: str) -> argparse.ArgumentParser:
    """The options every decoding baseline shares: which model, and which abstracts (as an eval picks them)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default="data/prepared/validation.parquet")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int)
    return parser


def load_baseline_generator(args: argparse.Namespace):
    """The generator, and the token ids ``model.generate`` must stop at: end of sequence or a newline."""
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = load_generator(args.model, "auto")
    tokenizer = generator.tokenizer
    newline_ids = {i for token, i in tokenizer.get_vocab().items() if "\n" in tokenizer.convert_tokens_to_string([token])}
    return generator, sorted(generator.stop_ids | newline_ids)


def main() -> None:
    parser = baseline_parser(__doc__)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()
    generator, stops = load_baseline_generator(args)
    tokenizer = generator.tokenizer
    top1, best, distinct = [], [], []
    started = time.perf_counter()
    for row in select_rows(args.data, args.limit, args.seed):
        prompt = torch.tensor([generator.build_prompt(row["abstract"], args.max_new_tokens).input_ids])
        prompt = prompt.to(generator.model.device)
        with torch.inference_mode():
            beams = generator.model.generate(
                prompt, attention_mask=torch.ones_like(prompt), num_beams=args.beams,
                num_return_sequences=args.beams, do_sample=False, max_new_tokens=args.max_new_tokens,
                eos_token_id=stops, pad_token_id=stops[0],
            )
        titles = [clean_title(tokenizer.decode(b[prompt.shape[1]:], skip_special_tokens=True)) for b in beams]
        scores = [rouge(title, row["reference"])["rougeL"] for title in titles]
        top1.append(scores[0])
        best.append(max(scores))
        distinct.append(len({title_key(title) for title in titles}))
    seconds = (time.perf_counter() - started) / len(top1)
    print(
        f"{args.model}, {args.beams} beams, {len(top1)} abstracts of {args.data} (seed {args.seed}): "
        f"top-1 ROUGE-L {statistics.fmean(top1):.1f}, best of {args.beams} {statistics.fmean(best):.1f}, "
        f"distinct {statistics.fmean(distinct):.2f} of {args.beams}, {seconds:.2f} s/abstract"
    )


if __name__ == "__main__":
    main()
