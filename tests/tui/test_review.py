"""The review screen on a store with more curated pairs than it shows: the cap, the count line, the
debounced search read off the UI thread, stale reads and failing reads. Real app, real SQLite file."""

from __future__ import annotations

import contextlib
import threading

import pytest
from textual.widgets import DataTable, Input, Static
from tui_helpers import review_loaded, settle

import tui.screens.review as review
from core.errors import TitlecraftError
from core.store import Store
from tui.screens.review import ReviewScreen

KEYS_HINT = "enter opens one · / searches · escape goes back"
# Abstract n is about graphs when n is even, proteins when odd; pair n is titled "<Topic> title n".
TOPICS = ["graphs", "proteins", "graphs", "proteins", "graphs"]


def abstract_text(n: int) -> str:
    return f"Abstract number {n}: we study {TOPICS[n]} with small models and report what we found."


@pytest.fixture
def five_pairs(db_path, monkeypatch) -> list[int]:
    """Five curated pairs in the store (accepted candidates), with the table capped at 3 rows."""
    monkeypatch.setattr(review, "MAX_ROWS", 3)
    ids = []
    with Store(db_path) as store, store.batch():
        for n, topic in enumerate(TOPICS):
            abstract_id = store.add_abstract(abstract_text(n))
            _, [candidate] = store.record_generation(
                abstract_id, "embedded", "m", {}, 0, "cpu", 0.1, 0.05, [{"text": f"{topic.title()} title {n}"}]
            )
            store.accept(candidate)
            ids.append(abstract_id)
    return ids


def titles(app) -> list[str]:
    table = app.screen.query_one(DataTable)
    return [table.get_row_at(row)[0].plain for row in range(table.row_count)]


def count_line(app) -> str:
    return app.screen.query_one("#review-count", Static).content.plain


async def open_review(app, pilot) -> None:
    await settle(app, pilot)
    await pilot.press("tab", "v")
    await review_loaded(app, pilot)
    assert isinstance(app.screen, ReviewScreen)


async def test_review_caps_the_table_and_a_search_narrows_it(make_app, five_pairs):
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await open_review(app, pilot)
        assert titles(app) == ["Graphs title 0", "Proteins title 1", "Graphs title 2"]
        assert count_line(app) == f"3 of 5 curated pairs shown (search to narrow them) · {KEYS_HINT}"

        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"protein")
        await review_loaded(app, pilot)
        assert titles(app) == ["Proteins title 1", "Proteins title 3"]
        assert count_line(app) == f"2 curated pairs · {KEYS_HINT}"

        await pilot.press(*["backspace"] * 7, *"title")  # matches all five again: capped
        await review_loaded(app, pilot)
        assert titles(app) == ["Graphs title 0", "Proteins title 1", "Graphs title 2"]
        assert count_line(app) == f"3 of 5 curated pairs shown (search to narrow them) · {KEYS_HINT}"

        await pilot.press(*" 4")
        await review_loaded(app, pilot)
        assert titles(app) == ["Graphs title 4"]
        assert count_line(app) == f"1 curated pair · {KEYS_HINT}"

        await pilot.press(*"2")  # "title 42": nothing
        await review_loaded(app, pilot)
        assert titles(app) == []
        assert count_line(app) == f"0 curated pairs · {KEYS_HINT}"

        await pilot.press(*["backspace"] * 8, *"proteins", "enter")
        await review_loaded(app, pilot)
        assert isinstance(app.focused, DataTable)
        await pilot.press("down", "enter")  # the second row: pair 3
        await settle(app, pilot)
        assert app.screen is app.screen_stack[0]
        assert app.editor.text == abstract_text(3)
        assert not app.errors()


async def test_review_searches_once_typing_pauses_not_per_keystroke(make_app, five_pairs, monkeypatch):
    # A debounce that never fires on its own: only enter in the search runs it, so no timing is involved.
    monkeypatch.setattr(review, "SEARCH_DEBOUNCE_SECONDS", 3600)
    searched = []
    real_search = Store.search_curated

    def recorded_search(store, text, limit=None):
        searched.append((text, limit))
        return real_search(store, text, limit=limit)

    monkeypatch.setattr(Store, "search_curated", recorded_search)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await open_review(app, pilot)
        await pilot.press("slash", *"proteins")
        await settle(app, pilot)
        assert searched == []
        assert app.screen.loading
        assert count_line(app) == "Searching…"
        assert len(titles(app)) == 3  # the previous rows stay until the search has run

        await pilot.press("enter")
        await review_loaded(app, pilot)
        assert searched == [("proteins", 3)]
        assert titles(app) == ["Proteins title 1", "Proteins title 3"]

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        assert app.editor.text == ""  # escape chose nothing


