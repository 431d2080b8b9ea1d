"""From raw sampled text to ranked candidate titles: cleaning, identity, flags and ranking.

Pure text functions, shared by generation and evaluation so both judge candidates by the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

EMPTY = "empty"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
COPIES_ABSTRACT = "copies_abstract"
ENDS_WITH_COLON = "ends_with_colon"
MIN_WORDS = 3
MAX_WORDS = 25
# A title copies a sentence when it is at least this share of one, as a contiguous run. A method's
# name quoted from the abstract is a normal title (1.4% of real arXiv titles contain a 4-word run of
# their abstract's sentences; 0.03% cover 80% of one), a sentence with its lead-in cut is not.
COPY_MIN_SHARE = 0.8
RANKINGS = ("score", "consensus")

# "Title:", "Title：" (full-width colon), "Title —", "Paper title - ": a hyphen only after a space
# ("Title-Conditioned ..." is a title). Also the prompt's "Abstract:" label, which instruct models echo
# ("Abstract Meaning Representation ..." is a title).
_TITLE_PREFIX = re.compile(
    r"^(?:(?:(?:paper|suggested|proposed)\s+)?title(?:\s*[:\uff1a\u2013\u2014]|\s+-)|abstract\s*[:\uff1a])\s*",
    re.IGNORECASE,
)
# Markdown emphasis: star pairs around text anywhere ("*Sparse* Attention"), opening at the start, after a
# space or an opening bracket or quote and closing before a space or punctuation, so that the stars of
# names stay ("ToolChain*: ... with A* Search", "$A^*$"); underscores only around the whole title
# ("__init__" inside a title is a name).
_STAR_EMPHASIS = re.compile(
    r"(?<![^\s(\[{\"'\u201c\u2018\u00ab])(\*\*?)(?=[^\s*])(.+?)(?<=[^\s*])\1(?![^\s)\]}.,:;!?\"'\u201d\u2019\u00bb-])"
)
_UNDERSCORE_EMPHASIS = re.compile(r"^(__?)(?=\S)(.+?)(?<=\S)\1$")
# A markdown heading's marks end at a space (or the end); "#MeToo on Campus" opens with a hashtag.
_HEADING_MARKS = re.compile(r"^#+(?:\s+|$)")
# Latin quotes, and the CJK corner brackets and title marks (「」『』《》) that also enclose titles.
_QUOTE_PAIRS = {
    '"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb", "\u201e": "\u201c",
    "\u300c": "\u300d", "\u300e": "\u300f", "\u300a": "\u300b",
}
# Quote marks that are never part of a word (apostrophes are: "Models' ...").
_QUOTE_MARKS = "\"`\u201c\u201d\u00ab\u00bb\u201e\u300c\u300d\u300e\u300f\u300a\u300b"
# TeX quotes close with apostrophes: "`Keep it Together': ..." and "\"It's Not Just Hate'': ..." are balanced.
_TEX_CLOSERS = {"`": "'", '"': "''"}
# Han ideographs (with their extensions and compatibility forms), hiragana and katakana: scripts written
# without spaces between words. Hangul is written with spaces.
_NO_SPACE_SCRIPT = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Control characters other than whitespace (backspace, escape, ...): no part of a title, and a terminal
# would act on them.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
# A sentence ends at ., ! or ? and a space, but not after "e.g.", "i.e.", "et al.", "vs." or "cf.", nor
# after an initialism ("U.S.", "i.i.d.", "Ph.D."): split there, "U.S. presidential debates" left a
# two-word sentence that a real title covered whole, flagging it as a copy.
_SENTENCE_END = re.compile(r"(?<!\.[^\W\d_]\.)(?<!\bal\.)(?<!\bvs\.)(?<!\bcf\.)(?<=[.!?])\s+")


@dataclass
class Candidate:
    """A finished, cleaned candidate; ``rank`` starts at 1 and flagged ones rank after usable ones.
    ``cut_off``: it did not end within the token limit (flagged too long)."""

    text: str
    score: float
    flags: list[str] = field(default_factory=list)
    rank: int = 0
    cut_off: bool = False

    @property
    def usable(self) -> bool:
        return not self.flags


def _strip_quotes(text: str) -> str:
    """Quotes around the whole title, or one dangling quote mark at either end; quoted words inside
    (``"Attention" Is All You "Need"``) and TeX quotes (_TEX_CLOSERS) stay."""
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        inner = text[1:-1]
        if text[0] not in inner and text[-1] not in inner:
            return inner
    marks = [c for c in text if c in _QUOTE_MARKS]
    if len(marks) == 1 and marks[0] in (text[0], text[-1]):
        closer = _TEX_CLOSERS.get(text[0])
        if closer and closer in text[1:]:
            return text
        return text.replace(marks[0], "")
    return text


def _strip_final_period(text: str) -> str:
    """A sentence's full stop goes; an abbreviation's ("U.S.", "e.g.") and an ellipsis stay."""
    if not text.endswith(".") or text.endswith(".."):
        return text
    last_word = text.split()[-1]
    return text if "." in last_word[:-1] else text[:-1].rstrip()


def _clean_once(text: str) -> str:
    text = _STAR_EMPHASIS.sub(r"\2", text).strip()
    text = _UNDERSCORE_EMPHASIS.sub(r"\2", text)
    text = _HEADING_MARKS.sub("", text)
    text = _TITLE_PREFIX.sub("", text).strip()
    text = _strip_quotes(text).strip()
    return _strip_final_period(text)


def clean_title(text: str) -> str:
    """The first non-empty line without control characters, markdown emphasis, "Title:" prefixes,
    surrounding quotes or a trailing period, with whitespace collapsed. Repeated until stable: ``"**Title:** "X"."`` -> ``X``."""
    lines = [line for line in _CONTROL.sub("", text).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    while True:
        cleaned = _clean_once(text)
        if cleaned == text:
            return re.sub(r"\s+", " ", cleaned)
        text = cleaned


def title_words(text: str) -> list[str]:
    """Lower-case word tokens without punctuation: the unit of identity, copy checks and ROUGE-L."""
    return re.findall(r"[^\W_]+", text.casefold())


def word_count(title: str) -> int:
    """Words as the length flags count them: whitespace-separated, except that Chinese and Japanese, written
    without spaces, count a word per two characters (their words' usual length), so that a 15-character
    Chinese title is not one word "too short"."""
    count = 0
    for token in title.split():
        ideographs = len(_NO_SPACE_SCRIPT.findall(token))
        rest = _NO_SPACE_SCRIPT.sub("", token)
        count += (ideographs + 1) // 2 + (1 if rest and (not ideographs or re.search(r"[^\W_]", rest)) else 0)
    return count


def title_key(text: str) -> str:
    """Two titles are the same candidate when they differ only in case, punctuation or spacing."""
    return " ".join(title_words(text))


def abstract_sentences(abstract: str) -> list[list[str]]:
    """The abstract split at '.', '!' or '?' followed by whitespace, each sentence as title_words."""
    return [words for sentence in _SENTENCE_END.split(abstract) if (words := title_words(sentence))]


def copies_abstract(title: str, abstract: str, cut_off: bool = False) -> bool:
    """True when the title, compared as title_words, is a contiguous run of the abstract holding at least
    COPY_MIN_SHARE of one of its sentences: most of a sentence, or a whole one run on into the next.
    ``cut_off``: the token limit may have stopped the title mid-word, so its last word need only begin
    the abstract's word there."""
    words = title_words(title)
    if not words:
        return False
    sentences = abstract_sentences(abstract)
    abstract_words = [word for sentence in sentences for word in sentence]
    spans, start = [], 0
    for sentence in sentences:
        spans.append((start, start + len(sentence)))
        start += len(sentence)
    width = len(words)
    for run_start in range(len(abstract_words) - width + 1):
        run = abstract_words[run_start : run_start + width]
        if run != words and not (cut_off and run[:-1] == words[:-1] and run[-1].startswith(words[-1])):
            continue
        run_end = run_start + width
        if any(min(run_end, end) - max(run_start, begin) >= COPY_MIN_SHARE * (end - begin) for begin, end in spans):
            return True
    return False


def candidate_flags(title: str, abstract: str, cut_off: bool = False) -> list[str]:
    """Why a cleaned title is unusable; an empty list means usable. Words are counted by word_count.
    ``cut_off``: the title did not end within the token limit, so it is too long for it (its ending is
    missing, often mid-word)."""
    count = word_count(title)
    if count == 0:
        return [EMPTY]
    flags = []
    if count < MIN_WORDS and not cut_off:  # a cut-off title's few words are not all it would have said
        flags.append(TOO_SHORT)
    if count > MAX_WORDS or cut_off:
        flags.append(TOO_LONG)
    if copies_abstract(title, abstract, cut_off):
        flags.append(COPIES_ABSTRACT)
    if title.rstrip().endswith((":", "\uff1a")):
        # A lead-in to something that never came ("Here is a title for your paper:", "Research Paper
        # Abstract:"), common from instruct models; 2 of 188k real arXiv titles end so.
        flags.append(ENDS_WITH_COLON)
    return flags


def rouge_l_f1(first: Sequence[str], second: Sequence[str]) -> float:
    """ROUGE-L F1 of two token sequences (longest common subsequence), as rouge-score computes it
    without stemming."""
    if not first or not second:
        return 0.0
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for position, other in enumerate(second):
            current.append(previous[position] + 1 if token == other else max(previous[position + 1], current[-1]))
        previous = current
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(second), common / len(first)
    return 2 * precision * recall / (precision + recall)


def consensus_scores(titles: Sequence[str]) -> list[float]:
    """Each title's mean ROUGE-L F1 to the others: minimum Bayes risk picks the most central one."""
    tokens = [title_words(title) for title in titles]
    if len(tokens) < 2:
        return [0.0] * len(tokens)
    scores = [0.0] * len(tokens)
    for i in range(len(tokens)):
        for j in range(i + 1, len(tokens)):
            similarity = rouge_l_f1(tokens[i], tokens[j])
            scores[i] += similarity
            scores[j] += similarity
    return [total / (len(tokens) - 1) for total in scores]


def rank_candidates(
    drafts: Sequence[tuple[str, float]], abstract: str, ranking: str = "score", cut_off: Collection[str] = ()
) -> list[Candidate]:
    """Flag and rank cleaned (title, score) drafts: usable first, then by score or by consensus
    (ties broken by score). Titles in ``cut_off`` did not end within the token limit."""
    if ranking not in RANKINGS:
        raise ValueError(f"unknown ranking {ranking!r}; expected one of {RANKINGS}")
    candidates = [
        Candidate(text, score, candidate_flags(text, abstract, text in cut_off), cut_off=text in cut_off)
        for text, score in drafts
    ]
    consensus = consensus_scores([c.text for c in candidates]) if ranking == "consensus" else [0.0] * len(candidates)
    order = sorted(
        range(len(candidates)),
        key=lambda i: (bool(candidates[i].flags), -consensus[i], -candidates[i].score),
    )
    ranked = [candidates[i] for i in order]
    for rank, candidate in enumerate(ranked, start=1):
        candidate.rank = rank
    return ranked


def keep_diverse(ranked: Sequence[Candidate], n: int, diversity: float) -> list[Candidate]:
    """The N candidates to show from a ranked list that holds more than N (maximal marginal relevance).

    The top-ranked one is always kept; each next one is the usable candidate with the highest score
    minus ``diversity`` times its ROUGE-L F1 to the closest one already kept. Near-variants of a kept
    title then give way to a different title of almost the same score: a researcher gets more distinct
    options, and on the test split the best of them is as good as before (docs/evaluation.md).
    ``diversity == 0`` keeps the N best-ranked. The kept ones stay in ranked order and are re-numbered.
    """
    if diversity <= 0 or len(ranked) <= n:
        kept = list(ranked[:n])
    else:
        words = [title_words(candidate.text) for candidate in ranked]
        chosen, closest = [0], [rouge_l_f1(words[i], words[0]) for i in range(len(ranked))]
        while len(chosen) < n:
            pick = max(
                (i for i in range(len(ranked)) if i not in chosen),
                key=lambda i: (ranked[i].usable, ranked[i].score - diversity * closest[i]),
            )
            chosen.append(pick)
            closest = [max(closest[i], rouge_l_f1(words[i], words[pick])) for i in range(len(ranked))]
        kept = [ranked[i] for i in sorted(chosen)]
    for rank, candidate in enumerate(kept, start=1):
        candidate.rank = rank
    return kept
