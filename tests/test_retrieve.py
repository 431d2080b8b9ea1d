"""Retrieval of few-shot examples: BM25 ranking, self-exclusion, sources (pairs, parquet, store)."""

from __future__ import annotations

import math
import unicodedata

import pytest
from shared_pairs import shared_pairs

from core.errors import TitlecraftError
from core.retrieve import B, K1, Retriever, tokenize
from core.store import Store

PAIRS = [
    ("Graph neural networks predict properties of molecules from their bonds.", "Molecular Graph Networks"),
    ("Reinforcement learning agents plan with learned world models.", "Planning With World Models"),
    ("Speech recognition with transformers in noisy rooms.", "Robust Speech Transformers"),
    ("Graph neural networks for traffic forecasting on road graphs.", "Traffic Graph Networks"),
]


def test_tokenize_keeps_lowercase_alphanumeric_words():
    assert tokenize("GNNs (2024): fast, O(n)-time!") == ["gnns", "2024", "fast", "o", "n", "time"]


def test_words_of_any_script_are_indexed():
    assert tokenize("Über Графовые_сети 图神经网络") == ["über", "графовые", "сети", "图", "神", "经", "网", "络"]
    retriever = Retriever.from_pairs([*PAIRS, ("Графовые нейронные сети для молекул.", "Графовые сети")])
    assert retriever.examples("графовые нейронные сети", 1) == [("Графовые нейронные сети для молекул.", "Графовые сети")]


def test_many_copies_of_the_query_do_not_hide_the_other_neighbours():
    query = PAIRS[0][0]
    copies = [(query + " " * i, f"Copy {i}") for i in range(12)]
    retriever = Retriever.from_pairs([*copies, PAIRS[3]])
    assert retriever.examples(query, 2) == [PAIRS[3]]


def test_the_most_similar_abstracts_come_first():
    retriever = Retriever.from_pairs(PAIRS)
    titles = [n.title for n in retriever.search("Graph neural networks that predict molecules", 2)]
    assert titles == ["Molecular Graph Networks", "Traffic Graph Networks"]
    assert retriever.examples("world models for planning agents", 1) == [PAIRS[1]]


def test_scores_follow_the_bm25_formula():
    retriever = Retriever.from_pairs(PAIRS)
    lengths = [len(tokenize(abstract)) for abstract, _ in PAIRS]
    mean_length = sum(lengths) / len(lengths)
    # "graph" occurs once in documents 0 and 3 ("graphs" is another word).
    idf_graph = math.log1p((4 - 2 + 0.5) / (2 + 0.5))
    expected_3 = idf_graph * 1 * (K1 + 1) / (1 + K1 * (1 - B + B * lengths[3] / mean_length))
    scores = retriever.scores("graph")
    assert scores[3] == pytest.approx(expected_3, rel=1e-6)
    assert scores[1] == scores[2] == 0
    assert retriever.scores("unknown words only").sum() == 0


def test_a_query_never_retrieves_its_own_abstract_nor_duplicates():
    pairs = [*PAIRS, (PAIRS[3][0].upper() + "  ", "A Re-posted Copy")]
    retriever = Retriever.from_pairs(pairs)
    titles = [n.title for n in retriever.search("graph neural networks for traffic forecasting on road graphs", 4)]
    assert "Traffic Graph Networks" not in titles and "A Re-posted Copy" not in titles
    assert titles[0] == "Molecular Graph Networks"
    again = Retriever.from_pairs([*PAIRS, (PAIRS[0][0], "Same Abstract, Other Title")])
    found = [n.abstract for n in again.search("graph networks molecules", 5)]
    assert len(found) == len(set(found))


def test_the_query_is_its_own_abstract_whatever_its_accents_or_ligatures_are_encoded_as():
    """Pasted from a PDF viewer, an abstract spells "é" as "e" + U+0301 and "fi" as "ﬁ": its own curated
    pair (stored composed) was retrieved as its example, and its accented words matched nothing."""
    own = ("Caf\u00e9 r\u00e9sum\u00e9s: efficient graph networks for na\u00efve planners.", "Its Own Title")
    retriever = Retriever.from_pairs([own, *PAIRS])
    pasted = unicodedata.normalize("NFD", own[0]).replace("fi", "\ufb01")
    assert "Its Own Title" not in [n.title for n in retriever.search(pasted, 3)]
    assert tokenize(pasted) == tokenize(own[0])


