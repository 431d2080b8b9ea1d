"""Prompt templates shared by generation, training and export, so all three format text identically.

Two templates exist. ``chat`` is for instruct models (the embedded SmolLM2 base): their own chat template
around a short instruction. ``completion`` is for fine-tuned checkpoints: plain text that ends exactly
where the title begins, so the model learns to write the title and then its end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CHAT = "chat"
COMPLETION = "completion"
TEMPLATES = (CHAT, COMPLETION)

INSTRUCTION = (
    "Write a concise, specific title for the research paper with this abstract. "
    "Reply with the title only."
)
ABSTRACT_PREFIX = "Abstract: "
TITLE_PREFIX = "\nTitle:"
EXAMPLE_SEPARATOR = "\n\n"
# Few-shot example abstracts are cut to this many characters so that several fit in the context.
EXAMPLE_ABSTRACT_CHARS = 700

Example = tuple[str, str]  # (abstract, title)
EMPTY_ABSTRACT = "The abstract is empty: paste an abstract first."


def normalise_whitespace(text: str) -> str:
    """Collapse runs of whitespace (arXiv line breaks, pasted indentation) to single spaces."""
    return " ".join(text.split())  # the same whitespace as re's \s, four times faster on a training split


def _shorten(abstract: str) -> str:
    if len(abstract) <= EXAMPLE_ABSTRACT_CHARS:
        return abstract
    return abstract[:EXAMPLE_ABSTRACT_CHARS].rsplit(" ", 1)[0] + " …"


def completion_block(abstract: str) -> str:
    """One abstract in the completion template, ending where its title begins."""
    return f"{ABSTRACT_PREFIX}{abstract}{TITLE_PREFIX}"


def completion_target(title: str) -> str:
    """The text a completion-template model learns to produce after the prompt (before its EOS)."""
    return f" {title}"


def _example_text(example: Example) -> Example:
    """An example as training formats a pair: whitespace collapsed, the abstract shortened. A curated title
    is stored as given, and a line break in it (an imported title wrapped in its spreadsheet cell) would
    show the model a title running over two lines, where every candidate ends at its first newline."""
    abstract, title = example
    return _shorten(normalise_whitespace(abstract)), normalise_whitespace(title)


def completion_prompt(abstract: str, examples: Sequence[Example] = ()) -> str:
    """The completion prompt, with optional few-shot (abstract, title) examples before the abstract."""
    shots = "".join(
        completion_block(a) + completion_target(t) + EXAMPLE_SEPARATOR for a, t in map(_example_text, examples)
    )
    return shots + completion_block(abstract)


def parse_completion_prompt(prompt: str) -> str:
    """Recover the abstract from a completion prompt (used when importing SFT exports)."""
    last = prompt.rsplit(EXAMPLE_SEPARATOR + ABSTRACT_PREFIX, 1)[-1]
    last = last.removeprefix(ABSTRACT_PREFIX)
    if not last.endswith(TITLE_PREFIX):
        raise ValueError("not a titlecraft completion prompt (it must end with '\\nTitle:')")
    return last[: -len(TITLE_PREFIX)]


def chat_messages(abstract: str, examples: Sequence[Example] = ()) -> list[dict[str, str]]:
    """Chat messages for instruct models: examples become earlier user/assistant turns."""
    messages: list[dict[str, str]] = []
    for example_abstract, example_title in map(_example_text, examples):
        messages.append({"role": "user", "content": f"{INSTRUCTION}\n\n{ABSTRACT_PREFIX}{example_abstract}"})
        messages.append({"role": "assistant", "content": example_title})
    messages.append({"role": "user", "content": f"{INSTRUCTION}\n\n{ABSTRACT_PREFIX}{abstract}"})
    return messages


@dataclass(frozen=True)
class Prompt:
    """A tokenised prompt, and how many abstract tokens were cut to fit the context budget."""

    input_ids: list[int]
    text: str
    abstract_tokens: int
    dropped_tokens: int
    examples_used: int

    @property
    def notice(self) -> str | None:
        if not self.dropped_tokens:
            return None
        # "The prompt", not "the model's context": prompts are capped well below a long context.
        return (
            f"The abstract is too long for the prompt: its last {self.dropped_tokens} of "
            f"{self.abstract_tokens} tokens were dropped (titles come from the first "
            f"{self.abstract_tokens - self.dropped_tokens})."
        )


def render(template: str, abstract: str, examples: Sequence[Example], tokenizer) -> str:
    """The prompt text for a template (chat prompts end with the assistant turn opened)."""
    if template == COMPLETION:
        return completion_prompt(abstract, examples)
    if template == CHAT:
        return tokenizer.apply_chat_template(
            chat_messages(abstract, examples), tokenize=False, add_generation_prompt=True
        )
    raise ValueError(f"unknown prompt template {template!r}; expected one of {TEMPLATES}")


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def whole_characters(tokenizer, ids: list[int]) -> list[int]:
    """``ids`` less the last tokens while they hold only part of a character: byte-level tokenizers
    split CJK characters and emoji across tokens, and a cut between them decodes to U+FFFD."""
    while ids and tokenizer.decode(ids).endswith("\ufffd"):
        ids = ids[:-1]
    return ids


def build_prompt(
    tokenizer,
    template: str,
    abstract: str,
    max_prompt_tokens: int,
    examples: Sequence[Example] = (),
) -> Prompt:
    """Tokenise a prompt within ``max_prompt_tokens``.

    The abstract has priority: it is cut from the end only if it alone does not fit, and few-shot
    examples are added (most relevant first) only while the whole prompt still fits.
    """
    abstract = normalise_whitespace(abstract)
    abstract_ids = _encode(tokenizer, abstract)
    overhead = len(_encode(tokenizer, render(template, "", (), tokenizer)))
    if max_prompt_tokens - overhead < 16:
        raise ValueError(f"a prompt budget of {max_prompt_tokens} tokens leaves no room for the abstract")
    # Measured on the whole prompt: in context the abstract's first word takes the space before it into
    # one token, so the abstract and the template counted apart overstate the prompt.
    kept, text = abstract_ids, render(template, abstract, (), tokenizer)
    ids = _encode(tokenizer, text)
    while len(ids) > max_prompt_tokens:
        kept = whole_characters(tokenizer, kept[: len(kept) - (len(ids) - max_prompt_tokens)])
        abstract = tokenizer.decode(kept).strip()
        text = render(template, abstract, (), tokenizer)
        ids = _encode(tokenizer, text)
    dropped = len(abstract_ids) - len(kept)
    used: list[Example] = []
    for example in examples:
        candidate_text = render(template, abstract, [*used, example], tokenizer)
        candidate_ids = _encode(tokenizer, candidate_text)
        if len(candidate_ids) > max_prompt_tokens:
            break
        used.append(example)
        text, ids = candidate_text, candidate_ids
    return Prompt(ids, text, len(abstract_ids), dropped, len(used))
