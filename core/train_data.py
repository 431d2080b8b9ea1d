"""Training data: (abstract, title) pairs tokenised as generation formats them, batched by length.

Examples are tokenised in large batches (each prompt as one text, as generation tokenises it), grouped
by length so that each batch pads only to its own longest member, and collated with the positions of the
title tokens precomputed on the CPU.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import TitlecraftError
from core.export_rows import export_shape, json_object
from core.paths import PARQUET_SUFFIXES, refuse_folder_as_data_file
from core.prompts import (
    COMPLETION,
    completion_target,
    normalise_whitespace,
    parse_completion_prompt,
    render,
    whole_characters,
)

IGNORE_INDEX = -100
SENTINEL = "\u2063ABSTRACT\u2063"
CUDA_PAD_MULTIPLE = 32


@dataclass
class Example:
    """One tokenised pair: the prompt's tokens come first, then the title's and the end marker."""

    input_ids: list[int]
    prompt_length: int
    weight: float = 1.0

    @property
    def labels(self) -> list[int]:
        """Prompt positions carry -100 so that only the title and its end marker are learned."""
        return [IGNORE_INDEX] * self.prompt_length + self.input_ids[self.prompt_length :]

    @property
    def target_tokens(self) -> int:
        return len(self.input_ids) - self.prompt_length


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(abstract, title) pairs from a prepared parquet split or an SFT JSONL export."""
    path = Path(path)
    refuse_folder_as_data_file(path)
    if not path.is_file():
        raise TitlecraftError(f"training data {path} does not exist")
    if _is_parquet(path):
        import pyarrow.parquet as pq

        from core.dataset import text_from_bytes

        try:
            columns = pq.read_schema(path).names
            # Named in words: pyarrow's own error for a missing column dumps the whole schema over many lines.
            missing = [name for name in ("abstract", "title") if name not in columns]
            if missing:
                raise TitlecraftError(
                    f"{path} has no {' and no '.join(repr(name) for name in missing)} column "
                    f"(its columns: {', '.join(columns) or 'none'})"
                )
            frame = text_from_bytes(path, pq.read_table(path, columns=["abstract", "title"])).to_pandas().dropna()
        except TitlecraftError:
            raise
        except Exception as error:  # noqa: BLE001 - pyarrow raises many types for a bad file
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TitlecraftError(f"{path} is not a parquet file with 'abstract' and 'title' columns: {reason}") from None
        pairs = zip(frame["abstract"].astype(str), frame["title"].astype(str), strict=True)
        # A blank title or abstract is as missing as a null one: trained on, it taught titles that end at once.
        return [(abstract, title) for abstract, title in pairs if abstract.strip() and title.strip()]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise TitlecraftError(f"{path} is not UTF-8 text ({error})") from None
    pairs = []
    # Split on "\n" only: JSON strings may hold raw U+2028 or U+0085, which str.splitlines would cut.
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                pairs.append(_sft_pair(line))
            except ValueError as error:
                raise TitlecraftError(f"{path}:{number}: not an SFT row: {error}") from None
    return pairs


