"""``titlecraft eval``: score a model's candidate titles against the real ones (see core.evaluate)."""

from __future__ import annotations

import argparse

from core.errors import TitlecraftError
from core.evaluate import DEFAULT_RETRIEVAL_POOL, MODES, RANKING_CHOICES, EvalConfig, default_mode
from core.paths import refuse_empty_path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate candidate titles against real titles (ROUGE, BLEU, usability, diversity)",
        description=(
            "Generate N candidates for the first --limit abstracts of a seeded shuffle of --data, score them "
            "against the real titles and write samples.jsonl, metrics.json and report.md into --out (and run.json, "
            "the settings a resumed run must share). Re-running with the same --out resumes where the last run "
            "stopped."
        ),
    )
    parser.add_argument("--model", default="embedded", help="embedded, embedded-base, a checkpoint directory or a hub id")
    parser.add_argument("--mode", choices=MODES, default=None, help="zero-shot: plain prompt; few-shot: "
                        "--k retrieved examples in the prompt; finetuned: plain prompt, labelled as a fine-tuned model "
                        "(default: finetuned for embedded and checkpoints titlecraft trained, else zero-shot)")
    parser.add_argument("--data", required=True, help="pair file to evaluate on, e.g. data/prepared/test.parquet")
    parser.add_argument("--limit", type=int, default=500, help="abstracts to evaluate (default 500)")
    parser.add_argument("-n", type=int, default=5, help="candidates per abstract (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle and sampling seed (default 0)")
    parser.add_argument("--k", type=int, default=4, help="few-shot examples per prompt (default 4)")
    parser.add_argument("--retrieval-pool", default=DEFAULT_RETRIEVAL_POOL,
                        help=f"pairs few-shot examples are retrieved from (default {DEFAULT_RETRIEVAL_POOL})")
    parser.add_argument("--ranking", choices=tuple(RANKING_CHOICES), default="score",
                        help="which ranking picks the top candidate; both scores the same generations twice")
    parser.add_argument("--temperature", type=float, default=None, help="override the generator's temperature")
    parser.add_argument("--top-p", type=float, default=None, help="override the generator's top-p")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="override the generator's token limit")
    parser.add_argument("--greedy-first", action=argparse.BooleanOptionalAction, default=None,
                        help="decode the first candidate greedily (the generator's default: on)")
    parser.add_argument("--oversample", type=int, default=None, metavar="K",
                        help="sample K extra candidates and keep the n best-ranked (the generator's default: 3)")
    parser.add_argument("--diversity", type=float, default=None, metavar="W",
                        help="penalise kept candidates' similarity to each other by W (the generator's default: 1.5; "
                        "0 keeps the n best-ranked)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is fastest on a busy machine")
    parser.add_argument("--out", required=True, help="report folder, e.g. reports/embedded-finetuned")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate

    refuse_empty_path(args.out, "--out")
    if args.threads is not None:
        if args.threads < 1:  # torch raises a bare RuntimeError for these, after argparse let them through
            raise TitlecraftError(f"--threads must be at least 1, not {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    config = EvalConfig(
        model=args.model,
        data=args.data,
        mode=args.mode or default_mode(args.model, args.out),
        limit=args.limit,
        n=args.n,
        seed=args.seed,
        k=args.k,
        retrieval_pool=args.retrieval_pool,
        ranking=args.ranking,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        greedy_first=args.greedy_first,
        oversample=args.oversample,
        diversity=args.diversity,
    )
    metrics = evaluate(config, args.out, device=args.device)
    print(
        f"{metrics['abstracts']} abstracts: top-1 ROUGE-1/2/L {metrics['top1.rouge1']:.1f}/"
        f"{metrics['top1.rouge2']:.1f}/{metrics['top1.rougeL']:.1f}, best of {config.n} ROUGE-L "
        f"{metrics['best_of_n.rougeL']:.1f}, usable {metrics['usable_rate']:.1f}% "
        f"({args.out}/report.md)"
    )
    return 0
