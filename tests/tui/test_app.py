"""The curation app driven through its keys with App.run_test(), on a tiny checkpoint and a temp store."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import unicodedata

from textual import events
from textual.widgets import DataTable, Input, Static
from tui_helpers import ABSTRACT, ready, review_loaded, scripted_generate, settle

import core.models
from core.errors import TitlecraftError
from core.store import Store
from tui.screens.export import ExportScreen
from tui.screens.prompt import TextPrompt
from tui.curation import views_from_store
from tui.screens.review import ReviewScreen
from tui.widgets.candidates import ACCEPTED, EDITED, OWN, REJECTED, CandidateRow, CandidateView, EditInput
from tui.widgets.status_bar import StatusBar

FAST = {"n": 4, "max_new_tokens": 8, "seed": 7}


async def type_into_prompt(pilot, text: str) -> None:
    """Type into the open one-line prompt and press enter."""
    await pilot.pause()
    assert isinstance(pilot.app.screen, TextPrompt)
    await pilot.press(*text, "enter")
    await pilot.pause()


def live_decisions(db_path) -> list[tuple]:
    with Store(db_path) as store:
        abstract_id = store.find_abstract(ABSTRACT)
        return [
            (d.action, d.title, d.reason) for d in store.history(abstract_id) if d.action != "undo" and not d.undone
        ]


async def test_paste_generate_decide_undo_and_export(make_app, db_path, tmp_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        assert app.focused is app.editor.text_area
        app.sampling.update(FAST)
        await pilot.press("ctrl+g")
        assert app.focused is app.candidates
        await settle(app, pilot)

        views = app.candidates.views()
        assert len(views) >= 3
        assert all(view.finished and view.candidate_id is not None for view in views)
        first, second, third = views[0].text, views[1].text, views[2].text

        await pilot.press("a", "down", "e")
        await pilot.pause()
        await pilot.press("ctrl+u", *"Sparse titles, curated", "enter")
        await pilot.press("down", "r")
        await type_into_prompt(pilot, "too vague")
        await pilot.press("t")
        await type_into_prompt(pilot, "My own title")
        await settle(app, pilot)
        assert [view.decision for view in app.candidates.views()[:3]] == [ACCEPTED, EDITED, REJECTED]
        assert app.candidates.views()[-1].decision == OWN

        await pilot.press("u")
        await settle(app, pilot)
        assert all(view.decision != OWN for view in app.candidates.views())
        assert not any(view.pending for view in app.candidates.views())
        assert live_decisions(db_path) == [
            ("accept", first, None),
            ("edit", "Sparse titles, curated", None),
            ("reject", third, "too vague"),
        ]
        assert second != "Sparse titles, curated"
        status = app.query_one(StatusBar).info
        assert (status.accepted, status.edited, status.rejected) == (1, 1, 1)

        out = tmp_path / "exports" / "pairs.jsonl"
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        await submit_export_path(app, pilot, str(out))
        await settle(app, pilot)
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [record["completion"] for record in records] == [" Sparse titles, curated"]
        assert any(message.startswith("Exported 1 pair") for _, message in app.told)
        assert not app.errors()


async def test_escape_cancels_mid_stream_and_keys_keep_working(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.sampling.update(n=3, max_new_tokens=60, seed=3)
        started, released = threading.Event(), threading.Event()
        real_generate = app.generator.generate

        def held_generate(abstract, params, on_event=None, **options):
            """The real generator, held at its first token until the test has pressed its keys."""

            def held_event(event):
                started.set()
                released.wait(10)
                on_event(event)

            return real_generate(abstract, params, on_event=held_event, **options)

        app.generator.generate = held_generate
        await pilot.press("ctrl+g")
        assert started.wait(10)
        await pilot.press("down")
        assert app.candidates.cursor == 1
        assert app.running is not None
        await pilot.press("escape")
        released.set()
        await settle(app, pilot)
        assert app.running is None
        assert app.last_run.cancelled
        assert any("stopped" in message for _, message in app.told)
        assert all(view.finished for view in app.candidates.views())


async def test_queue_navigation_skips_titled_abstracts_forward_only(make_app, db_path):
    abstracts = [f"Queued abstract number {i} about graph neural networks and sparse attention." for i in range(4)]
    with Store(db_path) as store:
        ids = [store.add_abstract(text, source="import") for text in abstracts]
        for abstract_id in ids:
            store.enqueue(abstract_id)
        store.own_title(ids[1], "Titled in an earlier session")
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "n")
        assert app.editor.text == abstracts[0]
        await pilot.press("n")
        assert app.editor.text == abstracts[2]  # abstract 1 already has a title
        await settle(app, pilot)
        assert "queue 3/4" in app.query_one(StatusBar).text()
        await pilot.press("n", "n")
        assert app.editor.text == abstracts[3]
        assert any("Every queued abstract after this one has a title" in message for _, message in app.told)
        await pilot.press("p", "p")
        assert app.editor.text == abstracts[1]  # p reaches titled abstracts too
        await settle(app, pilot)
        assert app.query_one(StatusBar).info.queue_position == 1
        await pilot.press("p", "p")
        assert app.editor.text == abstracts[0]
        assert any("first abstract in the queue" in message for _, message in app.told)


async def test_a_typed_abstract_is_not_dropped_by_a_single_n_or_quit(make_app, db_path):
    """n (p, a review pick) replaced an abstract typed but not yet generated for, with no word; it is only
    saved with its first candidates."""
    queued = "A queued abstract about sparse attention in graph neural networks."
    typed = "My own abstract, typed in full, about curating titles with small language models."
    with Store(db_path) as store:
        store.enqueue(store.add_abstract(queued, source="import"))
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        app.editor.load(typed)
        await pilot.press("tab", "n")
        await pilot.pause()
        assert app.editor.text == typed and "The abstract in the editor is not saved" in app.told[-1][1]
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and "the abstract in the editor is not saved" in app.told[-1][1].lower()
        await pilot.press("n")
        await pilot.pause()
        assert app.editor.text == queued  # asked twice: the typed abstract is left
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running  # the queued abstract on screen is the stored one: nothing to lose


async def test_queue_keys_say_the_store_is_not_open_rather_than_that_the_queue_is_empty(make_app, db_path):
    with Store(db_path) as store:
        store.enqueue(store.add_abstract("A queued abstract about sparse attention in graph networks."))
    os.chmod(db_path, 0o444)  # the app cannot open it, so it cannot read the queue either
    app = make_app()
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("tab", "n", "p")
            await settle(app, pilot)
            assert app.session is None
            assert not any("queue is empty" in message for _, message in app.told)
            told = [error for error in app.errors() if "import queue" in error]
            assert told == ["The store is not open, so the import queue cannot be read."] * 2
    finally:
        os.chmod(db_path, 0o644)


async def test_an_abstract_that_cannot_be_read_leaves_the_one_on_screen_and_its_run_going(
    make_app, db_path, monkeypatch
):
    queue_abstracts(db_path)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        hold = threading.Event()
        await generated(app, pilot, ["Alpha title", "Beta title"], 2, hold)
        reader = app.reader or app.store

        def unreadable(abstract_id):
            raise TitlecraftError("disk I/O error")

        monkeypatch.setattr(reader, "abstract", unreadable)
        await pilot.press("n")
        await pilot.pause()
        assert app.errors()[-1] == "Reading the store failed: disk I/O error"
        assert app.running is not None
        hold.set()
        await settle(app, pilot)
        assert [(view.text, view.finished) for view in app.candidates.views()] == [
            ("Alpha title", True),
            ("Beta title", True),
        ]
        assert all(view.candidate_id is not None for view in app.candidates.views())


async def test_next_says_when_every_queued_abstract_has_a_title(make_app, db_path):
    with Store(db_path) as store:
        abstract_id = store.add_abstract("A queued abstract about sparse attention in graph networks.")
        store.enqueue(abstract_id)
        store.own_title(abstract_id, "Done already")
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "n")
        assert app.session is None
        assert any("Every queued abstract has a title" in message for _, message in app.told)


async def test_an_open_edit_is_never_thrown_away_by_moving_to_another_abstract(make_app, db_path):
    with Store(db_path) as store:
        queued = store.add_abstract("A queued abstract about sparse attention in graph networks.", source="import")
        store.enqueue(queued)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        shown = app.editor.text
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("ctrl+u", *"My careful edit")
        app.action_next_abstract()  # n from the candidate list
        app.open_abstract(queued)  # choosing an abstract on the review screen
        await settle(app, pilot)
        warnings = [message for _, message in app.told if "A title is being edited" in message]
        assert len(warnings) == 2 and app.candidates.editing and app.editor.text == shown
        await pilot.press("enter")
        await settle(app, pilot)
    assert ("edit", "My careful edit") in [(action, text) for action, text, _ in live_decisions(db_path)]


async def test_the_keys_screen_stays_reachable_from_the_footer_at_80_columns(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        from textual.widgets._footer import FooterKey

        shown = [key for key in app.screen.query(FooterKey) if key.region.width and key.region.right <= 80]
        assert "question_mark" in [key.key for key in shown]


async def test_user_text_is_shown_literally(make_app, db_path):
    abstract = "We show that [bold]markup[/bold] and [link=https://example.com]links[/link] stay text."
    markup_title = "[bold]Not bold[/bold] and [link=https://example.com]not a link[/link]"
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(app, pilot, abstract)
        app.generator.generate = scripted_generate([markup_title, "A [/closing] tag alone"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        shown = [widget.content.plain for widget in app.candidates.query(".title").results(Static)]
        assert any(markup_title in text for text in shown)
        await pilot.press("a", "t")
        await type_into_prompt(pilot, "[/oops] my [red]own[/red]")
        await pilot.press("u")
        await settle(app, pilot)
        assert any("[/oops] my [red]own[/red]" in message for _, message in app.told)
        assert app.editor.text == abstract
        screenshot = app.export_screenshot().replace("&#160;", " ")
        assert "[bold]Not bold[/bold]" in screenshot

        await pilot.press("v")
        await review_loaded(app, pilot)
        assert isinstance(app.screen, ReviewScreen)
        table = app.screen.query_one(DataTable)
        assert table.get_row_at(0)[0].plain == markup_title
        assert not app.errors()


async def test_review_opens_an_abstract_with_its_history(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.generator.generate = scripted_generate(["Alpha title", "Beta title", "Gamma title"])
        app.sampling.update(n=3)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        await pilot.press("down", "a", "down", "r", "enter")
        await settle(app, pilot)
        app.editor.load("Another abstract entirely, pasted after the first one was curated.")
        app.candidates.clear_rows()
        await pilot.press("v")
        await review_loaded(app, pilot)
        await pilot.press("slash", *"beta")
        await review_loaded(app, pilot)
        assert app.screen.query_one(DataTable).row_count == 1
        await pilot.press("enter", "enter")
        await settle(app, pilot)
        assert app.editor.text.startswith("Another abstract")  # typed, not saved: only a second pick leaves it
        assert "The abstract in the editor is not saved" in app.told[-1][1]
        await pilot.press("v")
        await review_loaded(app, pilot)
        await pilot.press("slash", *"beta")
        await review_loaded(app, pilot)
        await pilot.press("enter", "enter")
        await settle(app, pilot)
        assert app.screen is app.screen_stack[0]
        assert app.editor.text.startswith("We study how small causal language models")
        decisions = {view.text: view.decision for view in app.candidates.views()}
        assert decisions == {"Alpha title": None, "Beta title": ACCEPTED, "Gamma title": REJECTED}


def test_app_sampling_defaults_are_the_generators():
    # The app keeps its own copy so that starting it does not import torch; it must not drift.
    from core.generate import SamplingParams
    from tui.app import DEFAULT_SAMPLING
    from tui.screens.settings import SETTING_FIELDS

    core_defaults = SamplingParams()
    assert DEFAULT_SAMPLING == {field.key: getattr(core_defaults, field.key) for field in SETTING_FIELDS}


async def test_settings_are_remembered_in_the_store(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "s")
        await pilot.pause()
        app.screen.query_one("#setting-oversample", Input).value = "0"
        count = app.screen.query_one("#setting-n", Input)
        count.value = "3"
        count.focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert (app.sampling["n"], app.sampling["oversample"]) == (3, 0)
    with Store(db_path) as store:
        assert store.get_setting("tui.sampling")["n"] == 3
    again = make_app()
    async with again.run_test(size=(100, 40)) as pilot:
        await settle(again, pilot)
        assert (again.sampling["n"], again.sampling["oversample"]) == (3, 0)


async def test_bad_model_spec_is_a_notification(make_app, tmp_path):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    app = make_app(model_spec=str(not_a_model))
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        assert any("could not be loaded" in error for error in app.errors())
        await pilot.press("ctrl+g")
        assert any("failed to load" in error for error in app.errors())
        assert "failed to load" in app.query_one(StatusBar).text()


async def test_empty_abstract_is_a_notification(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+g")
        assert any("empty" in error for error in app.errors())
        assert not app.candidates.rows


async def test_read_only_store_keeps_decisions_pending_until_it_is_writable(make_app, db_path):
    Store(db_path).close()
    os.chmod(db_path, 0o444)
    app = make_app()
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            await ready(app, pilot)
            assert any("read-only" in error for error in app.errors())
            app.generator.generate = scripted_generate(["First title", "Second title"])
            app.sampling.update(n=2)
            await pilot.press("ctrl+g")
            await settle(app, pilot)
            await pilot.press("a")
            await settle(app, pilot)
            view = app.candidates.views()[0]
            assert view.decision == ACCEPTED and view.pending
            assert "not saved yet" in app.candidates.rows[0].query_one(".title", Static).content.plain
            assert len(app.pending) == 3  # the abstract, the candidates and the acceptance
            await pilot.press("ctrl+q")
            assert app.is_running  # the first ctrl+q only warns about unsaved decisions

            os.chmod(db_path, 0o644)
            await pilot.press("down", "r", "enter")
            await settle(app, pilot)
            assert not app.pending
            assert not any(view.pending for view in app.candidates.views())
    finally:
        os.chmod(db_path, 0o644)
    with Store(db_path) as store:
        history = store.history(store.find_abstract(ABSTRACT))
        assert [(d.action, d.title) for d in history] == [("accept", "First title"), ("reject", "Second title")]


QUEUED = [f"Queued abstract number {i} about graph neural networks and sparse attention." for i in range(2)]


def queue_abstracts(db_path) -> list[int]:
    with Store(db_path) as store:
        ids = [store.add_abstract(text, source="import") for text in QUEUED]
        for abstract_id in ids:
            store.enqueue(abstract_id)
    return ids


def quickly_locked_store(monkeypatch):
    """The app's store gives up on a lock after 0.1 s instead of 5 s, and a helper that locks the file as
    another process would (reads still work: WAL readers never wait for a writer)."""
    import tui.app

    monkeypatch.setattr(tui.app, "_open_store", lambda path: Store(path, busy_timeout=0.1))

    def lock(db_path) -> sqlite3.Connection:
        other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        return other

    return lock


async def submit_export_path(app, pilot, path: str) -> None:
    """Type ``path`` into the open export dialog and press enter."""
    path_input = app.screen.query_one("#export-path", Input)
    path_input.value = path
    path_input.focus()
    await pilot.press("enter")


async def accept_while_locked(app, pilot, lock, db_path):
    """Open the first queued abstract, generate "Alpha title" and "Beta title", and accept Alpha while
    another process holds the store's write lock; returns that process's connection."""
    await settle(app, pilot)
    await pilot.press("tab", "n")
    app.generator.generate = scripted_generate(["Alpha title", "Beta title"])
    app.sampling.update(n=2)
    await pilot.press("ctrl+g")
    await settle(app, pilot)
    other = lock(db_path)
    await pilot.press("a")  # cannot be saved while the other process holds the lock
    await settle(app, pilot)
    return other


async def test_undo_never_takes_back_an_unsaved_decision_on_another_abstract(make_app, db_path, monkeypatch):
    first, _second = queue_abstracts(db_path)
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        other = await accept_while_locked(app, pilot, lock, db_path)
        assert len(app.pending) == 1
        await pilot.press("n")  # the next abstract, which has no decision at all
        assert app.editor.text == QUEUED[1]
        await pilot.press("u")
        await settle(app, pilot)
        assert any("Nothing to undo on this abstract" in message for _, message in app.told[-1:])
        other.execute("COMMIT")
        other.close()
        await pilot.press("t")  # the next decision retries the waiting one
        await type_into_prompt(pilot, "Own title for the second")
        await settle(app, pilot)
        assert not app.pending
    with Store(db_path) as store:
        assert [(d.action, d.title) for d in store.history(first)] == [("accept", "Alpha title")]


async def test_reopening_an_abstract_shows_its_decisions_that_wait_for_the_store(make_app, db_path, monkeypatch):
    first, _second = queue_abstracts(db_path)
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        other = await accept_while_locked(app, pilot, lock, db_path)
        await pilot.press("n", "p")  # away and back while the acceptance still waits
        await settle(app, pilot)
        assert app.editor.text == QUEUED[0]
        alpha = app.candidates.views()[0]
        assert (alpha.text, alpha.decision, alpha.pending) == ("Alpha title", ACCEPTED, 1)
        other.execute("COMMIT")
        other.close()
        await pilot.press("down", "a")  # saves the waiting acceptance, then this one
        await settle(app, pilot)
        on_screen = [(view.text, view.decision, view.pending) for view in app.candidates.views()]
        assert on_screen == [("Alpha title", ACCEPTED, 0), ("Beta title", ACCEPTED, 0)]
    with Store(db_path) as store:
        reopened = views_from_store(store.candidates(first), store.history(first), store.generations(first))
        assert [(view.text, view.decision) for view in reopened] == [(text, decision) for text, decision, _ in on_screen]


async def accept_the_first_then_paste_again(app, pilot, pasted_again: str, titles: list[str]) -> list:
    """Generate two titles for the editor's abstract and accept the first ("One"), generate for another
    abstract, then paste ``pasted_again`` and generate: returns the rows then on screen."""
    app.generator.generate = scripted_generate(titles)
    app.sampling.update(n=2)
    await pilot.press("ctrl+g")
    await settle(app, pilot)
    await pilot.press("a")  # accepts "One"
    await settle(app, pilot)
    app.editor.load("A different abstract about retrieval for few-shot prompting of small language models.")
    await pilot.press("ctrl+g")
    await settle(app, pilot)
    app.editor.load(pasted_again)
    await pilot.press("ctrl+g")
    await settle(app, pilot)
    return app.candidates.views()


async def test_pasting_an_abstract_curated_before_brings_back_its_decisions(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        pasted_again = "  " + ABSTRACT.replace(". ", ".\n")  # with other line breaks
        views = await accept_the_first_then_paste_again(app, pilot, pasted_again, ["One", "Two", "Three", "Four", "Five", "Six"])
        assert (views[0].text, views[0].decision) == ("One", ACCEPTED)
        assert "One" not in [view.text for view in views[1:]]  # not offered again
        await pilot.press("u")  # the acceptance is on screen, so it can be undone
        await settle(app, pilot)
        assert not any("Nothing to undo" in message for _, message in app.told)
    assert live_decisions(db_path) == []
    with Store(db_path) as store:
        assert store.counts()["abstracts"] == 2


async def test_an_abstract_pasted_again_with_accents_spelt_apart_brings_back_its_decisions(make_app, db_path):
    """Text copied from a PDF viewer often spells "é" as "e" and a combining accent; the store takes it for
    the same abstract, and so must the app: no warning that it is unsaved, and its decisions come back."""
    decomposed = "Les modèles de langue génèrent des titres: une étude. " + ABSTRACT
    decomposed = unicodedata.normalize("NFD", decomposed)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot, decomposed)
        # pasted again, as copied the first time
        views = await accept_the_first_then_paste_again(app, pilot, decomposed, ["One", "Two", "Three", "Four"])
        assert not any("not saved" in message for _, message in app.told)
        assert (views[0].text, views[0].decision) == ("One", ACCEPTED)


async def test_generating_again_keeps_decided_titles_in_view_and_undoable(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        asked_to_avoid = []
        scripted = scripted_generate(["One", "Two", "Three", "Four", "Five", "Six"])

        def generate(abstract, params, **kwargs):
            asked_to_avoid.append(tuple(kwargs.get("avoid", ())))
            return scripted(abstract, params, **kwargs)

        app.generator.generate = generate
        app.sampling.update(n=3)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        await pilot.press("a", "down", "r")
        await type_into_prompt(pilot, "")
        await settle(app, pilot)
        await pilot.press("ctrl+g")  # the same abstract: new candidates for the undecided row only
        await settle(app, pilot)
        views = app.candidates.views()
        assert [(view.text, view.decision) for view in views[:2]] == [("One", ACCEPTED), ("Two", REJECTED)]
        assert [view.text for view in views[2:]] == ["Three", "Four", "Five"]
        assert asked_to_avoid[-1] == ("One", "Two")
        await pilot.press("u")  # undoes the rejection, which is still on screen
        await settle(app, pilot)
        assert app.candidates.views()[1].decision is None
    assert live_decisions(db_path) == [("accept", "One", None)]


async def test_reopening_shows_the_rows_the_screen_last_showed_in_their_order(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.generator.generate = scripted_generate(["One", "Two", "Three", "Four", "Five", "Six"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")  # One, Two
        await settle(app, pilot)
        await pilot.press("a", "t")
        await type_into_prompt(pilot, "Mine")
        await settle(app, pilot)
        await pilot.press("ctrl+g")  # the undecided Two is replaced (the script offers Two and Three)
        await settle(app, pilot)
        await pilot.press("m")  # Four and Five appended
        await settle(app, pilot)
        shown = [(view.text, view.decision) for view in app.candidates.views()]
        assert shown == [("One", ACCEPTED), ("Mine", OWN), ("Two", None), ("Three", None), ("Four", None), ("Five", None)]
        app.open_abstract(app.session.abstract_id)
        await settle(app, pilot)
        assert [(view.text, view.decision) for view in app.candidates.views()] == shown
    with Store(db_path) as store:
        abstract_id = store.find_abstract(ABSTRACT)
        assert len(store.candidates(abstract_id)) == 6  # the replaced Two is still on record


async def test_more_after_the_abstract_was_edited_generates_for_the_new_text(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.generator.generate = scripted_generate(["One", "Two", "Three", "Four"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        app.editor.text_area.insert(" It also ranks them.")
        await pilot.press("m")  # focus is still on the candidate list
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == ["One", "Two"]  # a new run, not appended
        assert any("edited" in message for _, message in app.told)
    with Store(db_path) as store:
        edited = store.find_abstract(ABSTRACT + " It also ranks them.")
        assert edited is not None and [c.text for c in store.candidates(edited)] == ["One", "Two"]
        assert len(store.candidates(store.find_abstract(ABSTRACT))) == 2


async def test_more_with_the_abstract_cleared_only_says_it_is_empty(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        app.editor.load("  \n ")
        await pilot.press("m")
        await settle(app, pilot)
        assert app.told[-1] == ("error", "The abstract is empty: paste or type one first.")
        assert not any("edited" in message for _, message in app.told)
        assert [view.text for view in app.candidates.views()] == ["Alpha title", "Beta title"]


async def test_more_that_finds_no_new_title_says_why_instead_of_nothing(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.sampling.update(n=3, temperature=0.0, max_new_tokens=8)  # greedy: one title, the same every time
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        greedy = [view.text for view in app.candidates.views()]
        assert len(greedy) == 1
        await pilot.press("m")  # the real tiny model repeats its greedy title, which is not offered twice
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == greedy
        told = [message for severity, message in app.told if severity == "warning"]
        assert any("No new candidates" in message and "temperature" in message for message in told)
    with Store(db_path) as store:
        assert len(store.candidates(store.find_abstract(ABSTRACT))) == 1


async def test_more_while_a_stopped_run_winds_down_does_not_ask_for_escape_again(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        hold = threading.Event()
        await generated(app, pilot, ["Alpha title", "Beta title"], 2, hold)
        await pilot.press("escape", "m")  # the run stops at its next step, which the hold delays
        assert app.running is not None
        told = app.told[-1][1]
        assert "escape" not in told and "stopping" in told
        hold.set()
        await settle(app, pilot)
        assert app.running is None


async def test_more_appends_candidates_and_escape_leaves_an_edit(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.generator.generate = scripted_generate(["One", "Two", "Three", "Four"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        await pilot.press("m")
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == ["One", "Two", "Three", "Four"]
        assert all(view.candidate_id is not None for view in app.candidates.views())

        await pilot.press("e")
        await pilot.pause()
        await pilot.press("ctrl+u", *"Never saved", "escape")
        await settle(app, pilot)
        assert app.focused is app.candidates
        assert app.candidates.views()[3].decision is None
    with Store(db_path) as store:
        assert len(store.candidates(store.find_abstract(ABSTRACT))) == 4
        assert store.history(store.find_abstract(ABSTRACT)) == []


async def test_abstract_can_be_pasted_while_the_model_loads(make_app, monkeypatch):
    release = threading.Event()
    real_load = core.models.load_model

    def held_load(*args, **kwargs):
        release.wait(10)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(core.models, "load_model", held_load)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        assert app.query_one(StatusBar).info.loading
        assert "loading" in app.query_one(StatusBar).text()
        await pilot.press(*"Pasted while loading.")
        await pilot.press("ctrl+g")
        assert any("still loading" in error for error in app.errors())
        assert "few-shot: set once the model loads" in app.query_one(StatusBar).text()
        await pilot.press("tab", "f")  # the default depends on the model: nothing is toggled or saved yet
        assert app.few_shot_choice is None and any("still loading" in message for _, message in app.told[-1:])
        release.set()
        await settle(app, pilot)
        assert "few-shot: set once" not in app.query_one(StatusBar).text()  # the loaded model's default
        assert app.editor.text == "Pasted while loading."
        assert app.query_one("#token-count", Static).content.plain.endswith("tokens")
        assert not app.query_one(StatusBar).info.loading


async def test_the_edited_abstract_is_prefilled_so_generate_starts_decoding_at_once(make_app, model_call_lengths):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot, ABSTRACT)
        await pilot.pause(0.5)  # the count, then the prefill, wait for a pause in typing
        await app.workers.wait_for_complete()
        with model_call_lengths(app.generator.model) as prompt_runs:
            app.sampling.update(FAST)
            await pilot.press("ctrl+g")
            await settle(app, pilot)
        assert len(app.candidates.rows) == FAST["n"]
        assert prompt_runs and set(prompt_runs) == {1}  # every model call decoded one token per row


async def test_a_long_abstract_warns_before_and_during_generation(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)  # the model has loaded
        counting_threads = []
        count_tokens = app.generator.count_tokens

        def recorded_count(*args, **kwargs):
            counting_threads.append(threading.current_thread())
            return count_tokens(*args, **kwargs)

        app.generator.count_tokens = recorded_count
        await ready(app, pilot, ABSTRACT * 30)
        await pilot.pause(0.5)  # the count waits for a pause in typing
        await settle(app, pilot)
        assert counting_threads and threading.main_thread() not in counting_threads  # typing never waits on it
        token_count = app.query_one("#token-count", Static)
        assert token_count.has_class("-truncated")
        assert "dropped" in token_count.content.plain
        app.sampling.update(FAST)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert any(severity == "warning" and "dropped" in message for severity, message in app.told)


async def test_out_of_memory_is_a_notification_and_the_app_carries_on(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)

        def out_of_memory(*args, **kwargs):
            raise TitlecraftError("The GPU ran out of memory generating 5 candidates: ask for fewer candidates.")

        app.generator.generate = out_of_memory
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert any("ran out of memory" in error for error in app.errors())
        assert not app.candidates.rows and app.running is None
        app.generator.generate = scripted_generate(["Still works"])
        app.sampling.update(n=1)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == ["Still works"]


async def test_export_to_a_path_under_the_home_folder(make_app, tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("a", "x")
        await pilot.pause()
        await submit_export_path(app, pilot, "~/exports/pairs.jsonl")
        await settle(app, pilot)
        assert not app.errors()
        assert any(message == f"Exported 1 pair to {home / 'exports' / 'pairs.jsonl'}" for _, message in app.told)
    assert (home / "exports" / "pairs.jsonl").is_file()
    assert not (elsewhere / "~").exists()


async def test_a_failed_export_is_a_notification(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "x")
        await pilot.pause()
        path_input = app.screen.query_one("#export-path", Input)
        out = tmp_path / "pairs.jsonl"
        out.write_text("an earlier export\n", encoding="utf-8")
        path_input.value = str(out)  # nothing is curated yet: nothing to export, and the file is kept
        path_input.focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert any(error.startswith("Export failed: Nothing to export") for error in app.errors())
        assert out.read_text(encoding="utf-8") == "an earlier export\n"


CURATED_ABSTRACT = (
    "Small language models can title research papers when they see a few curated examples of abstracts "
    "with the titles a researcher accepted."
)
CURATED_TITLE = "Few-Shot Titles from Curated Examples"


def capturing(generate, seen: list):
    """Wrap a generator's ``generate`` to record the few-shot examples each run was given."""

    def wrapped(abstract, params, examples=(), **options):
        seen.append(list(examples))
        return generate(abstract, params, examples=examples, **options)

    return wrapped


