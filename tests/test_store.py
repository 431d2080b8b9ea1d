"""The store's API on real database files: decisions, undo, derived views, queue, settings, migration."""

from __future__ import annotations

import hashlib
import sqlite3
import unicodedata

import pytest
import sqlite_utils

from core.cli import main
from core.errors import StoreUnavailable, TitlecraftError
from core.prompts import normalise_whitespace
from core.store import SCHEMA_VERSION, Store, default_db_path, migrate, schema_version

ABSTRACT = "We study   small language models\nthat title papers."


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "titlecraft.db") as opened:
        yield opened


def generate(store: Store, abstract_id: int, texts: list[str], model_spec: str = "smollm2") -> list[int]:
    _, candidate_ids = store.record_generation(
        abstract_id,
        model_spec=model_spec,
        model_id=f"{model_spec}-id",
        params={"temperature": 0.8, "top_p": 0.95},
        seed=7,
        device="cpu",
        seconds=1.5,
        first_token_seconds=0.2,
        candidates=[
            {"text": text, "score": -float(rank), "flags": ["short"] if rank else []} for rank, text in enumerate(texts)
        ],
    )
    return candidate_ids


def test_abstracts_are_unique_by_whitespace_normalised_content(store):
    first = store.add_abstract(ABSTRACT, source="pasted", arxiv_id="2401.00001", reference_title="Real Title")
    again = store.add_abstract("  We study small language models that title papers.  ", source="other")
    assert again == first
    stored = store.abstract(first)
    assert stored.text == "We study small language models that title papers."
    assert (stored.source, stored.arxiv_id, stored.reference_title) == ("pasted", "2401.00001", "Real Title")
    assert store.find_abstract("We study small  language models that title papers.") == first
    assert store.find_abstract("something else") is None
    assert store.counts()["abstracts"] == 1


def test_an_abstract_with_decomposed_accents_is_the_same_abstract(store):
    """Copied from a PDF viewer, "é" is often "e" plus a combining accent: the same abstract was stored twice."""
    composed = "Caf\u00e9 r\u00e9sum\u00e9s: na\u00efve Bayes for graphs."
    decomposed = unicodedata.normalize("NFD", composed)
    first = store.add_abstract(decomposed)
    assert store.add_abstract(composed) == first
    assert store.find_abstract(composed) == store.find_abstract(decomposed) == first
    assert store.abstract(first).text == composed
    assert store.counts()["abstracts"] == 1


def test_an_abstract_stored_decomposed_by_an_earlier_version_is_still_found(store):
    decomposed = unicodedata.normalize("NFD", "Caf\u00e9 r\u00e9sum\u00e9s for graphs.")
    store.db.execute(
        "INSERT INTO abstracts (id, content_hash, text, source, added_at) VALUES (7, ?, ?, 'pasted', '2025-01-01')",
        [hashlib.sha256(decomposed.encode("utf-8")).hexdigest(), decomposed],
    )
    assert store.find_abstract(decomposed) == 7
    assert store.add_abstract(decomposed) == 7


def test_empty_abstract_and_unknown_ids_are_user_errors(store):
    with pytest.raises(TitlecraftError, match="empty"):
        store.add_abstract(" \n\t ")
    with pytest.raises(TitlecraftError, match="no abstract 42"):
        store.own_title(42, "A title")
    with pytest.raises(TitlecraftError, match="no candidate 42"):
        store.accept(42)
    with pytest.raises(TitlecraftError, match="no generation 42"):
        store.append_candidates(42, [{"text": "x"}])


