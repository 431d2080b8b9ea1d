"""Few-shot examples by retrieval: the (abstract, title) pairs whose abstracts are most like a new one.

A small Okapi BM25 index over abstracts, built with numpy (no scikit-learn): posting lists sorted by
term, each posting carrying its precomputed BM25 term weight, so a query is one gather and one
``bincount``. Indexing the 145k training abstracts takes seconds; a query takes milliseconds.

A query never returns its own abstract (compared as ``text_key``: lowercase alphanumerics, after Unicode
compatibility normalisation), so a test pair cannot be its own example and a curated abstract is not
shown to the model with its answer.
"""

from __future__ import annotations

import os
import re
import unicodedata
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.dataset import text_key
from core.errors import TitlecraftError
from core.paths import PARQUET_SUFFIXES, refuse_folder_as_data_file
from core.prompts import Example

# Standard BM25 constants: term-frequency saturation and document-length normalisation.
K1 = 1.2
B = 0.75
# Extra neighbours fetched beyond k, so that excluded self-matches and duplicates can be skipped.
SPARE_RESULTS = 8
# Words of any script (Cyrillic, Greek, accented Latin...); Chinese, Japanese and Korean characters
# one by one, as those scripts do not separate words.
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def _compatible(text: str) -> str:
    """NFKC form: an accent typed as a combining mark (as PDF viewers copy it) or a ligature such as "ﬁ"
    spells the same word as its composed form, which the store and the arXiv data use."""
    return unicodedata.normalize("NFKC", text)


def tokenize(text: str) -> list[str]:
    return _WORD.findall(_compatible(text).lower())


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _identity(abstract: str) -> str:
    return text_key(_compatible(abstract))


@dataclass(frozen=True)
class Neighbour:
    abstract: str
    title: str
    score: float


def pairs_from_file(path: str | os.PathLike) -> list[Example]:
    """(abstract, title) pairs of a pair file such as ``data/prepared/train.parquet``: the formats
    ``eval --data`` reads, a parquet file's two columns read alone (the training split is large)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from core.dataset import read_pairs, text_from_bytes

    path = Path(path)
    refuse_folder_as_data_file(path)
    if not path.is_file():
        raise TitlecraftError(f"{path}: no such retrieval pool; run `titlecraft prepare` first")
    if path.suffix.lower() not in PARQUET_SUFFIXES:
        frame = read_pairs(path)
        return list(zip(frame["abstract"], frame["title"]))
    try:
        table = pq.read_table(path, columns=["abstract", "title"])
    except (pa.ArrowException, OSError) as error:
        raise TitlecraftError(f"{path} could not be read as a pair file: {error}") from None
    table = text_from_bytes(path, table)  # strings stored as bytes (Hive, Impala, older Spark), as --data reads them
    return list(zip(table.column("abstract").to_pylist(), table.column("title").to_pylist()))


def pairs_from_store(store) -> list[Example]:
    """The store's curated pairs: each abstract with its accepted, edited or own title."""
    return [(pair.abstract, pair.title) for pair in store.curated_pairs()]


class Retriever:
    """BM25 over the abstracts of a fixed set of pairs."""

    def __init__(self, pairs: Iterable[Example]):
        # A pair file's cells may be null, blank or not text at all (a column of numbers).
        pairs = [(abstract, title) for abstract, title in pairs if _is_text(abstract) and _is_text(title)]
        self.abstracts = [abstract for abstract, _ in pairs]
        self.titles = [title for _, title in pairs]
        self._vocabulary: dict[str, int] = {}
        self._build_index()

    @classmethod
    def from_pairs(cls, pairs: Iterable[Example]) -> Retriever:
        return cls(pairs)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Retriever:
        """A pool from a pair file, which must hold at least one pair to retrieve."""
        retriever = cls(pairs_from_file(path))
        if not len(retriever):
            raise TitlecraftError(f"{path} holds no pair with both an abstract and a title to retrieve examples from")
        return retriever

    @classmethod
    def from_store(cls, store) -> Retriever:
        return cls(pairs_from_store(store))

    def __len__(self) -> int:
        return len(self.abstracts)

    def _build_index(self) -> None:
        vocabulary = self._vocabulary
        term_ids = array("i")  # 4 bytes per word occurrence: a list would hold 8-byte pointers
        lengths = np.zeros(len(self.abstracts), dtype=np.int64)
        for position, abstract in enumerate(self.abstracts):
            words = tokenize(abstract)
            lengths[position] = len(words)
            term_ids.extend(vocabulary.setdefault(word, len(vocabulary)) for word in words)
        documents = len(self.abstracts)
        stride = max(documents, 1)
        # One key per (term, document) occurrence; sorting groups postings by term, then document.
        keys = np.frombuffer(term_ids, dtype=np.int32).astype(np.int64) * stride
        keys += np.repeat(np.arange(documents), lengths)
        unique_keys, frequencies = np.unique(keys, return_counts=True)
        self._posting_documents = (unique_keys % stride).astype(np.int32)
        self._posting_starts = np.searchsorted(unique_keys // stride, np.arange(len(vocabulary) + 1))
        document_frequency = np.diff(self._posting_starts)
        self._idf = np.log1p((documents - document_frequency + 0.5) / (document_frequency + 0.5))
        mean_length = lengths.mean() if documents else 1.0
        norms = K1 * (1 - B + B * lengths / max(mean_length, 1.0))
        self._posting_weights = (frequencies * (K1 + 1) / (frequencies + norms[self._posting_documents])).astype(
            np.float32
        )

    def scores(self, abstract: str) -> np.ndarray:
        """BM25 score of every indexed abstract for ``abstract`` (each distinct query word counts once)."""
        terms = sorted({self._vocabulary[word] for word in tokenize(abstract) if word in self._vocabulary})
        if not terms or not len(self):
            return np.zeros(len(self), dtype=np.float64)
        slices = [slice(self._posting_starts[term], self._posting_starts[term + 1]) for term in terms]
        documents = np.concatenate([self._posting_documents[part] for part in slices])
        weights = np.concatenate([self._posting_weights[part] * self._idf[term] for term, part in zip(terms, slices)])
        return np.bincount(documents, weights=weights, minlength=len(self))

    def search(self, abstract: str, k: int) -> list[Neighbour]:
        """The k most similar pairs, best first, never the query abstract itself nor a repeated abstract."""
        if k <= 0 or not len(self):
            return []
        scores = self.scores(abstract)
        found = self._best(abstract, scores, min(len(self), k + SPARE_RESULTS), k)
        if len(found) < k:  # the spare results did not cover the skipped repeats: rank them all
            found = self._best(abstract, scores, len(self), k)
        return found

    def _best(self, abstract: str, scores: np.ndarray, wanted: int, k: int) -> list[Neighbour]:
        """Up to k neighbours among the ``wanted`` best-scoring pairs, skipping the query and repeats."""
        top = np.argpartition(-scores, wanted - 1)[:wanted]
        top = top[np.argsort(-scores[top], kind="stable")]
        seen = {_identity(abstract)}
        found: list[Neighbour] = []
        for position in top:
            if scores[position] <= 0:
                break
            key = _identity(self.abstracts[position])
            if key in seen:
                continue
            seen.add(key)
            found.append(Neighbour(self.abstracts[position], self.titles[position], float(scores[position])))
            if len(found) == k:
                break
        return found

    def examples(self, abstract: str, k: int) -> list[Example]:
        """Few-shot examples for the prompt, most similar first (the order build_prompt keeps them in)."""
        return [(neighbour.abstract, neighbour.title) for neighbour in self.search(abstract, k)]