def few_shot_params(db_path) -> list:
    """``few_shot_examples`` of every recorded generation, oldest first."""
    with Store(db_path) as store:
        rows = store.db.execute("SELECT params FROM generations ORDER BY id").fetchall()
    return [json.loads(params)["few_shot_examples"] for (params,) in rows]


async def test_few_shot_from_curated_titles_toggles_and_is_remembered(make_app, db_path):
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        status = app.query_one(StatusBar)
        assert "few-shot: on (1 curated)" in status.text()
        seen: list = []
        app.generator.generate = capturing(app.generator.generate, seen)  # the real tiny model
        app.sampling.update(FAST)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert seen == [[(CURATED_ABSTRACT, CURATED_TITLE)]]
        assert "few-shot: on (1 of 1 curated)" in status.text()

        await pilot.press("f")
        await settle(app, pilot)
        assert "few-shot: off" in status.text()
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert seen[-1] == []
        assert not app.errors()
    assert few_shot_params(db_path) == [1, 0]

    again = make_app()
    async with again.run_test(size=(100, 40)) as pilot:
        await settle(again, pilot)
        assert not again.few_shot
        assert "few-shot: off" in again.query_one(StatusBar).text()


async def test_few_shot_toggled_after_typing_is_prefilled_so_generate_starts_decoding_at_once(
    make_app, db_path, model_call_lengths
):
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        await pilot.pause(0.5)  # prefilled with the curated example: few-shot is on for the chat model
        await settle(app, pilot)
        await pilot.press("tab", "f")
        await settle(app, pilot)
        assert not app.few_shot
        with model_call_lengths(app.generator.model) as prompt_runs:
            app.sampling.update(FAST)
            await pilot.press("ctrl+g")
            await settle(app, pilot)
        assert len(app.candidates.rows) == FAST["n"]
        assert prompt_runs and set(prompt_runs) == {1}  # the prompt without the example was run already