def test_generation_keeps_provenance_and_candidates_in_rank_order(store):
    abstract_id = store.add_abstract(ABSTRACT)
    generation_id, candidate_ids = store.record_generation(
        abstract_id, "hub:org/model", "org/model@abc", {"temperature": 0.7, "n": 3}, 11, "cuda:0", 2.5, 0.3,
        [{"text": "First", "score": -0.5, "flags": ["too-short"]}, {"text": "Second"}],
    )
    more = store.append_candidates(generation_id, [{"text": "Third", "score": -1.5}])
    candidates = store.candidates(abstract_id)
    assert [c.id for c in candidates] == [*candidate_ids, *more]
    assert [(c.rank, c.text, c.score, c.flags) for c in candidates] == [
        (1, "First", -0.5, ("too-short",)),
        (2, "Second", None, ()),
        (3, "Third", -1.5, ()),
    ]
    store.accept(more[0])
    [pair] = store.curated_pairs()
    assert (pair.model_spec, pair.model_id, pair.params, pair.seed, pair.device) == (
        "hub:org/model", "org/model@abc", {"temperature": 0.7, "n": 3}, 11, "cuda:0",
    )
    assert (pair.candidate_rank, pair.candidate_score, pair.generation_id) == (3, -1.5, generation_id)
    [generation] = store.generations(abstract_id)
    assert (generation.id, generation.model_spec, generation.params, generation.seconds) == (
        generation_id, "hub:org/model", {"temperature": 0.7, "n": 3}, 2.5,
    )


def test_curated_view_follows_the_latest_live_decision_and_undo(store):
    abstract_id = store.add_abstract(ABSTRACT)
    first, second, third = generate(store, abstract_id, ["Alpha", "Beta", "Gamma"])
    assert store.curated_title(abstract_id) is None
    store.accept(first)
    assert store.curated_title(abstract_id) == "Alpha"
    store.edit(second, "Beta, improved")
    assert store.curated_title(abstract_id) == "Beta, improved"
    store.reject(third, reason="vague")
    assert store.curated_title(abstract_id) == "Beta, improved"
    store.undo(abstract_id)  # the rejection
    store.undo(abstract_id)  # the edit
    assert store.curated_title(abstract_id) == "Alpha"
    own = store.own_title(abstract_id, "My Own Title")
    assert store.curated_title(abstract_id) == "My Own Title"
    [pair] = store.curated_pairs()
    assert (pair.action, pair.decision_id, pair.candidate_id, pair.model_spec) == ("own_title", own, None, None)
    store.undo(abstract_id)
    store.undo(abstract_id)
    assert store.curated_title(abstract_id) is None
    with pytest.raises(TitlecraftError, match="no decision to undo"):
        store.undo(abstract_id)


def test_rejecting_the_curated_candidate_drops_its_title_and_falls_back(store):
    abstract_id = store.add_abstract(ABSTRACT)
    store.enqueue(abstract_id)
    first, second = generate(store, abstract_id, ["Alpha", "Beta"])
    store.accept(first)
    store.edit(second, "Beta, improved")
    store.reject(second, reason="changed my mind")
    assert store.curated_title(abstract_id) == "Alpha"  # the earlier curation still stands
    store.reject(first)
    assert store.curated_title(abstract_id) is None
    assert store.curated_pairs() == []
    assert store.counts()["curated"] == 0
    assert store.next_in_queue() == abstract_id
    store.undo(abstract_id)  # the rejection of Alpha
    assert store.curated_title(abstract_id) == "Alpha"
    store.accept(second)  # a verdict after the rejection counts again
    assert store.curated_title(abstract_id) == "Beta"
    assert store.next_in_queue() is None


def test_history_is_append_only_and_marks_undone_decisions(store):
    abstract_id = store.add_abstract(ABSTRACT)
    first, second = generate(store, abstract_id, ["Alpha", "Beta"])
    accepted = store.accept(first)
    rejected = store.reject(second, reason="too long")
    undo = store.undo(abstract_id)
    history = store.history(abstract_id)
    assert [(d.id, d.action, d.title, d.reason, d.undoes, d.undone) for d in history] == [
        (accepted, "accept", "Alpha", None, None, False),
        (rejected, "reject", "Beta", "too long", None, True),
        (undo, "undo", None, None, rejected, False),
    ]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("UPDATE decisions SET action = 'accept' WHERE id = ?", [rejected])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("DELETE FROM decisions")


