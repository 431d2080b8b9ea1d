"""A copy bias as a decoding lever: greedy titles with and without it, paired, on the abstracts an eval scores.

    python scripts/copy_bias_baseline.py --data data/prepared/validation.parquet --limit 100 --configs 0:1,1:1

Titles reuse their abstract's phrases, and the de-quantised default model sometimes misspells them
("ReaSoning" -> "ReaSensing"). Each config BIAS:MATCH decodes greedily with ``model.generate``, adding
BIAS to the logits of every token that follows, somewhere in the abstract, the last MATCH (up to 4)
tokens generated so far; the longest match wins. The abstract is tokenised on its own (with and without
a leading space), so few-shot examples in a prompt are never what gets copied. Prints each config's
greedy ROUGE-L and its paired difference to the first config, with the standard error.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import LogitsProcessor, LogitsProcessorList  # noqa: E402

from beam_baseline import baseline_parser, load_baseline_generator  # noqa: E402
from core.candidates import clean_title  # noqa: E402
from core.evaluate import select_rows  # noqa: E402
from core.metrics import rouge  # noqa: E402

LONGEST_MATCH = 4


class CopyBias(LogitsProcessor):
    """Raise the tokens that continue, in ``source``, the longest suffix of the generated tokens found there."""

    def __init__(self, prompt_length: int, source: list[int], bias: float, shortest_match: int):
        self.prompt_length, self.bias, self.shortest_match = prompt_length, bias, shortest_match
        self.followers: dict[tuple[int, ...], set[int]] = {}
        for length in range(shortest_match, LONGEST_MATCH + 1):
            for start in range(len(source) - length):
                self.followers.setdefault(tuple(source[start : start + length]), set()).add(source[start + length])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self.prompt_length :].tolist()
            for length in range(min(LONGEST_MATCH, len(generated)), self.shortest_match - 1, -1):
                followers = self.followers.get(tuple(generated[-length:]))
                if followers:
                    scores[row, sorted(followers)] += self.bias
                    break
        return scores


def main() -> None:
    parser = baseline_parser(__doc__)
    parser.add_argument("--configs", default="0:1,1:1", help="BIAS:MATCH pairs, the first one the baseline")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()
    generator, stops = load_baseline_generator(args)
    tokenizer = generator.tokenizer
    configs = [(float(bias), int(match)) for bias, match in (config.split(":") for config in args.configs.split(","))]
    scores: dict[tuple[float, int], list[float]] = {config: [] for config in configs}
    started = time.perf_counter()
    for row in select_rows(args.data, args.limit, args.seed):
        ids = list(generator.build_prompt(row["abstract"], args.max_new_tokens).input_ids)
        prompt = torch.tensor([ids]).to(generator.model.device)
        # -1 never matches, so no span runs from one tokenisation into the other.
        source = [*tokenizer(row["abstract"], add_special_tokens=False).input_ids, -1,
                  *tokenizer(" " + row["abstract"], add_special_tokens=False).input_ids]
        for bias, match in configs:
            processors = LogitsProcessorList([CopyBias(len(ids), source, bias, match)] if bias else [])
            with torch.inference_mode():
                output = generator.model.generate(
                    prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=args.max_new_tokens,
                    eos_token_id=stops, pad_token_id=stops[0], logits_processor=processors,
                )
            title = clean_title(tokenizer.decode(output[0, len(ids) :], skip_special_tokens=True))
            scores[(bias, match)].append(rouge(title, row["reference"])["rougeL"])
    baseline = scores[configs[0]]
    for config in configs:
        differences = [score - base for score, base in zip(scores[config], baseline)]
        error = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else 0.0
        print(
            f"bias {config[0]:g}, match >= {config[1]}: greedy ROUGE-L {statistics.fmean(scores[config]):.1f} "
            f"(paired {statistics.fmean(differences):+.1f} ± {error:.1f})"
        )
    seconds = (time.perf_counter() - started) / len(baseline)
    print(f"{len(baseline)} abstracts of {args.data} (seed {args.seed}), {args.model}: {seconds:.1f} s/abstract")


if __name__ == "__main__":
    main()
