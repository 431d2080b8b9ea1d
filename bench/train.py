"""Training throughput: our pipeline vs the original recipe, on the same pairs, in the same run.

The original project padded every example to a fixed maximum length and computed the loss on every
token. Ours groups examples by length, pads each batch only to its longest member, and sends only the
title positions through the output layer. Both run the same model shape (SmolLM2-135M, randomly
initialised: speed does not depend on weight values) with bf16 autocast on CUDA, fp32 on CPU.

    python bench/train.py                      # CPU: a few small steps
    python bench/train.py --lora --bf16        # CPU: also under bf16 autocast (pays on CPUs with AMX)
    python bench/train.py --batch-size 32 --steps 30   # on a GPU
    python bench/train.py --batch-size 32 --our-batch-size 64 --lora   # ours at the same tokens per step
    python bench/train.py --batch-size 32 --our-batch-size 128 --lora --compile   # also torch.compile'd rows
    python bench/train.py --batch-size 32 --our-batch-size 256 --profile 3   # and where our step's time goes
Prints real (non-padding) tokens per second for each, their ratio, and each one's padding fraction.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import random_embedded_shape_model  # noqa: E402
from core.train import TitleLoss, training_autocast  # noqa: E402
from core.train_data import CUDA_PAD_MULTIPLE, IGNORE_INDEX, ExampleEncoder, collate, length_grouped_batches  # noqa: E402

SHARED_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-ai" / "pairs.parquet"


def load_pairs(path: Path, count: int, seed: int) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["abstract", "title"]).to_pandas()
    table = table.sample(n=min(count, len(table)), random_state=seed)
    return list(zip(table["abstract"], table["title"], strict=True))


def original_batches(examples, batch_size: int, max_length: int, pad_id: int):
    """Every example padded to ``max_length``; labels are all real tokens (loss on the abstract too)."""
    for start in range(0, len(examples) - batch_size + 1, batch_size):
        chunk = examples[start : start + batch_size]
        input_ids = torch.full((batch_size, max_length), pad_id, dtype=torch.long)
        attention = torch.zeros((batch_size, max_length), dtype=torch.long)
        for row, example in enumerate(chunk):
            ids = example.input_ids[:max_length]
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention[row, : len(ids)] = 1
        labels = input_ids.masked_fill(attention == 0, IGNORE_INDEX)
        yield {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def our_batches(examples, batch_size: int, pad_id: int, seed: int, multiple: int):
    lengths = [len(e.input_ids) for e in examples]
    for indices in length_grouped_batches(lengths, batch_size, seed, epoch=0):
        if len(indices) == batch_size:
            yield collate([examples[i] for i in indices], pad_id, multiple)


def time_steps(step, batches, device: str, warmup: int, steps: int) -> tuple[float, float]:
    """Return (real tokens per second, padding fraction) over ``steps`` timed steps."""
    batches = iter(batches)
    real = padded = 0
    elapsed = []
    for index in range(warmup + steps):
        batch = {k: v.to(device) for k, v in next(batches).items()}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if index >= warmup:
            elapsed.append(time.perf_counter() - start)
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    return real / sum(elapsed), 1 - real / padded


def profile_steps(step, batches, device: str, steps: int) -> str:
    """The operators that take our training step's time, most expensive first: where to optimise next."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    batches = iter(batches)
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as profiler:
        for _ in range(steps):
            step({k: v.to(device) for k, v in next(batches).items()})
        if cuda:
            torch.cuda.synchronize()
    sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
    return profiler.key_averages().table(sort_by=sort_by, row_limit=20)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked before anything is loaded or timed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=SHARED_PAIRS)
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CUDA, 4 on CPU")
    parser.add_argument(
        "--our-batch-size", type=int, default=None,
        help="examples per step for our pipeline (default: --batch-size); padding less, it fits more per step",
    )
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 30 on CUDA, 3 on CPU)")
    parser.add_argument("--max-length", type=int, default=512, help="the original recipe's fixed padded length")
    parser.add_argument("--lora", action="store_true", help="also time our pipeline with a LoRA adapter")
    parser.add_argument(
        "--compile", action="store_true",
        help="also time our pipeline with the decoder layers torch.compile'd (titlecraft train --compile)",
    )
    parser.add_argument(
        "--bf16", action="store_true",
        help="on a CPU, also time our pipeline under bf16 autocast (titlecraft train --precision bf16)",
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="STEPS",
        help="also profile this many steps of our (eager) pipeline and print the costliest operators",
    )
    parser.add_argument("--tokenizer", default="embedded-base", help="model spec or folder for the tokenizer")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.bf16 and args.compile and not args.device.startswith("cuda"):
        parser.error("--bf16 and --compile: time one at a time on a CPU")
    return args


