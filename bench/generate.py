"""Candidate generation speed: our streamed generator vs plain ``model.generate``, in the same run.

For one ~256-token abstract and N candidates of exactly 32 new tokens (ends ignored, so both sides do
equal work; this also leaves out the generator's extra unseen candidates, whose cost shows in
``titlecraft eval``'s seconds per abstract), it times the first token and the whole pass of
- ours: ``TitleGenerator.stream`` (one prefill expanded to N rows, streamed text; on CUDA the static
  cache + CUDA graph fast path), and
- plain: ``model.generate(num_return_sequences=N, do_sample=True)`` (N prefills, no streaming),
- ours, prefilled: ours after ``TitleGenerator.prefill`` ran the prompt untimed, as the app does
  while the researcher edits (its first token then needs no model call),
- on CUDA also: ours with the decode step compiled, and ours unfused (each layer's q/k/v and gate/up
  projections as separate multiplies, as the model comes: what stacking them saves),
and prints medians over a few repeats after a warm-up, with ratios. Each run prefixes the abstract with
a different word, so no run reuses a prefill (as for a new abstract in the app).

    python bench/generate.py                 # CPU: the embedded model
    python bench/generate.py --random-init   # SmolLM2-135M-shaped random Llama; the default on CUDA (bf16)

The random model needs no download and no GGUF package: speed does not depend on weight values. Its
tokenizer is a word-level one built here, so decoding text still costs what it does in the app.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.fastpath import StaticDecoder  # noqa: E402
from core.fused import FUSED_MARK  # noqa: E402
from core.generate import SamplingParams, TitleGenerator  # noqa: E402
from core.models import DTYPES, ModelInfo, load_model, random_embedded_shape_model, resolve_device  # noqa: E402
from core.prompts import COMPLETION  # noqa: E402

SHARED_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-ai" / "pairs.parquet"
ABSTRACT_TOKENS = 256
VOCAB_SIZE = 49152
BUILT_IN_ABSTRACT = (
    "Large language models can draft many kinds of scientific text, yet the title of a paper remains a "
    "small, demanding piece of writing: it must be specific enough to tell a reader what was done and "
    "short enough to be read at a glance in a listing. We study how well small causal language models, "
    "with fewer than two hundred million parameters, generate titles for research papers from their "
    "abstracts, and how much a few thousand curated abstract-title pairs improve them. We collect pairs "
    "from recent arXiv listings in machine learning and artificial intelligence, split them by date so "
    "that every test paper is newer than every training paper, and fine-tune with low-rank adapters "
    "while masking the loss to the title tokens. Sampling several candidates per abstract and ranking "
    "them by mean token log-probability or by agreement with the other candidates recovers much of the "
    "gap to far larger models on ROUGE and on human preference, while a candidate that merely copies a "
    "sentence of the abstract is flagged rather than shown first. Generation streams every candidate as "
    "its tokens arrive, so a researcher sees the first words within a fraction of a second on a laptop "
    "processor, and the whole set within a few seconds. We release the curation tool, the data pipeline "
    "and the adapters, and discuss where small models still fail: long abstracts, unusual terminology "
    "and titles that depend on a pun or a question."
)


def random_smollm2(device: str):
    """A randomly initialised Llama with SmolLM2-135M's shape: bf16 on CUDA, fp32 elsewhere."""
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    with torch.device(device):
        model = random_embedded_shape_model(vocab_size=VOCAB_SIZE, bos_token_id=1, eos_token_id=1, pad_token_id=1).to(dtype)
    return model.eval(), dtype