async def test_few_shot_starts_with_the_first_curated_title_but_never_shows_an_abstract_its_own(
    make_app, db_path, retriever_builds
):
    builds = retriever_builds
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        status = app.query_one(StatusBar)
        assert "few-shot: no curated titles yet" in status.text()
        seen: list = []
        app.generator.generate = capturing(scripted_generate(["Alpha title", "Beta title"]), seen)
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        assert "1 curated" in status.text()

        await pilot.press("ctrl+g")  # the same abstract again: its own curated title is no example
        await settle(app, pilot)
        app.editor.load(CURATED_ABSTRACT)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert seen == [[], [], [(ABSTRACT, "Alpha title")]]
        assert len(builds) == 1  # built when first needed, reused while the curated pairs are unchanged
        assert "few-shot: on (1 of 1 curated)" in status.text()
    assert few_shot_params(db_path) == [0, 0, 1]


async def test_few_shot_defaults_off_for_fine_tuned_models_until_the_user_turns_it_on(
    make_app, db_path, tiny_gptneo_dir
):
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    app = make_app(model_spec=str(tiny_gptneo_dir))  # a completion-template (fine-tuned style) checkpoint
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        status = app.query_one(StatusBar)
        assert not app.few_shot and "few-shot: off" in status.text()
        app.candidates.focus()  # single-letter keys act outside the editor
        await pilot.pause()
        await pilot.press("f")
        await settle(app, pilot)
        assert app.few_shot and "few-shot: on (1 curated)" in status.text()
        while app.pending or app.writing:  # the choice is written by the store worker
            await pilot.pause(0.05)
    again = make_app(model_spec=str(tiny_gptneo_dir))
    async with again.run_test(size=(100, 40)) as pilot:
        await ready(again, pilot)
        assert again.few_shot  # the explicit choice is remembered and wins over the model's default


