"""Cleaning, identity, flag and ranking rules for candidate titles."""

import pytest
from rouge_score import rouge_scorer

from core.candidates import (
    COPIES_ABSTRACT,
    EMPTY,
    ENDS_WITH_COLON,
    TOO_LONG,
    TOO_SHORT,
    candidate_flags,
    clean_title,
    consensus_scores,
    copies_abstract,
    keep_diverse,
    rank_candidates,
    rouge_l_f1,
    title_key,
    title_words,
    word_count,
)

ABSTRACT = (
    "We study sparse attention for long documents. Our method, called Strided Sparse Attention, "
    "halves memory use while keeping accuracy on five benchmarks! Code is available."
)


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ('"Sparse Attention for Long Documents"', "Sparse Attention for Long Documents"),
        ("Title: Sparse Attention for Long Documents.", "Sparse Attention for Long Documents"),
        ("**Title:** *Sparse* Attention", "Sparse Attention"),
        ('**Title: "Sparse Attention Revisited."**', "Sparse Attention Revisited"),
        ("  \u201cSmart Quotes\u201d  ", "Smart Quotes"),
        ("## Paper title - Headings Too", "Headings Too"),
        ("\n\nFirst Line\nSecond line", "First Line"),
        ("Spaces   inside\tare   collapsed", "Spaces inside are collapsed"),
        ("Ellipses Stay...", "Ellipses Stay..."),
        ("Models' Apostrophes Stay", "Models' Apostrophes Stay"),
        ('"Unclosed quote', "Unclosed quote"),
        ("Titles: Not a Prefix", "Titles: Not a Prefix"),
        ("", ""),
        ("\u201cDeep\u201d Learning for Cats", "\u201cDeep\u201d Learning for Cats"),
        ('"Attention" Is All You "Need"', '"Attention" Is All You "Need"'),
        ("A* Search Revisited", "A* Search Revisited"),
        ("Learning __init__ Methods", "Learning __init__ Methods"),
        ("__Whole Title Underlined__", "Whole Title Underlined"),
        ("Title-Conditioned Image Generation", "Title-Conditioned Image Generation"),
        ("Title \u2014 Dashed Prefix", "Dashed Prefix"),
        ("Elections in the U.S.", "Elections in the U.S."),
        ("Why Titles Matter?", "Why Titles Matter?"),
    ],
)
def test_clean_title(raw, cleaned):
    assert clean_title(raw) == cleaned


def test_title_key_ignores_case_punctuation_and_spacing():
    assert title_key("Self-Supervised Learning: A Survey.") == title_key("self supervised learning  a survey")
    assert title_key("Graph Learning") != title_key("Graph Learners")
    assert title_words("Über-Fast_Models, 2024!") == ["über", "fast", "models", "2024"]


def test_copies_abstract_most_of_one_sentence_as_a_contiguous_run():
    assert copies_abstract("We study sparse attention for long documents", ABSTRACT)
    assert copies_abstract("Study Sparse Attention for Long Documents", ABSTRACT)  # 6 of 7 words


def test_copies_abstract_sees_through_abbreviations():
    abstract = "Small models title papers well, e.g. with curated examples in the prompt. Code is out."
    assert copies_abstract("Small Models Title Papers Well, e.g. With Curated Examples in the Prompt", abstract)


def test_copies_abstract_does_not_end_a_sentence_at_an_initialism():
    """A real validation title was flagged as a copy: "U.S." ended a sentence, leaving "Presidential
    debates" as a two-word one that the title covered whole."""
    abstract = (
        "Personal attacks are a feature of U.S. presidential debates. We present a framework for analysing "
        "personal attacks in U.S. presidential debates. Samples are drawn i.i.d. from the debates."
    )
    assert not copies_abstract("Analysing Personal Attacks in U.S. Presidential Debates", abstract)
    # Split at "i.i.d.", "from the debates." was a whole sentence of its own ("drawn ... from", not contiguous
    # in the abstract, was never a copy, split or not).
    assert not copies_abstract("From the Debates", abstract)
    assert copies_abstract("We Present a Framework for Analysing Personal Attacks in U.S. Presidential Debates", abstract)