def word_tokenizer(text: str):
    """A word-level tokenizer with the model's vocabulary size whose vocabulary covers ``text``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    splitter = pre_tokenizers.Whitespace()
    words = dict.fromkeys(["[UNK]", "<|endoftext|>", "Abstract", "Title", ":"])
    words.update(dict.fromkeys(piece for piece, _ in splitter.pre_tokenize_str(text)))
    vocab = {word: index for index, word in enumerate(words)}
    vocab.update({f"w{index}": index for index in range(len(vocab), VOCAB_SIZE)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = splitter
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )


def pick_abstract(count_tokens) -> str:
    """A real abstract of about ABSTRACT_TOKENS tokens from the shared pairs, else the built-in one."""
    if not SHARED_PAIRS.is_file():
        return BUILT_IN_ABSTRACT
    import pyarrow.parquet as pq

    abstracts = pq.read_table(SHARED_PAIRS, columns=["abstract"]).slice(0, 500).column(0).to_pylist()
    return min(abstracts, key=lambda abstract: abs(count_tokens(abstract) - ABSTRACT_TOKENS))


def load(args, device: str):
    if not args.random_init:
        dtype = getattr(torch, args.dtype) if args.dtype else None
        model, tokenizer, info = load_model("embedded", device=device, dtype=dtype)
        return model, tokenizer, info, pick_abstract(lambda text: len(tokenizer(text)["input_ids"]))
    abstract = pick_abstract(lambda text: len(text.split()) * 1.3)
    model, dtype = random_smollm2(device)
    info = ModelInfo(
        spec="random-init",
        name="random SmolLM2-135M-shaped Llama",
        kind="random",
        device=device,
        dtype=str(dtype).removeprefix("torch."),
        template=COMPLETION,
        context_length=8192,
    )
    return model, word_tokenizer(abstract), info, abstract


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class FirstStep:
    """A stopping criterion that never stops: it notes when ``generate`` produced its first token."""

    def __init__(self):
        self.at: float | None = None

    def __call__(self, input_ids, scores, **kwargs):
        if self.at is None:
            self.at = time.perf_counter()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def time_ours(generator: TitleGenerator, abstract: str, n: int, new_tokens: int, seed: int) -> tuple[float, float]:
    params = SamplingParams(n=n, max_new_tokens=new_tokens, seed=seed)
    stream = generator.stream(abstract, params, force_length=True)
    for _ in stream:
        pass
    result = generator.last_result
    return result.first_token_seconds, result.seconds


def time_prefilled(generator: TitleGenerator, abstract: str, n: int, new_tokens: int, seed: int):
    """Ours when the prompt was prefilled beforehand (untimed), as the app does during editing."""
    generator.prefill(abstract, new_tokens)
    return time_ours(generator, abstract, n, new_tokens, seed)


def time_plain(model, tokenizer, generator: TitleGenerator, abstract: str, n: int, new_tokens: int, device: str):
    from transformers import StoppingCriteriaList

    prompt = generator.build_prompt(abstract, new_tokens)
    input_ids = torch.tensor([prompt.input_ids], device=device)
    first = FirstStep()
    synchronize(device)
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=True,
            temperature=0.8,
            top_p=0.95,
            num_return_sequences=n,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            stopping_criteria=StoppingCriteriaList([first]),
        )
    synchronize(device)
    total = time.perf_counter() - started
    assert output.shape == (n, input_ids.shape[1] + new_tokens)
    return first.at - started, total


def our_generators(model, stock, tokenizer, info, device: str, compile_step: bool) -> dict[str, TitleGenerator]:
    """Our generator as the app builds it; on CUDA also with the decode step compiled before capture,
    and on ``stock`` (an unchanged copy of the model) without stacked projections."""
    generators = {"ours": TitleGenerator(model, tokenizer, info)}
    if device.startswith("cuda"):
        unfused = StaticDecoder(stock, fuse=False)
        generators["ours, unfused"] = TitleGenerator(stock, tokenizer, info, decoder=unfused)
        if compile_step:
            decoder = StaticDecoder(model, compile_step=True)
            generators["ours, compiled step"] = TitleGenerator(model, tokenizer, info, decoder=decoder)
    return generators


def describe(generator: TitleGenerator) -> str:
    """The decoder and the optimisations it kept (a failed compile or capture is dropped with a warning)."""
    decoder = generator.decoder
    kept = [
        label
        for attribute, label in (
            ("graph_prefill", "prefill graph"),
            ("graph_decode", "decode graphs"),
            ("compile_step", "Inductor-compiled step"),
        )
        if getattr(decoder, attribute, False)
    ]
    if isinstance(decoder, StaticDecoder) and any(getattr(m, FUSED_MARK, False) for m in decoder.model.modules()):
        kept.append("stacked projections")
    return f"{type(decoder).__name__} ({', '.join(kept) or 'eager'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--random-init", action="store_true", help="random SmolLM2-shaped model (default on CUDA)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20], help="candidate counts N")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="on CUDA, skip the compiled-step variant")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (fewer than cores when they are shared)")
    parser.add_argument(
        "--dtype", choices=DTYPES, help="embedded model weights (default: the app's: bf16 on CUDA and AMX CPUs, else fp32)"
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # rows appear as they are measured, even if cut short
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.random_init = args.random_init or device.startswith("cuda")
    torch.manual_seed(0)
    model, tokenizer, info, abstract = load(args, device)
    # The fast path stacks the model's projections in place; plain generate gets the model as loaded.
    stock = copy.deepcopy(model) if device.startswith("cuda") else model
    generators = our_generators(model, stock, tokenizer, info, device, compile_step=not args.no_compile)
    reference = generators["ours"]
    prompt_tokens = len(reference.build_prompt(abstract, args.new_tokens).input_ids)
    where = torch.cuda.get_device_name() if device.startswith("cuda") else f"{torch.get_num_threads()} CPU threads"
    print(f"model   {info.name} ({info.dtype}) on {device}: {where}")
    print(f"stack   torch {torch.__version__}, transformers {__import__('transformers').__version__}")
    print(f"prompt  {prompt_tokens} tokens ({'pairs.parquet' if SHARED_PAIRS.is_file() else 'built-in'} abstract), "
          f"{args.new_tokens} new tokens per candidate, median of {args.repeats} after a warm-up")
    # A different leading word per run (one the tokenizer knows), so that no run reuses a prefill.
    prefixes = list(dict.fromkeys(abstract.split()))
    header = f"{'N':>3}  {'':<20} {'first token':>11} {'total':>9}   {'first-token ratio':>17} {'total ratio':>11}"
    print(f"\n{header}\n{'-' * len(header)}")
    for n in args.sizes:
        runs = {name: [] for name in [*generators, "ours, prefilled", "plain generate"]}
        for repeat in range(args.repeats + 1):
            variant = f"{prefixes[repeat]} {abstract}"
            timings = {name: time_ours(g, variant, n, args.new_tokens, seed=repeat) for name, g in generators.items()}
            prefilled = f"{prefixes[-1 - repeat]} {abstract}"
            timings["ours, prefilled"] = time_prefilled(reference, prefilled, n, args.new_tokens, seed=repeat)
            timings["plain generate"] = time_plain(stock, tokenizer, reference, variant, n, args.new_tokens, device)
            if repeat:  # the first round is the warm-up (and, on CUDA, compilation and graph capture)
                for name, timing in timings.items():
                    runs[name].append(timing)
        medians = {name: [statistics.median(values) for values in zip(*timings)] for name, timings in runs.items()}
        plain_first, plain_total = medians["plain generate"]
        for name, (first, total) in medians.items():
            ratios = "" if name == "plain generate" else f"{plain_first / first:>16.1f}x {plain_total / total:>10.2f}x"
            print(f"{n:>3}  {name:<20} {first:>9.3f} s {total:>7.3f} s   {ratios}")
    print()
    for name, generator in generators.items():
        print(f"{name + ':':<20}{describe(generator)}")
    print("\nratio: plain generate's time divided by ours (above 1: ours is faster)")


if __name__ == "__main__":
    main()
