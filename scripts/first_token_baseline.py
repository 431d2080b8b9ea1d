"""Distinct first tokens as a way to diversify candidates, against the default generator (paired).

    python scripts/first_token_baseline.py --data data/prepared/validation.parquet --limit 100

For each abstract of the seeded shuffle ``titlecraft eval`` uses, the default generator's N candidates
(same per-abstract seed as an eval) are set beside candidates that each start with a different one of
the K most likely first tokens and continue greedily; those are cleaned, de-duplicated, ranked by score
and N kept as the generator keeps them. Prints top-1 and best-of-N ROUGE-L of both and the paired
differences with their standard errors.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beam_baseline import baseline_parser, load_baseline_generator  # noqa: E402
from core.candidates import clean_title, keep_diverse, rank_candidates, title_key  # noqa: E402
from core.evaluate import abstract_seed, load_generator, select_rows  # noqa: E402
from core.generate import SamplingParams  # noqa: E402
from core.metrics import rouge  # noqa: E402


def first_token_drafts(generator, abstract: str, first_tokens: int, max_new_tokens: int, stops: list[int]):
    """(title, mean log-probability) for each of the most likely first tokens, continued greedily."""
    tokenizer, model = generator.tokenizer, generator.model
    prompt = torch.tensor([generator.build_prompt(abstract, max_new_tokens).input_ids], device=model.device)
    with torch.inference_mode():
        first_log_probs, firsts = torch.log_softmax(model(prompt).logits[0, -1].float(), -1).topk(first_tokens)
        batch = torch.cat([prompt.repeat(first_tokens, 1), firsts[:, None]], 1)
        out = model.generate(
            batch, attention_mask=torch.ones_like(batch), do_sample=False, max_new_tokens=max_new_tokens - 1,
            eos_token_id=stops, pad_token_id=stops[0], output_logits=True, return_dict_in_generate=True,
        )
    log_probs = torch.stack(out.logits, 1).float().log_softmax(-1)
    drafts = []
    for row, continuation in enumerate(out.sequences[:, batch.shape[1]:].tolist()):
        token_log_probs, title_ids = [first_log_probs[row].item()], [firsts[row].item()]
        for step, token in enumerate(continuation):
            token_log_probs.append(log_probs[row, step, token].item())
            if token in stops:
                break
            title_ids.append(token)
        text = tokenizer.decode(title_ids, skip_special_tokens=True).split("\n")[0]
        drafts.append((clean_title(text), statistics.fmean(token_log_probs)))
    distinct = {}
    for title, score in drafts:
        distinct.setdefault(title_key(title), (title, score))
    return [draft for draft in distinct.values() if draft[0]]


def main() -> None:
    parser = baseline_parser(__doc__)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--first-tokens", type=int, default=8, help="K: how many first tokens to start from")
    args = parser.parse_args()
    generator, stops = load_baseline_generator(args)
    defaults = SamplingParams(n=args.n)
    scores: dict[str, list[tuple[float, float]]] = {"default": [], "first tokens": []}
    for row in select_rows(args.data, args.limit, args.seed):
        sampled = generator.generate(row["abstract"], SamplingParams(n=args.n, seed=abstract_seed(args.seed, row["id"])))
        drafts = first_token_drafts(generator, row["abstract"], args.first_tokens, defaults.max_new_tokens, stops)
        forced = keep_diverse(rank_candidates(drafts, row["abstract"]), args.n, defaults.diversity)
        for name, candidates in (("default", sampled.candidates), ("first tokens", forced)):
            rouge_l = [rouge(candidate.text, row["reference"])["rougeL"] for candidate in candidates]
            scores[name].append((rouge_l[0], max(rouge_l)))
    for column, label in ((0, "top-1"), (1, f"best of {args.n}")):
        differences = [b[column] - a[column] for a, b in zip(scores["default"], scores["first tokens"])]
        print(
            f"{label} ROUGE-L over {len(differences)} abstracts: default "
            f"{statistics.fmean(a[column] for a in scores['default']):.1f}, {args.first_tokens} first tokens "
            f"{statistics.fmean(b[column] for b in scores['first tokens']):.1f}, paired "
            f"{statistics.fmean(differences):+.2f} ± {statistics.stdev(differences) / len(differences) ** 0.5:.2f}"
        )


if __name__ == "__main__":
    main()