def test_rejected_candidates_and_model_stats(store):
    one = store.add_abstract("First abstract about graphs.")
    two = store.add_abstract("Second abstract about proteins.")
    a1, a2, a3 = generate(store, one, ["G1", "G2", "G3"], model_spec="base")
    b1, b2 = generate(store, two, ["P1", "P2"], model_spec="tuned")
    store.accept(a1)
    store.reject(a2, reason="generic")
    store.reject(a3)
    store.accept(a3)  # a later verdict on the same candidate wins
    store.edit(b1, "P1 edited")
    store.reject(b2)
    assert [(r.abstract_id, r.text, r.reason) for r in store.rejected_candidates()] == [
        (one, "G2", "generic"),
        (two, "P2", None),
    ]
    assert [r.text for r in store.rejected_candidates(two)] == ["P2"]
    stats = {s.model_spec: s for s in store.model_stats()}
    base = stats["base"]
    assert (base.candidates, base.decided, base.accepted, base.rejected) == (3, 3, 2, 1)
    assert stats["base"].acceptance_rate == pytest.approx(2 / 3)
    assert stats["tuned"].edit_rate == 0.5
    counts = store.counts()
    assert counts["decisions"] == {"accept": 2, "edit": 1, "reject": 3, "own_title": 0, "undo": 0}
    assert (counts["curated"], counts["rejected"], counts["candidates"], counts["generations"]) == (2, 2, 5, 2)


def test_curated_pairs_filter_by_model_and_date_and_search(store):
    one = store.add_abstract("Graph neural networks for molecules.")
    two = store.add_abstract("Protein folding with transformers.")
    [g] = generate(store, one, ["Molecular GNNs"], model_spec="base")
    store.accept(g)
    store.own_title(two, "Folding 100% of_proteins")
    assert [p.title for p in store.curated_pairs(model="base")] == ["Molecular GNNs"]
    assert len(store.curated_pairs(since="2000-01-01")) == 2
    assert store.curated_pairs(since="2999-01-01") == []
    assert [p.title for p in store.search_curated("molecul")] == ["Molecular GNNs"]
    assert [p.title for p in store.search_curated("100% of_")] == ["Folding 100% of_proteins"]
    assert store.search_curated("_x%") == []


def test_search_ignores_case_and_accent_encoding_in_every_script(store):
    """SQLite's LIKE folds ASCII letters only: "über" found no "Über", "графовые" no "Графовые", and an
    "é" typed as "e" plus a combining accent (as PDF viewers copy it) no composed "é"."""
    store.own_title(store.add_abstract("Über-fast sparse graphs."), "Über-Fast Sparse Graphs")
    store.own_title(store.add_abstract("Графовые нейронные сети для молекул."), "Графовые сети")
    store.own_title(store.add_abstract("A caf\u00e9 of transformers for STRASSE maps."), "Caf\u00e9 Transformers")
    assert [p.title for p in store.search_curated("über")] == ["Über-Fast Sparse Graphs"]
    assert [p.title for p in store.search_curated("ГРАФОВЫЕ")] == ["Графовые сети"]
    assert [p.title for p in store.search_curated("cafe\u0301")] == ["Caf\u00e9 Transformers"]
    assert [p.title for p in store.search_curated("straße")] == ["Caf\u00e9 Transformers"]
    assert store.count_curated("über") == store.count_curated("ÜBER") == 1


def test_curated_pairs_and_search_take_a_limit_and_count_what_matches(store):
    with store.batch():
        ids = [store.add_abstract(f"Abstract {n} about {'graphs' if n % 2 else 'proteins'}.") for n in range(5)]
        for n, abstract_id in enumerate(ids):
            [candidate] = generate(store, abstract_id, [f"Title {n}"], model_spec="base" if n < 3 else "tuned")
            store.accept(candidate)
    store.own_title(ids[4], "Own 100% title")  # re-titled: still one pair for that abstract
    assert [p.abstract_id for p in store.curated_pairs(limit=3)] == ids[:3]
    assert [p.abstract_id for p in store.curated_pairs(model="tuned", limit=1)] == [ids[3]]
    assert store.curated_pairs(limit=0) == []
    assert len(store.curated_pairs(limit=99)) == 5
    assert store.curated_pairs(limit=None) == store.curated_pairs()
    assert [p.title for p in store.search_curated("proteins", limit=2)] == ["Title 0", "Title 2"]
    assert [p.title for p in store.search_curated("proteins")] == ["Title 0", "Title 2", "Own 100% title"]
    assert store.count_curated() == 5
    assert store.count_curated("") == 5
    assert store.count_curated("proteins") == 3
    assert store.count_curated("PROTEINS") == 3
    assert store.count_curated("100%") == 1
    assert store.count_curated("_0") == 0  # LIKE wildcards in the text are matched literally
    assert store.count_curated("no such words") == 0
    with pytest.raises(ValueError, match="limit"):
        store.curated_pairs(limit=-1)
    with pytest.raises(ValueError, match="limit"):
        store.search_curated("graphs", limit="3")