def test_copies_abstract_whole_short_sentence():
    assert copies_abstract("Code Is Available", ABSTRACT)


def test_copies_abstract_not_for_quoted_names_short_phrases_runs_across_sentences_or_reordered_words():
    assert not copies_abstract("Strided Sparse Attention Halves Memory Use", ABSTRACT)  # 6 of 17 words
    assert not copies_abstract("Sparse Attention for Long Documents", ABSTRACT)  # 5 of 7 words
    assert not copies_abstract("Sparse Attention", ABSTRACT)
    assert not copies_abstract("Long Documents Our Method Called", ABSTRACT)  # crosses a sentence end
    assert not copies_abstract("Attention Sparse for Long Documents", ABSTRACT)
    assert not copies_abstract("", ABSTRACT)


def test_a_copy_cut_off_mid_word_by_the_token_limit_is_still_a_copy():
    """embedded-base copied an abstract's opening sentences until max_new_tokens cut it mid-word ("...
    fails to preserve low-sal"): the part word broke the contiguous run, so it was flagged too long but
    not as a copy, and evaluation's copy rate missed it."""
    title = "We study sparse attention for long documents. Our method, called Strided Sparse Atte"
    assert candidate_flags(title, ABSTRACT, cut_off=True) == [TOO_LONG, COPIES_ABSTRACT]
    # A title that ended by itself wrote its last word whole: "Atte" is then no word of the abstract.
    assert candidate_flags("Code Is Availa", ABSTRACT) == []


def test_flags():
    assert candidate_flags("", ABSTRACT) == [EMPTY]
    assert candidate_flags("Sparse Attention", ABSTRACT) == [TOO_SHORT]
    assert candidate_flags("Strided Attention Saves Memory", ABSTRACT) == []
    assert candidate_flags(" ".join(["word"] * 26), ABSTRACT) == [TOO_LONG]
    assert candidate_flags(" ".join(["word"] * 25), ABSTRACT) == []
    assert candidate_flags("We study sparse attention for long documents", ABSTRACT) == [COPIES_ABSTRACT]


def test_control_characters_are_no_part_of_a_title():
    assert clean_title("Sparse\x08 Attention\x14 for \x1b[31mLong Documents\x7f") == "Sparse Attention for [31mLong Documents"
    assert clean_title("\x00\x14\nReal Title") == "Real Title"  # a line of control characters only is no line
    assert clean_title("Tabs\tand\x0bbreaks") == "Tabs and"  # whitespace stays whitespace; \x0b ends the line


def test_chinese_and_japanese_titles_count_a_word_per_two_characters():
    """Written without spaces, a whole Chinese title was one word, so every one was flagged too short."""
    assert word_count("稀疏注意力用于长文档的高效建模") == 8
    assert word_count("LLM的高效推理：一项研究") == 6  # LLM + 5 + 5 characters, the colon no word
    assert word_count("그래프 신경망의 효율적 학습") == 4  # Korean is written with spaces
    assert word_count("Sparse Attention — Revisited") == 4
    assert candidate_flags("稀疏注意力用于长文档的高效建模", ABSTRACT) == []
    assert candidate_flags("稀疏注意力", ABSTRACT) == []  # 3 words
    assert candidate_flags("模型", ABSTRACT) == [TOO_SHORT]
    assert candidate_flags("模" * 51, ABSTRACT) == [TOO_LONG]