async def test_a_superseded_search_never_reaches_the_table(make_app, five_pairs, monkeypatch):
    monkeypatch.setattr(review, "SEARCH_DEBOUNCE_SECONDS", 3600)
    armed, started, release = threading.Event(), threading.Event(), threading.Event()
    real_snapshot = Store.snapshot

    @contextlib.contextmanager
    def held_once(store):
        """Once armed, the next read waits for ``release`` before it begins (and before it takes the
        store's lock, so later reads are not queued behind it)."""
        if armed.is_set() and not started.is_set():
            started.set()
            release.wait(timeout=30)
        with real_snapshot(store):
            yield store

    monkeypatch.setattr(Store, "snapshot", held_once)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await open_review(app, pilot)
        armed.set()
        await pilot.press("slash", *"graphs", "enter")
        assert started.wait(timeout=30)  # the "graphs" read is running, held
        await pilot.press("slash", *"proteins", "enter")  # focusing the search selects its text: replaced
        for _ in range(400):  # the "proteins" read finishes while "graphs" is still held
            await pilot.pause(0.05)
            if not app.screen.loading:
                break
        assert titles(app) == ["Proteins title 1", "Proteins title 3"]
        release.set()
        await settle(app, pilot)  # the "graphs" read has finished by now, and its result was dropped
        assert titles(app) == ["Proteins title 1", "Proteins title 3"]
        assert count_line(app) == f"2 curated pairs · {KEYS_HINT}"


async def test_a_failing_read_is_told_and_leaves_the_table_empty(make_app, five_pairs, monkeypatch):
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(app, pilot)
        reader = app.reader or app.store
        real_search = reader.search_curated

        def broken_listing(*args, **kwargs):
            raise TitlecraftError("the database is on fire")

        def broken_search(*args, **kwargs):
            raise RuntimeError("disk gone")

        monkeypatch.setattr(reader, "curated_pairs", broken_listing)
        monkeypatch.setattr(reader, "search_curated", broken_search)
        await pilot.press("tab", "v")
        await review_loaded(app, pilot)
        assert isinstance(app.screen, ReviewScreen)
        assert app.errors() == ["Reading the store failed: the database is on fire"]
        assert titles(app) == []
        assert count_line(app) == f"Reading the store failed, so no pairs are shown · {KEYS_HINT}"

        monkeypatch.setattr(reader, "search_curated", real_search)  # the store works again
        await pilot.press("slash", *"proteins", "enter")
        await review_loaded(app, pilot)
        assert titles(app) == ["Proteins title 1", "Proteins title 3"]

        monkeypatch.setattr(reader, "search_curated", broken_search)
        await pilot.press("slash", *"graphs", "enter")  # focusing the search selects its text: replaced
        await review_loaded(app, pilot)
        assert app.errors()[-1] == "Reading the store failed: RuntimeError: disk gone"
        assert titles(app) == []
        assert isinstance(app.screen, ReviewScreen)  # no crash: the screen is still up


async def test_enter_on_a_list_that_a_search_is_replacing_opens_nothing(make_app, five_pairs, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real_search = Store.search_curated

    def slow_search(store, text, limit=None):
        started.set()
        release.wait(timeout=30)
        return real_search(store, text, limit=limit)

    monkeypatch.setattr(Store, "search_curated", slow_search)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await open_review(app, pilot)
        await pilot.press("slash", *"proteins", "enter")
        assert started.wait(timeout=30)
        await pilot.press("enter")  # a quick second enter, while the table still lists "Graphs title 0" first
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        assert app.editor.text == ""
        release.set()
        await review_loaded(app, pilot)
        assert titles(app) == ["Proteins title 1", "Proteins title 3"]
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.editor.text == abstract_text(1)