def main() -> None:
    args = parse_args()
    cuda = args.device.startswith("cuda")
    batch_size = args.batch_size or (32 if cuda else 4)
    our_batch_size = args.our_batch_size or batch_size
    steps = args.steps or (30 if cuda else 3)
    warmup = 3 if cuda else 1
    torch.manual_seed(0)

    from core.models import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    encoder = ExampleEncoder(tokenizer, "completion", max_abstract_tokens=384)
    examples = encoder.encode(load_pairs(args.pairs, max(batch_size, our_batch_size) * (warmup + steps) * 3, seed=0))
    random.Random(0).shuffle(examples)
    pad_id = tokenizer.pad_token_id
    multiple = CUDA_PAD_MULTIPLE if cuda else 1

    def make_step(forward, parameters, bf16: bool = cuda):
        optimizer = torch.optim.AdamW(parameters, lr=1e-5, fused=cuda)

        def step(batch):
            optimizer.zero_grad(set_to_none=True)
            with training_autocast(args.device, bf16):
                loss = forward(batch)
            loss.backward()
            optimizer.step()

        return step

    results = {}
    model = random_embedded_shape_model(vocab_size=len(tokenizer)).to(args.device).train()
    model.config.use_cache = False
    original = make_step(lambda b: model(**b).loss, list(model.parameters()))
    results["original (pad to max, loss on all)"] = time_steps(
        original, original_batches(examples, batch_size, args.max_length, pad_id), args.device, warmup, steps
    )
    title_loss = TitleLoss(model)

    def ours_forward(batch):
        loss_sum, count = title_loss(**batch)
        return loss_sum / count

    ours = make_step(ours_forward, list(model.parameters()))
    results["titlecraft (dynamic pad, title loss)"] = time_steps(
        ours, our_batches(examples, our_batch_size, pad_id, seed=0, multiple=multiple), args.device, warmup, steps
    )
    cpu_bf16 = args.bf16 and not cuda
    if cpu_bf16:
        results["titlecraft, bf16 autocast"] = time_steps(
            make_step(ours_forward, list(model.parameters()), bf16=True),
            our_batches(examples, our_batch_size, pad_id, seed=0, multiple=multiple), args.device, warmup, steps,
        )
    if args.profile:
        profile = profile_steps(ours, our_batches(examples, our_batch_size, pad_id, seed=2, multiple=multiple), args.device, args.profile)
    if args.compile:
        # The first warm-up step compiles; dynamic shapes keep the later lengths from recompiling.
        title_loss.compile_backbone()
        results["titlecraft, compiled"] = time_steps(
            ours, our_batches(examples, our_batch_size, pad_id, seed=0, multiple=multiple), args.device, warmup, steps
        )
    if args.lora:
        from peft import LoraConfig, get_peft_model

        del original, ours
        base = random_embedded_shape_model(vocab_size=len(tokenizer)).to(args.device, torch.bfloat16 if cuda else torch.float32)
        peft_model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")).train()
        lora_loss = TitleLoss(peft_model)

        def lora_forward(batch):
            loss_sum, count = lora_loss(**batch)
            return loss_sum / count

        adapter = [p for p in peft_model.parameters() if p.requires_grad]
        lora_step = make_step(lora_forward, adapter)
        results["titlecraft LoRA r=16 (dynamic pad, title loss)"] = time_steps(
            lora_step, our_batches(examples, our_batch_size, pad_id, seed=1, multiple=multiple), args.device, warmup, steps
        )
        if cpu_bf16:  # as titlecraft train --lora --precision bf16 runs it: the frozen base in bf16, the adapter fp32
            for parameter in peft_model.parameters():
                if not parameter.requires_grad:
                    parameter.data = parameter.data.to(torch.bfloat16)
            results["titlecraft LoRA r=16, bf16 autocast"] = time_steps(
                make_step(lora_forward, adapter, bf16=True),
                our_batches(examples, our_batch_size, pad_id, seed=1, multiple=multiple), args.device, warmup, steps,
            )
        if args.compile:
            lora_loss.compile_backbone()
            results["titlecraft LoRA r=16, compiled"] = time_steps(
                lora_step, our_batches(examples, our_batch_size, pad_id, seed=1, multiple=multiple), args.device, warmup, steps
            )

    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    print(
        f"device: {device_name}; batch {batch_size} (ours {our_batch_size}); {steps} timed steps after {warmup} warm-up"
    )
    baseline = next(iter(results.values()))[0]
    print(f"{'pipeline':50s} {'real tok/s':>12s} {'padding':>8s} {'ratio':>7s}")
    for name, (rate, padding) in results.items():
        print(f"{name:50s} {rate:12,.0f} {padding:8.1%} {rate / baseline:6.2f}x")
    lengths = [len(e.input_ids) for e in examples]
    print(f"example length: median {statistics.median(lengths):.0f}, max {max(lengths)} tokens")
    if args.profile:
        print(f"\nour pipeline, {args.profile} profiled steps:\n{profile}")


if __name__ == "__main__":
    main()