LONG_TITLES = [f"Title {i}" + " about sparse graph attention" * 2 for i in range(12)]


async def generated(app, pilot, titles, n: int, hold: threading.Event | None = None) -> None:
    """Paste the abstract and generate ``n`` scripted candidates; with ``hold``, the run streams its
    first words and then waits (still running) until ``hold`` is set, else it is waited for."""
    await ready(app, pilot)
    app.generator.generate = scripted_generate(titles, hold=hold)
    app.sampling.update(n=n)
    await pilot.press("ctrl+g")
    if hold is None:
        await settle(app, pilot)
    else:
        await pilot.pause()


async def test_a_streaming_title_highlighted_stays_highlighted_when_the_run_re_ranks_its_rows(make_app, db_path):
    """The rows stream in slot order and are re-ranked by score when the run ends: a title the researcher
    moved the highlight to meanwhile must be what a then accepts, not the one ranked into its place."""
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        hold = threading.Event()
        streamed = scripted_generate(["Alpha title", "Beta title", "Gamma title"], hold=hold)

        def ranked_last_first(*args, **kwargs):
            result = streamed(*args, **kwargs)
            return dataclasses.replace(result, candidates=result.candidates[::-1])

        app.generator.generate = ranked_last_first
        app.sampling.update(n=3)
        await pilot.press("ctrl+g")
        await pilot.pause()
        await pilot.press("down", "down")  # onto "Gamma", still streaming
        hold.set()
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == ["Gamma title", "Beta title", "Alpha title"]
        assert app.candidates.current.view.text == "Gamma title"
        await pilot.press("a")
        await settle(app, pilot)
    assert live_decisions(db_path) == [("accept", "Gamma title", None)]