def test_queue_in_import_order_with_curated_flags(store):
    ids = [store.add_abstract(f"Abstract number {n}.") for n in range(3)]
    for abstract_id in reversed(ids):
        assert store.enqueue(abstract_id)
    assert not store.enqueue(ids[0])
    store.own_title(ids[1], "Done")
    assert [(e.position, e.abstract_id, e.curated) for e in store.queue()] == [
        (1, ids[2], False),
        (2, ids[1], True),
        (3, ids[0], False),
    ]
    assert store.queue_position(ids[0]) == 3
    assert store.queue_position(store.add_abstract("Never queued.")) is None
    assert store.next_in_queue() == ids[2]
    assert store.next_in_queue(after=ids[2]) == ids[0]
    assert store.next_in_queue(after=ids[0]) is None
    assert store.previous_in_queue(before=ids[0]) == ids[1]  # titled or not
    assert store.previous_in_queue(before=ids[2]) is None
    assert store.previous_in_queue() == ids[0]  # from outside the queue: its last
    assert store.queue_length() == 3


def test_settings_round_trip_as_json(store, tmp_path):
    assert store.get_setting("n", 4) == 4
    store.set_setting("n", 6)
    store.set_setting("sampling", {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 32})
    store.set_setting("n", 8)
    store.close()
    with Store(tmp_path / "titlecraft.db") as reopened:
        assert reopened.get_setting("n") == 8
        assert reopened.get_setting("sampling") == {"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 32}


AWKWARD_TEXTS = [
    "Robert'); DROP TABLE decisions;-- \"quoted\"",
    "[bold red]Not markup[/bold red] [link=https://x]y[/link] \\[escaped]",
    "Emoji 🧪🔬 and a ZWJ family 👩‍👩‍👧 and é vs é",
    "RTL: نموذج لغوي صغير ‏עברית‎ \u202eoverride\u202c",
    "Control\x00chars\x01\x07\x1b[31m\ttab\r\nCRLF\x7f\u2028end",
    "  leading and trailing spaces  ",
]


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_awkward_text_round_trips_exactly(tmp_path, text):
    path = tmp_path / "titlecraft.db"
    with Store(path) as store:
        abstract_id = store.add_abstract(f"Abstract with {text}", source=text, reference_title=text, arxiv_id=text)
        generation_id, [accepted, edited, rejected] = store.record_generation(
            abstract_id, text, text, {"prompt": text}, 1, text, 0.1, 0.01,
            [{"text": text, "flags": [text]}, {"text": "B"}, {"text": text}],
        )
        store.accept(accepted)
        store.edit(edited, text)
        store.reject(rejected, reason=text)
        other = store.add_abstract(f"Another abstract {text}")
        store.own_title(other, text)
        store.set_setting(text, text)
    with Store(path) as store:
        stored = store.abstract(abstract_id)
        assert (stored.source, stored.reference_title, stored.arxiv_id) == (text, text, text)
        assert stored.text == normalise_whitespace(f"Abstract with {text}")
        assert store.candidates(abstract_id)[0].text == text
        assert store.candidates(abstract_id)[0].flags == (text,)
        assert [p.title for p in store.curated_pairs()] == [text, text]
        [pair] = store.curated_pairs(model=text)
        assert (pair.model_id, pair.device, pair.params) == (text, text, {"prompt": text})
        assert [(r.text, r.reason) for r in store.rejected_candidates()] == [(text, text)]
        assert [d.title for d in store.history(abstract_id)] == [text, text, text]
        assert store.get_setting(text) == text


def test_default_path_is_data_folder_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TITLECRAFT_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_db_path().as_posix() == "data/titlecraft.db"
    with Store() as store:
        assert store.path == default_db_path()
    assert (tmp_path / "data" / "titlecraft.db").is_file()
    monkeypatch.setenv("TITLECRAFT_DB", str(tmp_path / "elsewhere.db"))
    assert default_db_path() == tmp_path / "elsewhere.db"


def test_a_tilde_in_the_environment_or_db_path_means_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TITLECRAFT_DB", "~/from-env.db")
    assert default_db_path() == tmp_path / "from-env.db"
    with Store() as store:
        assert store.path == tmp_path / "from-env.db"
    with Store("~/given.db") as store:
        assert store.path == tmp_path / "given.db"
    assert main(["stats", "--db", "~/given.db"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["from-env.db", "given.db"]


def test_database_is_wal_with_foreign_keys_and_durable_commits(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert schema_version(store.db) == SCHEMA_VERSION


def _insert_old_candidate(old) -> None:
    """One abstract with one generated candidate ('Old Title'), as an older schema stores them."""
    old.execute(
        "INSERT INTO abstracts (id, content_hash, text, source, added_at) "
        "VALUES (1, 'h', 'Old abstract.', 'pasted', '2025-01-01')"
    )
    old.execute(
        "INSERT INTO generations (id, abstract_id, model_spec, model_id, params, created_at) "
        "VALUES (1, 1, 'base', 'base-id', '{}', '2025-01-01')"
    )
    old.execute("INSERT INTO candidates (id, generation_id, rank, text, flags) VALUES (1, 1, 1, 'Old Title', '[]')")


def test_version_1_database_migrates_forward_keeping_its_data(tmp_path):
    path = tmp_path / "v1.db"
    old = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    migrate(old, target=1)
    assert schema_version(old) == 1 and "settings" not in old.table_names()
    _insert_old_candidate(old)
    old.execute(
        "INSERT INTO decisions (abstract_id, candidate_id, action, decided_at) VALUES (1, 1, 'accept', '2025-01-02')"
    )
    old.close()
    path.chmod(0o444)
    try:  # read as it is, an old schema would give wrong answers; upgraded, the file would change
        with pytest.raises(StoreUnavailable, match="made by an older titlecraft and is read-only"):
            Store(path, create=False, reads_only=True)
    finally:
        path.chmod(0o644)

    with Store(path) as store:
        assert schema_version(store.db) == SCHEMA_VERSION == 3
        pairs = [(p.abstract, p.title, p.model_spec) for p in store.curated_pairs()]
        assert pairs == [("Old abstract.", "Old Title", "base")]
        indexes = {index.name for index in store.db.table("decisions").indexes}
        assert {"decisions_by_abstract", "decisions_by_candidate"} <= indexes
        store.set_setting("n", 5)
        assert store.get_setting("n") == 5
        store.edit(1, "Newer Title")
        assert store.curated_title(1) == "Newer Title"


def test_version_2_database_migrates_to_a_curated_view_that_honours_later_rejections(tmp_path):
    path = tmp_path / "v2.db"
    old = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    migrate(old, target=2)
    _insert_old_candidate(old)
    for action in ("accept", "reject"):
        old.execute(
            "INSERT INTO decisions (abstract_id, candidate_id, action, decided_at) VALUES (1, 1, ?, '2025-01-02')",
            [action],
        )
    assert [row["title"] for row in old.query("SELECT title FROM curated_pairs")] == ["Old Title"]
    old.close()

    with Store(path) as store:
        assert schema_version(store.db) == SCHEMA_VERSION
        assert store.curated_pairs() == []
        assert [r.text for r in store.rejected_candidates()] == ["Old Title"]


def test_database_from_a_newer_titlecraft_is_refused_untouched(tmp_path):
    path = tmp_path / "future.db"
    Store(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    with pytest.raises(TitlecraftError, match=f"{path}.*schema version 99"):
        Store(path)
    assert path.read_bytes() == before