def test_a_lead_in_ending_with_a_colon_is_not_a_title():
    assert candidate_flags("Here is a title for your paper:", ABSTRACT) == [ENDS_WITH_COLON]
    assert candidate_flags("Research Paper Abstract\uff1a", ABSTRACT) == [ENDS_WITH_COLON]
    assert candidate_flags("Strided Attention: Saving Memory on Long Documents", ABSTRACT) == []


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sparse attention for long documents", "long documents with sparse attention"),
        ("a b c d", "d c b a"),
        ("graph neural networks", "graph neural networks"),
        ("one two", "three four"),
    ],
)
def test_rouge_l_matches_rouge_score(first, second):
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(first, second)["rougeL"].fmeasure
    assert rouge_l_f1(first.split(), second.split()) == pytest.approx(expected)


def test_consensus_prefers_the_central_title():
    titles = ["Sparse Attention for Long Documents", "Sparse Attention for Documents", "Cooking With Gas Tonight"]
    scores = consensus_scores(titles)
    assert scores[0] > scores[2] and scores[1] > scores[2]
    assert consensus_scores(["Only One"]) == [0.0]


def test_rank_puts_usable_first_then_orders_by_score_or_consensus():
    drafts = [
        ("Sparse", -0.1),  # too short: best score, still ranked last
        ("Fast Sparse Attention for Long Documents", -2.0),
        ("Fast Sparse Attention for Documents", -1.0),
        ("Cooking With Gas Tonight", -0.5),
    ]
    by_score = rank_candidates(drafts, ABSTRACT, "score")
    assert [c.text for c in by_score] == [
        "Cooking With Gas Tonight",
        "Fast Sparse Attention for Documents",
        "Fast Sparse Attention for Long Documents",
        "Sparse",
    ]
    assert [c.rank for c in by_score] == [1, 2, 3, 4]
    assert by_score[-1].flags == [TOO_SHORT] and not by_score[-1].usable
    by_consensus = rank_candidates(drafts, ABSTRACT, "consensus")
    assert by_consensus[0].text == "Fast Sparse Attention for Documents"
    assert by_consensus[-1].text == "Sparse"
    with pytest.raises(ValueError, match="ranking"):
        rank_candidates(drafts, ABSTRACT, "votes")


def test_keep_diverse_trades_a_near_variant_for_a_different_title():
    drafts = [
        ("Sparse Attention for Long Documents", -0.2),
        ("Sparse Attention for Long Document Collections", -0.3),  # a near-variant of the top title
        ("Retrieval Beats Attention on Legal Texts", -0.5),
        ("Sparse", -0.1),  # flagged too short: only kept when nothing usable is left
    ]
    ranked = rank_candidates(drafts, ABSTRACT, "score")
    assert [c.text for c in keep_diverse(ranked, 2, 0.0)] == [d[0] for d in drafts[:2]]
    kept = keep_diverse(rank_candidates(drafts, ABSTRACT, "score"), 2, 1.5)
    assert [c.text for c in kept] == ["Sparse Attention for Long Documents", "Retrieval Beats Attention on Legal Texts"]
    assert [c.rank for c in kept] == [1, 2]
    # A small weight does not outweigh the variant's better score.
    assert keep_diverse(rank_candidates(drafts, ABSTRACT, "score"), 2, 0.1)[1].text == drafts[1][0]
    everything = keep_diverse(rank_candidates(drafts, ABSTRACT, "score"), 4, 1.5)
    assert [c.text for c in everything] == [c.text for c in ranked]  # N of N: all kept, in ranked order


def test_keep_diverse_always_keeps_the_top_of_either_ranking():
    drafts = [
        ("Fast Sparse Attention for Long Documents", -2.0),
        ("Fast Sparse Attention for Documents", -1.0),
        ("Cooking With Gas Tonight", -0.5),
    ]
    by_consensus = rank_candidates(drafts, ABSTRACT, "consensus")
    kept = keep_diverse(by_consensus, 2, 1.5)
    assert kept[0].text == by_consensus[0].text == "Fast Sparse Attention for Documents"
    assert kept[1].text == "Cooking With Gas Tonight"


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("\u300cSparse Attention for Long Documents\u300d", "Sparse Attention for Long Documents"),
        ("\u300eSparse Attention for Long Documents\u300f", "Sparse Attention for Long Documents"),
        ("\u300a\u56fe\u795e\u7ecf\u7f51\u7edc\u300b", "\u56fe\u795e\u7ecf\u7f51\u7edc"),
        ("Title\uff1a\u300cSparse Attention\u300d", "Sparse Attention"),
        ("\u300cUnclosed corner bracket", "Unclosed corner bracket"),
        ("\u300cSparse\u300d Attention \u300cRevisited\u300d", "\u300cSparse\u300d Attention \u300cRevisited\u300d"),
    ],
)
def test_clean_title_strips_cjk_quotes_and_a_full_width_colon_prefix(raw, cleaned):
    assert clean_title(raw) == cleaned