async def test_a_refused_write_is_dropped_and_does_not_hold_up_later_decisions(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title", "Gamma title"], 3)
        await pilot.press("a")
        await settle(app, pilot)
        app.action_undo()
        app.action_undo()  # a quick double tap: the second undo finds nothing left to undo in the store
        await settle(app, pilot)
        assert any("no decision to undo. It was dropped" in error for error in app.errors())
        await pilot.press("down", "a")
        await settle(app, pilot)
        assert not app.pending and [view.decision for view in app.candidates.views()] == [None, ACCEPTED, None]
    assert live_decisions(db_path) == [("accept", "Beta title", None)]


async def test_an_own_title_written_during_a_run_stays_when_the_run_ends(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        hold = threading.Event()
        await generated(app, pilot, LONG_TITLES, 3, hold)
        await pilot.press("t")
        await type_into_prompt(pilot, "My own title")
        assert app.running is not None
        await pilot.press("a")  # on the own title, below the running rows
        assert app.told[-1][1].startswith("That is your own title")
        await pilot.press("up", "a")
        assert app.told[-1][1].startswith("That candidate is still being written")
        await pilot.press("down")
        hold.set()
        await settle(app, pilot)
        views = app.candidates.views()
        assert [view.text for view in views] == [*LONG_TITLES[:3], "My own title"]
        assert views[-1].decision == OWN and views[-1].decision_id is not None
        await pilot.press("u")
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == LONG_TITLES[:3]
    assert live_decisions(db_path) == []


async def test_a_new_abstract_stops_the_run_of_the_previous_one(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        hold = threading.Event()
        await generated(app, pilot, LONG_TITLES, 3, hold)
        app.editor.text_area.focus()
        await pilot.press("ctrl+end", *" Revised.")
        app.candidates.focus()
        await pilot.press("t")  # an own title for the revised abstract: a new abstract in the store
        await type_into_prompt(pilot, "Own title for the revision")
        hold.set()
        await settle(app, pilot)
        assert [view.text for view in app.candidates.views()] == ["Own title for the revision"]
    with Store(db_path) as store:
        revised = store.find_abstract(ABSTRACT + " Revised.")
        assert revised is not None and store.candidates(revised) == []
        assert [d.title for d in store.history(revised)] == ["Own title for the revision"]


async def test_the_highlighted_row_stays_in_view_when_candidates_overflow(make_app):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(app, pilot)
        titles = [f"Title {i} about sparse graph attention for molecular property prediction" for i in range(5)]
        app.generator.generate = scripted_generate(titles, step_delay=0.05)
        app.sampling.update(n=5)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        await pilot.pause(0.3)
        candidates = app.candidates
        assert candidates.max_scroll_y > 0 and candidates.cursor == 0  # the list overflows its pane
        row = candidates.current.region
        assert candidates.region.y <= row.y and row.bottom <= candidates.region.bottom


async def test_the_scroll_keys_move_the_highlight_so_a_acts_on_a_candidate_in_view(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await generated(app, pilot, [f"Title {i}" for i in range(16)], 16)
        candidates = app.candidates
        assert candidates.max_scroll_y > 0
        for key in ("pagedown", "end", "pageup", "home"):
            at = candidates.cursor
            await pilot.press(key)
            await pilot.pause()
            assert candidates.cursor != at, key
            row = candidates.current.region
            assert candidates.region.y <= row.y and row.bottom <= candidates.region.bottom, key
        await pilot.press("end", "a")
        await settle(app, pilot)
    assert live_decisions(db_path) == [("accept", "Title 15", None)]


async def test_a_stream_repaint_that_reaches_a_row_before_it_is_composed_is_harmless(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        candidates = app.candidates
        candidates.add_rows([CandidateView(text="Streaming")])
        candidates.rows[-1].show_view()  # a repaint that came due before the new row composed
        await pilot.pause()
        assert "Streaming" in candidates.rows[-1].query_one(".title", Static).content.plain
    assert app.return_code in (None, 0)


async def test_a_short_terminal_shows_candidates_and_whole_dialogs(make_app):
    for size in [(40, 12), (80, 10)]:  # 10 rows: 8 for the two panes, whose smallest heights must fit them
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await generated(app, pilot, ["A title that fits", "Another one"], 2)
            await pilot.pause(0.1)
            row = app.candidates.current.region
            assert row.height > 0 and app.screen.region.contains_region(row), size
            editor, count = app.editor.text_area.region, app.query_one("#token-count").region
            assert editor.height > 0 and app.screen.region.contains_region(editor), size
            assert count.height > 0 and app.screen.region.contains_region(count), size
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "s")
        await pilot.pause(0.1)
        save = app.screen.query_one("#save").region
        assert save.height > 0 and app.screen.region.contains_region(save)


async def accept_behind_another_writer(app, pilot, db_path) -> sqlite3.Connection:
    """Another process starts writing, then a is pressed: the acceptance waits for that lock (up to the
    5 s busy timeout). Returns the other process's connection, for the test to commit and close."""
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    await pilot.press("a")
    await pilot.pause()
    assert app.writing
    return other


async def test_reads_do_not_queue_behind_a_write_that_waits_for_another_process(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        other = await accept_behind_another_writer(app, pilot, db_path)
        counts = app._read(lambda store: store.counts())  # a read on the UI thread, e.g. the status line
        other.execute("COMMIT")  # released at once, unless the read above had to outwait the writer
        other.close()
        await settle(app, pilot)
        assert counts["abstracts"] == 1
        assert not app.errors() and not app.pending
    assert live_decisions(db_path) == [("accept", "Alpha title", None)]


async def test_few_shot_examples_are_read_without_waiting_for_a_write_held_up_by_another_process(make_app, db_path):
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        app.few_shot_choice = True
        seen, ran = [], threading.Event()
        scripted = capturing(scripted_generate(["Gamma title", "Delta title"]), seen)

        def generate(*args, **kwargs):
            ran.set()
            return scripted(*args, **kwargs)

        app.generator.generate = generate
        other = await accept_behind_another_writer(app, pilot, db_path)
        await pilot.press("ctrl+g")
        assert ran.wait(10)  # the run got its examples while the acceptance still waited
        other.execute("COMMIT")  # released at once, unless the run had to outwait the writer
        other.close()
        await settle(app, pilot)
        assert [[title for _abstract, title in examples] for examples in seen] == [[CURATED_TITLE]]
        assert not app.errors() and not app.pending
    assert live_decisions(db_path) == [("accept", "Alpha title", None)]


async def test_an_open_edit_is_never_thrown_away_by_generate_or_a_single_quit(make_app):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("ctrl+u", *"Half-typed")
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert any("A title is being edited" in message for _, message in app.told)
        assert app.candidates.editing and [view.text for view in app.candidates.views()] == ["Alpha title", "Beta title"]
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.is_running and any("a title is being edited" in message.lower() for _, message in app.told[-1:])
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_a_title_half_typed_in_a_prompt_or_a_later_edit_is_not_lost_to_a_single_quit(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("t")
        await pilot.pause()
        await pilot.press(*"My carefully typed own title", "ctrl+q")
        await pilot.pause()
        assert app.is_running and "your own title" in app.told[-1][1].lower()
        await pilot.press("escape")  # leave the prompt; the warning it armed must not cover a new edit
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        assert app.candidates.editing
        await pilot.press("ctrl+u", *"Half-typed", "ctrl+q")
        await pilot.pause()
        assert app.is_running and "a title is being edited" in app.told[-1][1].lower()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert not app.is_running


async def test_a_failing_status_read_is_told_once_and_decisions_still_save(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        status = app.query_one(StatusBar)
        app.reader.close()  # the status line's connection breaks; the writer's still works
        await pilot.press("a", "down", "a")
        await settle(app, pilot)
        told = [message for message in app.errors() if message.startswith("Reading the store failed")]
        assert len(told) == 1 and "closed database" in told[0]
        assert status.info.accepted == 0  # the last figures read stay up rather than made-up ones
    assert [action for action, _, _ in live_decisions(db_path)] == ["accept", "accept"]


async def test_a_decision_made_while_an_undo_is_being_saved_stays_on_screen(make_app, db_path, monkeypatch):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("a")
        await settle(app, pilot)
        undoing, release = threading.Event(), threading.Event()
        real_undo = Store.undo

        def slow_undo(store, abstract_id):
            undoing.set()
            release.wait(10)
            return real_undo(store, abstract_id)

        monkeypatch.setattr(Store, "undo", slow_undo)
        await pilot.press("u")
        assert undoing.wait(10)  # the undo is being written
        await pilot.press("down", "a")  # the next decision queues behind it
        release.set()
        await settle(app, pilot)
        views = app.candidates.views()
        assert [(view.decision, view.pending) for view in views] == [(None, 0), (ACCEPTED, 0)]
    assert live_decisions(db_path) == [("accept", "Beta title", None)]


async def test_undoing_an_own_title_above_a_running_run_leaves_its_candidates_whole(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("t")
        await type_into_prompt(pilot, "My own title")
        await settle(app, pilot)
        hold = threading.Event()
        app.generator.generate = scripted_generate(LONG_TITLES, hold=hold)
        app.sampling.update(n=3)
        await pilot.press("ctrl+g")  # the own title stays in view above the new run's rows
        await pilot.pause()
        assert app.running is not None
        await pilot.press("u")  # takes the own title back while the run streams
        while app.pending or app.writing:
            await pilot.pause(0.05)
        hold.set()
        await settle(app, pilot)
        views = app.candidates.views()
        assert [(view.text, view.finished) for view in views] == [(title, True) for title in LONG_TITLES[:3]]
        assert all(view.candidate_id is not None for view in views)
    assert live_decisions(db_path) == []


async def test_a_temperature_too_small_to_sample_with_is_refused_in_the_settings_dialog(make_app):
    """0.001 passed the dialog's range (0 to 2) and generating then failed on core's rule."""
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("tab", "s")
        await pilot.pause()
        temperature = app.screen.query_one("#setting-temperature", Input)
        temperature.value = "0.001"
        temperature.focus()
        await pilot.press("enter")
        await pilot.pause()
        error = str(app.screen.query_one("#settings-error", Static).render())
        assert "temperature must be 0 (greedy) or at least 0.01" in error
        assert app.sampling["temperature"] == 0.8
        temperature.value = "0.01"
        await pilot.press("enter")
        await pilot.pause()
        assert app.sampling["temperature"] == 0.01


async def test_settings_changed_while_the_store_is_read_only_survive_it_opening(make_app, db_path):
    with Store(db_path) as store:
        store.set_setting("tui.sampling", {"temperature": 0.8})
        store.set_setting("tui.few_shot", {"enabled": True})
    os.chmod(db_path, 0o444)
    app = make_app()
    try:
        async with app.run_test(size=(100, 40)) as pilot:
            await generated(app, pilot, ["Alpha title", "Beta title"], 2)  # the abstract's write waits
            await pilot.press("s")
            await pilot.pause()
            temperature = app.screen.query_one("#setting-temperature", Input)
            temperature.value = "0.3"
            temperature.focus()
            await pilot.press("enter", "f")  # few-shot off
            await settle(app, pilot)
            os.chmod(db_path, 0o644)
            await pilot.press("a")  # the next decision opens the store and saves everything waiting
            await settle(app, pilot)
            assert not app.pending
            assert (app.sampling["temperature"], app.few_shot) == (0.3, False)
    finally:
        os.chmod(db_path, 0o644)
    with Store(db_path) as store:
        assert store.get_setting("tui.sampling")["temperature"] == 0.3
        assert store.get_setting("tui.few_shot") == {"enabled": False}


async def test_an_export_says_which_decisions_it_left_out_because_they_wait_for_the_store(
    make_app, db_path, monkeypatch, tmp_path
):
    queue_abstracts(db_path)
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        other = await accept_while_locked(app, pilot, lock, db_path)
        out = tmp_path / "pairs.jsonl"
        await pilot.press("x")
        await pilot.pause()
        await submit_export_path(app, pilot, str(out))
        await settle(app, pilot)
        other.execute("COMMIT")
        other.close()
        told = next(message for _, message in app.told if message.startswith("Exported"))
        assert "1 change is not saved yet" in told
    assert [json.loads(line)["completion"] for line in out.read_text().splitlines()] == [" " + CURATED_TITLE]


async def test_an_open_edit_is_never_thrown_away_by_an_own_title_for_a_revised_abstract(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("ctrl+u", *"My careful edit")
        app.editor.text_area.focus()
        await pilot.press("ctrl+end", *" Revised.")
        app.candidates.focus()
        await pilot.press("t")  # an own title would start a new abstract: the open edit comes first
        await pilot.pause()
        assert not isinstance(app.screen, TextPrompt)
        assert any("A title is being edited" in message for _, message in app.told)
        assert app.candidates.editing and [view.text for view in app.candidates.views()] == ["Alpha title", "Beta title"]
        app.candidates.query_one(Input).focus()
        await pilot.press("enter")
        await settle(app, pilot)
    assert live_decisions(db_path) == [("edit", "My careful edit", None)]


async def test_an_own_title_prompt_left_with_escape_changes_nothing(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("a")
        app.editor.text_area.focus()
        await pilot.press("ctrl+end", *" Revised.")
        app.candidates.focus()
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TextPrompt)
        await pilot.press("escape")
        await settle(app, pilot)
        assert [(view.text, view.decision) for view in app.candidates.views()] == [
            ("Alpha title", ACCEPTED),
            ("Beta title", None),
        ]
        await pilot.press("u")  # the acceptance is still the one u takes back
        await settle(app, pilot)
    assert live_decisions(db_path) == []
    with Store(db_path) as store:
        assert store.counts()["abstracts"] == 1


async def test_an_empty_own_title_is_refused_with_a_message(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("t")
        await type_into_prompt(pilot, "   ")
        await settle(app, pilot)
        assert app.told[-1] == ("warning", "An empty title was not saved.")
        assert [view.decision for view in app.candidates.views()] == [None, None]
    assert live_decisions(db_path) == []


async def test_reopening_shows_a_decision_undone_before_or_after_a_new_run_as_the_screen_did(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.generator.generate = scripted_generate(["One", "Two", "Three", "Four", "Five", "Six"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")  # One, Two
        await settle(app, pilot)
        await pilot.press("a", "u")  # One accepted and taken back: undecided again
        await settle(app, pilot)
        await pilot.press("ctrl+g")  # so this run replaces One as well as Two (the script offers One, Two)
        await settle(app, pilot)
        await pilot.press("down", "a")  # Two accepted
        await settle(app, pilot)
        await pilot.press("ctrl+g")  # the accepted Two stays (the script offers Two, Three)
        await settle(app, pilot)
        await pilot.press("u")  # and stays on screen when its acceptance is taken back after the run
        await settle(app, pilot)
        shown = [(view.text, view.decision) for view in app.candidates.views()]
        assert shown == [("Two", None), ("Two", None), ("Three", None)]
        app.open_abstract(app.session.abstract_id)
        await settle(app, pilot)
        assert [(view.text, view.decision) for view in app.candidates.views()] == shown


async def test_few_shot_after_the_model_failed_to_load_says_so_rather_than_that_it_is_loading(make_app, tmp_path):
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    app = make_app(model_spec=str(not_a_model))
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "f")
        await pilot.pause()
        told = app.told[-1][1]
        assert "failed to load" in told and "still loading" not in told
        assert "few-shot: set once the model loads" not in app.query_one(StatusBar).text()


async def test_the_hint_on_an_own_title_does_not_promise_that_u_takes_it_back_when_a_later_decision_is_undone(
    make_app, db_path
):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("t")
        await type_into_prompt(pilot, "Mine")
        await pilot.press("up", "up", "a", "down", "down", "a")  # Alpha accepted after the own title
        await settle(app, pilot)
        hint = app.told[-1][1]
        assert hint.startswith("That is your own title")
        await pilot.press("u")
        await settle(app, pilot)
        assert "Mine" in [view.text for view in app.candidates.views()]  # u took back the acceptance
        assert "u undoes it." not in hint
        assert "latest" in hint


async def test_pasting_again_an_abstract_whose_decisions_wait_for_the_store_brings_them_back(
    make_app, db_path, monkeypatch
):
    other_abstract = "A different abstract about retrieval for few-shot prompting of small language models."
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        other = lock(db_path)  # from the start: not even the abstract is saved
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("a")
        await settle(app, pilot)
        app.editor.load(other_abstract)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        app.editor.load(ABSTRACT)  # pasted again while its decisions still wait
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        views = app.candidates.views()
        assert (views[0].text, views[0].decision, views[0].pending) == ("Alpha title", ACCEPTED, 1)
        other.execute("COMMIT")
        other.close()
        await pilot.press("u")  # the waiting acceptance is on screen, so u takes it back
        await pilot.press("down", "a")  # and this decision saves everything still waiting
        await settle(app, pilot)
        assert not app.pending
    assert [action for action, _, _ in live_decisions(db_path)] == ["accept"]
    with Store(db_path) as store:
        assert store.counts()["abstracts"] == 2


async def test_accepting_the_title_again_logs_nothing_but_an_earlier_title_can_be_made_current_again(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        await pilot.press("a", "a")  # a double tap: the second finds Alpha already the title
        await settle(app, pilot)
        assert app.told[-1][1].startswith("Already accepted")
        assert live_decisions(db_path) == [("accept", "Alpha title", None)]
        await pilot.press("u")  # so one u takes the acceptance back
        await settle(app, pilot)
        assert live_decisions(db_path) == []
        await pilot.press("a", "down", "a", "up", "a")  # Beta supersedes Alpha, then a makes Alpha the title again
        await settle(app, pilot)
        assert [title for _, title, _ in live_decisions(db_path)] == ["Alpha title", "Beta title", "Alpha title"]
        with Store(db_path) as store:
            assert store.curated_title(app.session.abstract_id) == "Alpha title"
        await pilot.press("r")
        await type_into_prompt(pilot, "too plain")
        await pilot.press("r")  # already rejected: no reason asked, nothing logged
        await pilot.pause()
        assert not isinstance(app.screen, TextPrompt)
        assert app.told[-1][1].startswith("Already rejected")
        await pilot.press("u")  # one u takes the rejection back
        await settle(app, pilot)
        assert [view.decision for view in app.candidates.views()] == [ACCEPTED, ACCEPTED]
    assert [title for _, title, _ in live_decisions(db_path)] == ["Alpha title", "Beta title", "Alpha title"]


def only_repeats(titles):
    """A scripted generator whose titles all repeat ones shown, as the real one drops them."""
    scripted = scripted_generate(titles)

    def generate(abstract, params, avoid=(), **options):
        result = scripted(abstract, params, avoid=avoid, **options)
        return dataclasses.replace(result, candidates=[c for c in result.candidates if c.text not in avoid])

    return generate


async def test_a_new_run_that_yields_nothing_brings_back_the_candidates_it_was_to_replace(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title", "Gamma title"], 3)
        await pilot.press("down", "a")  # Beta stays in view; Alpha and Gamma are what a new run replaces
        await settle(app, pilot)
        shown = [(view.text, view.decision) for view in app.candidates.views()]

        def failing(*args, **kwargs):
            raise TitlecraftError("The GPU ran out of memory generating 3 candidates: ask for fewer candidates.")

        hold = threading.Event()
        stopped_at_once = scripted_generate(LONG_TITLES, hold=hold)
        for generate in (stopped_at_once, failing, only_repeats(["Beta title"])):
            app.generator.generate = generate
            await pilot.press("ctrl+g")
            await pilot.pause()
            await pilot.press("escape")
            hold.set()
            await settle(app, pilot)
            assert [(view.text, view.decision) for view in app.candidates.views()] == shown
            assert "2 candidates it was to replace are back" in app.told[-1][1]
        app.open_abstract(app.session.abstract_id)
        await settle(app, pilot)
        assert [(view.text, view.decision) for view in app.candidates.views()] == shown


async def test_generate_pressed_again_mid_run_then_stopped_brings_back_the_rows_from_before_both_runs(
    make_app, db_path
):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title", "Gamma title"], 3)
        await pilot.press("down", "a")
        await settle(app, pilot)
        shown = [(view.text, view.decision, view.finished) for view in app.candidates.views()]
        first_hold, second_hold = threading.Event(), threading.Event()
        app.generator.generate = scripted_generate(LONG_TITLES, hold=first_hold)
        await pilot.press("ctrl+g")
        await pilot.pause()
        app.generator.generate = scripted_generate(LONG_TITLES, hold=second_hold)
        await pilot.press("ctrl+g")  # stops the first run, unrecorded, and replaces its half-written rows
        await pilot.pause()
        await pilot.press("escape")
        first_hold.set()
        second_hold.set()
        await settle(app, pilot)
        assert [(view.text, view.decision, view.finished) for view in app.candidates.views()] == shown
        assert "2 candidates it was to replace are back" in app.told[-1][1]
        abstract_id = app.session.abstract_id
    with Store(db_path) as store:
        reopened = views_from_store(
            store.candidates(abstract_id), store.history(abstract_id), store.generations(abstract_id)
        )
        assert [(view.text, view.decision, view.finished) for view in reopened] == shown


async def test_a_title_being_edited_stays_open_when_a_run_adding_nothing_puts_the_rows_back(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        hold = threading.Event()
        streaming = scripted_generate(LONG_TITLES, hold=hold)

        def fails_after_streaming(*args, **kwargs):
            streaming(*args, **kwargs)
            raise TitlecraftError("The GPU ran out of memory generating 2 candidates: ask for fewer candidates.")

        app.generator.generate = fails_after_streaming
        await pilot.press("m")
        await pilot.pause()
        await pilot.press("up", "up", "e")  # Alpha, above the run's rows
        await pilot.pause()
        await pilot.press(*" revised")
        hold.set()
        await settle(app, pilot)
        assert "Generation failed" in app.errors()[-1]
        assert app.candidates.query_one(EditInput).value == "Alpha title revised"
        await pilot.press("enter")
        await settle(app, pilot)
        shown = [(view.shown_text, view.decision) for view in app.candidates.views()]
        assert shown == [("Alpha title revised", EDITED), ("Beta title", None)]
        assert [row.view for row in app.candidates.query(CandidateRow)] == app.candidates.views()
    assert live_decisions(db_path) == [("edit", "Alpha title revised", None)]


async def test_a_clicked_candidate_is_the_one_a_accepts(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title", "Gamma title"], 3)
        rows = list(app.candidates.query(CandidateRow))
        await pilot.click(rows[2].query_one(".title"))
        await pilot.press("a")
        await settle(app, pilot)
        assert [view.decision for view in app.candidates.views()] == [None, None, ACCEPTED]
    assert live_decisions(db_path) == [("accept", "Gamma title", None)]


async def test_an_edit_the_focus_left_gets_it_back_so_enter_and_escape_act_on_it(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title", "Gamma title"], 3)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press(*" revised", "tab")  # to the abstract, to read it again
        await pilot.pause()
        assert app.focused is app.editor.text_area
        await pilot.press("ctrl+g")  # refused: "enter saves it, escape leaves it"
        await pilot.pause()
        assert "A title is being edited" in app.told[-1][1]
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.candidates.views()[0].shown_text == "Alpha title revised"

        await pilot.press("down", "e")
        await pilot.pause()
        await pilot.press(*" too")
        await pilot.click(list(app.candidates.query(CandidateRow))[2].query_one(".marker"))
        await pilot.press("e")  # Beta's edit comes back rather than a second one opening on Gamma
        await pilot.pause()
        assert len(app.candidates.query(EditInput)) == 1
        assert app.candidates.cursor == 1
        await pilot.press("escape")
        await settle(app, pilot)
        assert not app.candidates.editing
        assert [view.shown_text for view in app.candidates.views()] == ["Alpha title revised", "Beta title", "Gamma title"]
    assert live_decisions(db_path) == [("edit", "Alpha title revised", None)]


async def test_a_new_abstract_pasted_while_the_store_is_locked_does_not_show_the_last_ones_queue_place(
    make_app, db_path, monkeypatch
):
    queue_abstracts(db_path)
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "n")
        await settle(app, pilot)
        status = app.query_one(StatusBar)
        assert "queue 1/2" in status.text()
        other = lock(db_path)
        app.editor.load(ABSTRACT)  # a new abstract, which the store cannot take yet
        app.generator.generate = scripted_generate(["Alpha title", "Beta title"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert app.session.abstract_id is None
        assert "queue –/2" in status.text()
        other.execute("COMMIT")
        other.close()


async def test_rows_saved_in_a_burst_once_the_store_unlocks_reopen_in_the_order_they_appeared(
    make_app, db_path, monkeypatch
):
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await ready(app, pilot)
        app.sampling.update(n=2)
        other = lock(db_path)
        await pilot.press("tab", "t")
        await type_into_prompt(pilot, "Mine")
        # Runs that took a while, recorded only once the store unlocks: their timestamps say they began
        # long before that, before the own title written ahead of them and the longer one before the other.
        app.generator.generate = scripted_generate(["Alpha title", "Beta title"], step_delay=0.2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        app.generator.generate = scripted_generate(["Gamma title", "Delta title"], step_delay=0.4)
        await pilot.press("m")
        await settle(app, pilot)
        other.execute("COMMIT")
        other.close()
        await pilot.press("t")  # the next decision saves the waiting ones
        await type_into_prompt(pilot, "Final")
        await settle(app, pilot)
        assert not app.pending
        on_screen = [(view.text, view.decision) for view in app.candidates.views()]
        assert on_screen == [
            ("Mine", OWN),
            ("Alpha title", None),
            ("Beta title", None),
            ("Gamma title", None),
            ("Delta title", None),
            ("Final", OWN),
        ]
    with Store(db_path) as store:
        abstract_id = store.find_abstract(ABSTRACT)
        reopened = views_from_store(
            store.candidates(abstract_id), store.history(abstract_id), store.generations(abstract_id)
        )
        assert [(view.text, view.decision) for view in reopened] == on_screen


async def test_an_undo_saved_after_leaving_the_abstract_shows_when_it_is_reopened(make_app, db_path, monkeypatch):
    first, _second = queue_abstracts(db_path)
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "n")
        app.generator.generate = scripted_generate(["Alpha title", "Beta title"])
        app.sampling.update(n=2)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        await pilot.press("a")
        await settle(app, pilot)
        undoing, release, others = threading.Event(), threading.Event(), []
        real_undo = Store.undo

        def undo_then_locked(store, abstract_id):
            """The undo is saved once released; then another process takes the lock, so later writes wait."""
            undoing.set()
            release.wait(10)
            undone = real_undo(store, abstract_id)
            others.append(lock(db_path))
            return undone

        monkeypatch.setattr(Store, "undo", undo_then_locked)
        await pilot.press("u")
        assert undoing.wait(10)
        await pilot.press("down", "a", "n")  # Beta's acceptance waits behind the undo; the abstract is left
        release.set()
        await settle(app, pilot)
        assert len(app.pending) == 1
        await pilot.press("p")  # back while Beta's acceptance still waits
        await settle(app, pilot)
        on_screen = [(view.text, view.decision, view.pending) for view in app.candidates.views()]
        assert on_screen == [("Alpha title", None, 0), ("Beta title", ACCEPTED, 1)]
        others[0].execute("COMMIT")
        others[0].close()
        await pilot.press("a")  # the next decision saves the waiting one too
        await settle(app, pilot)
        assert not app.pending
        on_screen = [(view.text, view.decision) for view in app.candidates.views()]
    with Store(db_path) as store:
        reopened = views_from_store(store.candidates(first), store.history(first), store.generations(first))
        assert [(view.text, view.decision) for view in reopened] == on_screen == [
            ("Alpha title", ACCEPTED),
            ("Beta title", ACCEPTED),
        ]


async def test_an_abstract_left_during_a_new_run_comes_back_with_the_candidates_the_run_was_to_replace(
    make_app, db_path, monkeypatch
):
    first, _second = queue_abstracts(db_path)
    lock = quickly_locked_store(monkeypatch)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "n")
        app.generator.generate = scripted_generate(["Alpha title", "Beta title", "Gamma title"])
        app.sampling.update(n=3)
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        other = lock(db_path)
        await pilot.press("down", "a")  # waits for the store, so reopening shows the rows left
        await settle(app, pilot)
        hold = threading.Event()
        app.generator.generate = scripted_generate(LONG_TITLES, hold=hold)
        await pilot.press("ctrl+g")
        await pilot.pause()
        await pilot.press("n", "p")  # left while the new run streams, which stops it unrecorded
        hold.set()
        await settle(app, pilot)
        on_screen = [(view.text, view.decision) for view in app.candidates.views()]
        assert on_screen == [("Alpha title", None), ("Beta title", ACCEPTED), ("Gamma title", None)]
        other.execute("COMMIT")
        other.close()
        await pilot.press("t")  # the next decision saves the waiting one
        await type_into_prompt(pilot, "Mine")
        await settle(app, pilot)
        assert not app.pending
    with Store(db_path) as store:
        reopened = views_from_store(store.candidates(first), store.history(first), store.generations(first))
        assert [(view.text, view.decision) for view in reopened] == [*on_screen, ("Mine", OWN)]


async def test_a_store_that_cannot_be_opened_is_named_in_the_status_line_not_shown_as_empty(make_app, db_path):
    db_path.write_text("not a database\n")  # e.g. --db pointed at the wrong file
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        line = app.query_one(StatusBar).text()
        assert "store unavailable: decisions wait on screen" in line
        assert "✓" not in line  # no counts it never read
        assert "few-shot: on" in line  # the toggle's state is known without the store


async def test_the_status_line_shows_the_store_figures_once_a_decision_opens_the_store(make_app, db_path):
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    db_path.parent.chmod(0o555)  # SQLite cannot write its journal files beside it
    app = make_app()
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await generated(app, pilot, ["Alpha title", "Beta title"], 2)
            status = app.query_one(StatusBar)
            assert "store unavailable" in status.text() and "✓" not in status.text()
            db_path.parent.chmod(0o755)
            await pilot.press("a")  # the write opens the store and saves everything waiting
            await settle(app, pilot)
            assert not app.pending
            assert "store unavailable" not in status.text()
            assert "✓1 ✎0 ✗0 │ few-shot: on (2 curated)" in status.text()
    finally:
        db_path.parent.chmod(0o755)


def wholly_shown(app, widget) -> bool:
    """Whether ``widget`` is drawn whole: inside the screen and inside its dialog (not cut off by it)."""
    region, dialog = widget.region, app.screen.query_one(".dialog").content_region
    return region.height > 0 and app.screen.region.contains_region(region) and dialog.contains_region(region)


async def test_dialogs_and_the_status_line_are_usable_on_a_60_by_16_terminal(make_app, db_path, tiny_llama_dir):
    queue_abstracts(db_path)
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    app = make_app()
    async with app.run_test(size=(60, 16)) as pilot:
        await settle(app, pilot)
        await pilot.press("tab", "n")
        await settle(app, pilot)
        model = app.query_one("#status-model").region
        counts = app.query_one("#status-counts").region
        assert model.width >= len(tiny_llama_dir.name)  # the model's name, not three letters of it
        assert app.screen.region.contains_region(counts)
        assert "few-shot: on" in app.query_one(StatusBar).text()

        await pilot.press("s")
        await pilot.pause(0.1)
        assert all(wholly_shown(app, app.screen.query_one(f"#{name}")) for name in ("save", "cancel"))
        diversity = app.screen.query_one("#setting-diversity", Input)
        diversity.value = "9"
        diversity.focus()
        await pilot.press("enter")  # refused: the error shows, and the buttons stay whole below it
        await pilot.pause(0.1)
        assert "must be between" in app.screen.query_one("#settings-error", Static).content.plain
        assert all(wholly_shown(app, app.screen.query_one(f"#{name}")) for name in ("save", "cancel"))
        await pilot.press("escape")

        await pilot.press("x")
        await pilot.pause(0.1)
        assert all(wholly_shown(app, app.screen.query_one(f"#{name}")) for name in ("export", "cancel"))


async def test_an_export_does_not_wait_for_a_write_held_up_by_another_process(make_app, db_path, tmp_path):
    with Store(db_path) as store:
        store.own_title(store.add_abstract(CURATED_ABSTRACT), CURATED_TITLE)
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        other = await accept_behind_another_writer(app, pilot, db_path)
        out = tmp_path / "pairs.jsonl"
        await pilot.press("x")
        await pilot.pause()
        await submit_export_path(app, pilot, str(out))
        for _ in range(40):  # 2 s, well under the writer's wait
            await pilot.pause(0.05)
            if any(message.startswith("Exported") for _, message in app.told):
                break
        exported_while_locked = out.exists()
        other.execute("COMMIT")
        other.close()
        await settle(app, pilot)
        assert exported_while_locked
        assert not app.errors() and not app.pending
    assert [json.loads(line)["completion"] for line in out.read_text().splitlines()] == [" " + CURATED_TITLE]


async def test_an_abstract_pasted_while_the_candidates_have_focus_goes_into_the_abstract(make_app, db_path):
    app = make_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await generated(app, pilot, ["Alpha title", "Beta title"], 2)
        assert app.focused is app.candidates
        app.post_message(events.Paste(CURATED_ABSTRACT))  # the next abstract, pasted after deciding
        await pilot.pause()
        assert app.editor.text == CURATED_ABSTRACT  # replacing the one generated for, which is saved
        assert app.focused is app.editor.text_area
        app.generator.generate = scripted_generate(["Gamma title", "Delta title"])
        await pilot.press("ctrl+g")
        await settle(app, pilot)
        assert app.session.text == CURATED_ABSTRACT
        assert [view.text for view in app.candidates.views()] == ["Gamma title", "Delta title"]

        app.editor.text_area.insert("A new abstract typed but not generated for. ")
        assert app.focused is app.candidates
        app.post_message(events.Paste(ABSTRACT))
        await pilot.pause()
        assert app.editor.text.startswith("A new abstract typed")  # an unsaved one is never replaced
        assert "not saved" in app.told[-1][1]
    with Store(db_path) as store:
        assert store.find_abstract(CURATED_ABSTRACT) is not None


async def test_a_status_line_whose_first_store_read_fails_says_so_rather_than_reading_on(make_app, monkeypatch):
    import tui.app

    def unreadable(store, abstract_id):
        raise TitlecraftError("disk I/O error")

    monkeypatch.setattr(tui.app.StoreFigures, "read", unreadable)
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(app, pilot)
        line = app.query_one(StatusBar).text()
        assert "store counts unreadable" in line and "reading the store" not in line
        assert app.errors() == ["Reading the store failed: disk I/O error"]