def test_real_test_pairs_are_never_their_own_example(tmp_path):
    rows = shared_pairs(30)
    path = tmp_path / "train.parquet"
    rows.to_parquet(path)
    retriever = Retriever.from_file(path)
    assert len(retriever) == 30
    for abstract, title in zip(rows["abstract"], rows["title"]):
        examples = retriever.examples(abstract, 4)
        assert len(examples) == 4
        assert all(example_abstract != abstract for example_abstract, _ in examples)
        # The same abstract with other spacing and case is still the query itself.
        assert title not in [t for _, t in retriever.examples("  " + abstract.lower(), 4)]


def test_small_or_empty_pools_return_what_they_have():
    assert Retriever.from_pairs([]).search("anything", 3) == []
    assert len(Retriever.from_pairs(PAIRS[:2]).search("graph learned world models molecules", 5)) == 2
    assert Retriever.from_pairs(PAIRS).search("graph", 0) == []


def test_curated_pairs_from_the_store(tmp_path):
    with Store(tmp_path / "titlecraft.db") as store:
        assert len(Retriever.from_store(store)) == 0
        for abstract, title in PAIRS[:2]:
            store.own_title(store.add_abstract(abstract), title)
        store.add_abstract(PAIRS[2][0])  # not curated: no title chosen yet
        retriever = Retriever.from_store(store)
    assert len(retriever) == 2
    assert retriever.examples("planning agents with world models", 1) == [PAIRS[1]]


def test_a_missing_pool_is_a_clear_error(tmp_path):
    with pytest.raises(TitlecraftError, match="no such retrieval pool"):
        Retriever.from_file(tmp_path / "train.parquet")


def test_a_pool_keeps_only_pairs_whose_abstract_and_title_are_text(tmp_path):
    """A pool whose title column held numbers crashed few-shot evaluation with an AttributeError, and a
    blank title was shown to the model as an example's answer."""
    import pandas as pd

    path = tmp_path / "pool.parquet"
    pd.DataFrame({"abstract": [a for a, _ in PAIRS], "title": [PAIRS[0][1], "   ", None, PAIRS[3][1]]}).to_parquet(path)
    assert sorted(Retriever.from_file(path).examples("graph neural networks", 4)) == sorted([PAIRS[0], PAIRS[3]])
    numbers = tmp_path / "numbers.parquet"
    pd.DataFrame({"abstract": [a for a, _ in PAIRS], "title": [1.0, 2.0, 3.0, 4.0]}).to_parquet(numbers)
    with pytest.raises(TitlecraftError, match="no pair with both an abstract and a title"):
        Retriever.from_file(numbers)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_pool_is_read_from_every_pair_file_format_that_eval_reads(tmp_path, suffix):
    """--data took CSV and JSON Lines, --retrieval-pool only parquet, calling a CSV "not a pair file"."""
    import pandas as pd

    frame = pd.DataFrame({"abstract": [a for a, _ in PAIRS], "title": [t for _, t in PAIRS]})
    path = tmp_path / f"pool{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_json(path, orient="records", lines=True)
    assert Retriever.from_file(path).examples("world models for planning agents", 1) == [PAIRS[1]]


def test_a_pool_storing_text_as_bytes_is_read_as_text(tmp_path):
    """eval --data and train read a parquet file written without the UTF-8 annotation (Hive, Impala, older
    Spark) as text, but --retrieval-pool took its bytes for no text and refused it as holding no pair."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"abstract": [a.encode() for a, _ in PAIRS], "title": [t.encode() for _, t in PAIRS]}), path)
    assert Retriever.from_file(path).examples("world models for planning agents", 1) == [PAIRS[1]]