@pytest.mark.parametrize(
    "title",
    [
        "#HashtagWars: Learning a Sense of Humor",
        "#MeToo on Campus: Studying College Sexual Assault at Scale",
        "#StayHome or #Marathon? Social Media Enhanced Pandemic Surveillance",
    ],
)
def test_clean_title_keeps_a_leading_hashtag(title):
    """A markdown heading's marks are followed by a space; a hashtag (15 training titles) is the title."""
    assert clean_title(title) == title
    assert clean_title(f"## {title}") == title


@pytest.mark.parametrize(
    "title",
    [
        "ToolChain*: Efficient Action Space Navigation in Large Language Models with A* Search",
        "A-MHA*: Anytime Multi-Heuristic A*",
        "The Basic B*** Effect: The Use of LLM-based Agents",
        "Planning with $A^*$ and $D^*$ Lite",
    ],
)
def test_clean_title_keeps_stars_that_belong_to_names(title):
    """Emphasis stars open before a word and close after one; a star ending a name or inside $...$ is
    part of the title."""
    assert clean_title(title) == title


def test_clean_title_strips_emphasis_inside_a_title():
    assert clean_title("Learning *Sparse* Attention (**Fast**)") == "Learning Sparse Attention (Fast)"


@pytest.mark.parametrize(
    "title",
    [
        "`Keep it Together': Enforcing Cohesion in Extractive Summaries",
        "\"It's Not Just Hate'': A Multi-Dimensional Perspective on Detecting Harmful Speech Online",
    ],
)
def test_clean_title_keeps_tex_quotes(title):
    """arXiv titles quote the TeX way, `...' and "...'': the opening mark is not a dangling one."""
    assert clean_title(title) == title


def test_clean_title_strips_an_echoed_abstract_label():
    """Instruct models echo the prompt's "Abstract:" label; behind it a copied sentence escaped the copy
    flag, since "abstract" is no word of the sentence. Titles that begin with the word stay."""
    assert clean_title("Abstract: Strided Sparse Attention for Documents") == "Strided Sparse Attention for Documents"
    assert clean_title("**Abstract:** Title: Sparse Attention") == "Sparse Attention"
    copied = clean_title("Abstract: We study sparse attention for long documents.")
    assert candidate_flags(copied, ABSTRACT) == [COPIES_ABSTRACT]
    for title in ("Abstract Meaning Representation for Summarization", "Abstract, Rationale, Stance: A Joint Model"):
        assert clean_title(title) == title


def test_copies_abstract_a_sentence_and_the_start_of_the_next():
    """Instruct models copy the abstract's opening past its first full stop; a run that holds a whole
    sentence is a copy whether or not it goes on into the next one."""
    assert copies_abstract("We study sparse attention for long documents. Our method, called Strided", ABSTRACT)
    assert not copies_abstract("Sparse Attention for Long Documents: Our Method Called Strided Sparse Attention", ABSTRACT)


def test_a_title_cut_off_after_two_words_is_flagged_too_long_only():
    """A small token limit cut titles off after a word or two, and they showed [too_short, too_long]."""
    assert candidate_flags("Sparse Graph", "An abstract about graphs.", cut_off=True) == [TOO_LONG]
    assert candidate_flags("Sparse Graph", "An abstract about graphs.") == [TOO_SHORT]
