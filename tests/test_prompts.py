"""Prompt templates: whitespace, truncation with a notice, few-shot examples within the budget."""

import pytest

from tiny_tokenizer import build_tiny_tokenizer
from core.prompts import (
    CHAT,
    COMPLETION,
    build_prompt,
    completion_prompt,
    normalise_whitespace,
    parse_completion_prompt,
)

ABSTRACT = "We propose a simple method for learning sparse representations of graphs with neural networks."


@pytest.fixture(scope="module")
def chat_tokenizer():
    return build_tiny_tokenizer(chat=True)


@pytest.fixture(scope="module")
def plain_tokenizer():
    return build_tiny_tokenizer(chat=False)


def test_whitespace_is_normalised():
    assert normalise_whitespace("  line one\n\n  line\ttwo  ") == "line one line two"


def test_completion_prompt_ends_where_the_title_begins_and_parses_back():
    prompt = completion_prompt(ABSTRACT, [("An earlier abstract.", "Earlier Title")])
    assert prompt.endswith(f"Abstract: {ABSTRACT}\nTitle:")
    assert "Abstract: An earlier abstract.\nTitle: Earlier Title\n\n" in prompt
    assert parse_completion_prompt(prompt) == ABSTRACT
    with pytest.raises(ValueError):
        parse_completion_prompt("no title marker here")


def test_chat_prompt_opens_the_assistant_turn(chat_tokenizer):
    prompt = build_prompt(chat_tokenizer, CHAT, ABSTRACT, 400)
    assert prompt.text.endswith("<|im_start|>assistant\n")
    assert ABSTRACT in prompt.text
    assert prompt.notice is None and prompt.dropped_tokens == 0


def test_long_abstract_is_cut_from_the_end_with_a_notice(plain_tokenizer):
    long_abstract = " ".join([ABSTRACT] * 20)
    prompt = build_prompt(plain_tokenizer, COMPLETION, long_abstract, 120)
    assert len(prompt.input_ids) <= 120
    assert prompt.dropped_tokens > 0
    assert prompt.abstract_tokens == len(plain_tokenizer(long_abstract, add_special_tokens=False)["input_ids"])
    kept = prompt.abstract_tokens - prompt.dropped_tokens
    assert prompt.notice == (
        f"The abstract is too long for the prompt: its last {prompt.dropped_tokens} of {prompt.abstract_tokens} "
        f"tokens were dropped (titles come from the first {kept})."
    )
    assert prompt.text.startswith(f"Abstract: {ABSTRACT[:40]}")
    assert prompt.text.endswith("\nTitle:")


@pytest.mark.parametrize("room", [16, 17, 18])
def test_a_cut_never_splits_a_character(plain_tokenizer, room):
    # The tiny tokenizer spells each of these characters as three byte tokens: two of the three room
    # sizes would cut one in half.
    abstract = "我们提出了一种学习图的稀疏表示的简单方法" * 4
    overhead = len(build_prompt(plain_tokenizer, COMPLETION, "", 10_000).input_ids)
    prompt = build_prompt(plain_tokenizer, COMPLETION, abstract, overhead + room)
    kept = prompt.text.removeprefix("Abstract: ").removesuffix("\nTitle:")
    assert "\ufffd" not in prompt.text and abstract.startswith(kept) and kept
    assert prompt.dropped_tokens == prompt.abstract_tokens - len(plain_tokenizer(kept)["input_ids"])


@pytest.mark.parametrize("template", [CHAT, COMPLETION])
@pytest.mark.parametrize("room", [16, 17, 23, 40, 121])
def test_prompt_never_exceeds_its_budget(chat_tokenizer, template, room):
    text = " ".join([ABSTRACT, "Experiments show (x=3.5%) gains; code: https://example.org/a_b."] * 6)
    overhead = len(build_prompt(chat_tokenizer, template, "", 10_000).input_ids)
    prompt = build_prompt(chat_tokenizer, template, text, overhead + room)
    assert prompt.dropped_tokens > 0
    assert len(prompt.input_ids) <= overhead + room


def test_examples_are_added_only_while_they_fit(plain_tokenizer):
    examples = [(ABSTRACT, "Sparse Graph Learning")] * 5
    roomy = build_prompt(plain_tokenizer, COMPLETION, ABSTRACT, 2000, examples)
    tight = build_prompt(plain_tokenizer, COMPLETION, ABSTRACT, 150, examples)
    assert roomy.examples_used == 5
    assert 0 < tight.examples_used < 5
    assert len(tight.input_ids) <= 150
    assert tight.dropped_tokens == 0


@pytest.mark.parametrize("template", [CHAT, COMPLETION])
def test_example_titles_and_abstracts_are_shown_on_one_line_as_training_formats_them(
    chat_tokenizer, plain_tokenizer, template
):
    """A curated title is stored as given: one with line breaks went into the prompt with them."""
    tokenizer = chat_tokenizer if template == CHAT else plain_tokenizer
    wrapped = [("Graph  networks\npredict molecules.", "Graph Networks\n  for Molecules\n")]
    flat = [("Graph networks predict molecules.", "Graph Networks for Molecules")]
    prompt = build_prompt(tokenizer, template, ABSTRACT, 2000, wrapped)
    assert prompt.examples_used == 1
    assert prompt.text == build_prompt(tokenizer, template, ABSTRACT, 2000, flat).text


def test_a_budget_without_room_for_the_abstract_is_an_error(chat_tokenizer):
    with pytest.raises(ValueError, match="no room"):
        build_prompt(chat_tokenizer, CHAT, ABSTRACT, 20)


@pytest.mark.parametrize("template", [CHAT, COMPLETION])
def test_an_abstract_that_just_fits_is_not_cut(chat_tokenizer, template):
    """The abstract's first word joins the space before it into one token: counting the two apart made
    every abstract within a token of the budget lose its end, with a notice saying it was too long."""
    abstract = "learning sparse representations of graphs with neural networks."  # " learning" is one token
    whole = build_prompt(chat_tokenizer, template, abstract, 10_000)
    fitting = build_prompt(chat_tokenizer, template, abstract, len(whole.input_ids))
    assert (fitting.dropped_tokens, fitting.notice, fitting.input_ids) == (0, None, whole.input_ids)
    cut = build_prompt(chat_tokenizer, template, abstract, len(whole.input_ids) - 1)
    assert 0 < cut.dropped_tokens <= 2 and len(cut.input_ids) <= len(whole.input_ids) - 1