def _is_parquet(path: Path) -> bool:
    """A parquet file by its suffix in any case (.parquet, .pq) or by its signature: read as an SFT
    export instead, a parquet split not named *.parquet was refused as 'not UTF-8 text'."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    with path.open("rb") as file:
        return file.read(4) == b"PAR1"


def _sft_pair(line: str) -> tuple[str, str]:
    """The (abstract, title) of one SFT export row; a ValueError says in words what the row is instead
    (a chat or dpo export row, a row without text fields), never as a Python traceback or repr."""
    row = json_object(line)
    shape = export_shape(row)
    if shape in ("chat", "dpo"):
        raise ValueError(f"this is a row of a {shape} export; train reads the sft export (titlecraft export --format sft)")
    missing = [key for key in ("prompt", "completion") if key not in row]
    if missing:
        raise ValueError(f"it has no {' and no '.join(repr(key) for key in missing)}")
    prompt, completion = row["prompt"], row["completion"]
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ValueError("'prompt' and 'completion' must be text")
    if not completion.strip():
        raise ValueError("the completion holds no title")
    return parse_completion_prompt(prompt), completion.strip()


class ExampleEncoder:
    """Tokenise (abstract, title) pairs in batches exactly as ``core.prompts.build_prompt`` would.

    Each prompt is tokenised as one text, as generation tokenises it: tokenised in pieces (template,
    abstract, template) and joined, the tokens differed from generation's wherever a tokenizer merges
    across a seam (Llama 3's and Qwen's ".\n" after the abstract's last sentence) or opens every piece with
    a space marker (sentencepiece's "▁"), so the model trained on prompts it never reads. The title is
    tokenised after the template's end, where the model continues the prompt (alone, a sentencepiece
    tokenizer opened it with a stray "▁" too).
    """

    # A prompt within this many tokens of the abstract limit has its abstract counted on its own (the
    # seams may merge or split a token or two).
    CUT_MARGIN = 8

    def __init__(self, tokenizer, template: str, max_abstract_tokens: int):
        if tokenizer.eos_token_id is None:
            raise TitlecraftError("the tokenizer has no end-of-sequence token to end titles with")
        self.tokenizer = tokenizer
        self.template = template
        self.max_abstract_tokens = max_abstract_tokens
        self.before, self.after = render(template, SENTINEL, (), tokenizer).split(SENTINEL)
        # Spaces that open the abstract count with it, because BPE attaches a space to the next word.
        self.lead = self.before[len(self.before.rstrip(" ")) :]
        self.after_ids, template_ids = self._encode([self.after, self.before + self.after])
        self.template_tokens = len(template_ids)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def target_text(self, title: str) -> str:
        return completion_target(title) if self.template == COMPLETION else title

    def _prompts(self, abstracts: list[str]) -> list[list[int]]:
        """Each abstract's prompt, the abstract cut to its first ``max_abstract_tokens`` tokens (whole
        characters) where it is longer; counted on its own only where the prompt is near that length."""
        prompts = self._encode([self.before + abstract + self.after for abstract in abstracts])
        near = self.template_tokens + self.max_abstract_tokens - self.CUT_MARGIN
        long = [index for index, prompt in enumerate(prompts) if len(prompt) > near]
        counted = self._encode([self.lead + abstracts[index] for index in long]) if long else []
        cut = {
            index: self.tokenizer.decode(whole_characters(self.tokenizer, ids[: self.max_abstract_tokens])).strip()
            for index, ids in zip(long, counted, strict=True)
            if len(ids) > self.max_abstract_tokens
        }
        if cut:
            shortened = self._encode([self.before + text + self.after for text in cut.values()])
            for index, prompt in zip(cut, shortened, strict=True):
                prompts[index] = prompt
        return prompts

    def _target(self, after_and_title: list[int], title: str) -> list[int]:
        """The title's tokens as they follow the prompt; a tokenizer that merges the title's first
        token with the prompt's last cannot, after the prompt, write that token: the title alone then."""
        if after_and_title[: len(self.after_ids)] == self.after_ids:
            return after_and_title[len(self.after_ids) :]
        return self._encode([self.target_text(title)])[0]

    def encode(self, pairs: Sequence[tuple[str, str]], weight: float = 1.0, batch: int = 2048) -> list[Example]:
        examples = []
        eos = self.tokenizer.eos_token_id
        for start in range(0, len(pairs), batch):
            chunk = pairs[start : start + batch]
            prompts = self._prompts([normalise_whitespace(a) for a, _ in chunk])
            titles = [normalise_whitespace(t) for _, t in chunk]
            followed = self._encode([self.after + self.target_text(title) for title in titles])
            for prompt, after_and_title, title in zip(prompts, followed, titles, strict=True):
                target = self._target(after_and_title, title) + [eos]
                examples.append(Example(prompt + target, len(prompt), weight))
        return examples


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, group_factor: int = 64
) -> list[list[int]]:
    """Shuffle, sort within large groups by length, cut into batches, shuffle the batches.

    Examples in a batch have similar lengths, so dynamic padding wastes little, while the order
    across batches stays random.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch_size * group_factor
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Example], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Pad to the longest example in this batch (never to a fixed maximum), rounded up to ``multiple``.

    On CUDA a small multiple bounds the number of distinct batch shapes, which the allocator and the
    kernels' per-shape set-up otherwise pay for on almost every step.

    Besides the padded tensors it lists, on the CPU, the flat positions whose next token is a title
    token, with those tokens and their weights: the loss then gathers them without a GPU sync.
    """
    width = -(-max(len(e.input_ids) for e in examples) // multiple) * multiple
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    positions: list[int] = []
    targets: list[int] = []
    weights: list[float] = []
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        input_ids[row, :size] = torch.tensor(example.input_ids)
        attention[row, :size] = 1
        first = row * width + example.prompt_length - 1  # the position that predicts the first title token
        positions.extend(range(first, first + example.target_tokens))
        targets.extend(example.input_ids[example.prompt_length :])
        weights.extend([example.weight] * example.target_tokens)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "target_positions": torch.tensor(positions, dtype=torch.long),
        "target_ids": torch.tensor(targets, dtype=torch.long),
        "target_weights": torch.tensor(weights, dtype=torch.float32),
    }
