"""The ``v`` screen: curated pairs in a table, searchable; enter reopens that abstract.

The store is read in a worker thread, never on the UI thread: on a store of 20,000 pairs one read takes a
few hundred milliseconds, and a search ran one on every keystroke. Keystrokes are debounced so typing a
word runs one search, a read that a newer one superseded never reaches the table, and the table shows
at most ``MAX_ROWS`` of what matched, with the count line saying how many that is of how many.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from tui.messages import ReviewPairsRead, ReviewReadFailed, error_text
from tui.widgets.status_bar import model_label

ABSTRACT_PREVIEW_CHARS = 80
HOW = {"accept": "accepted", "edit": "edited", "own_title": "own"}
# The most rows the table holds. Building a DataTable of a whole 20,000-pair store takes seconds on the UI
# thread and nobody scrolls through that many: a search narrows them instead. 500 rows are many screens
# of scrolling yet cheap to build, and the count line says how many there are in all.
MAX_ROWS = 500
# Seconds the search waits after a keystroke before reading the store, restarted by the next keystroke:
# a word typed at normal speed becomes one query instead of one per letter.
SEARCH_DEBOUNCE_SECONDS = 0.25
KEYS_HINT = "enter opens one · / searches · escape goes back"


class ReviewScreen(Screen[int | None]):
    """Returns the chosen abstract's id, or None when left with escape."""

    BINDINGS = [
        Binding("escape", "dismiss_review", "Back"),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store
        self.loading = False  # a read is waiting for its debounce or running; the table may be stale
        self._read_id = 0  # the read whose result the table should show; older results are dropped
        self._pending_search: str | None = None  # the search waiting for the debounce to run it
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("Curated pairs", style="bold"), classes="pane-title")
        yield Input(placeholder="search titles and abstracts", id="review-search")
        yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="review-count")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Title", "How", "Model", "Abstract")
        table.focus()
        self._start_read("")

    # -- reading -----------------------------------------------------------------------------------

    def _start_read(self, search: str) -> None:
        self._stop_debounce()
        self._read_id += 1
        self.loading = True
        self._show_count("Searching…" if search else "Loading curated pairs…")
        self._read_pairs(self._read_id, search)

    @work(thread=True, exclusive=True, group="review-read")
    def _read_pairs(self, read_id: int, search: str) -> None:
        """Read one page of pairs and how many match, in one snapshot so the two agree."""
        worker = get_current_worker()
        try:
            with self.store.snapshot():
                if search:
                    pairs = self.store.search_curated(search, limit=MAX_ROWS)
                else:
                    pairs = self.store.curated_pairs(limit=MAX_ROWS)
                total = self.store.count_curated(search) if len(pairs) >= MAX_ROWS else len(pairs)
        except Exception as error:  # noqa: BLE001 - a failing read is shown to the user, never a crash
            outcome: ReviewPairsRead | ReviewReadFailed = ReviewReadFailed(read_id, error_text(error))
        else:
            outcome = ReviewPairsRead(read_id, pairs, total)
        if not worker.is_cancelled:  # a newer read replaced this one, or the screen closed
            self.post_message(outcome)

    def on_review_pairs_read(self, message: ReviewPairsRead) -> None:
        message.stop()
        if message.read_id != self._read_id:  # posted just before a newer read started
            return
        self.loading = False
        self._fill_table(message.pairs)
        shown = len(message.pairs)
        if shown < message.total:
            self._show_count(f"{shown:,} of {message.total:,} curated pairs shown (search to narrow them) · {KEYS_HINT}")
        else:
            noun = "pair" if shown == 1 else "pairs"
            self._show_count(f"{shown} curated {noun} · {KEYS_HINT}")

    def on_review_read_failed(self, message: ReviewReadFailed) -> None:
        message.stop()
        if message.read_id != self._read_id:
            return
        self.loading = False
        self._fill_table([])
        self.app.notify(f"Reading the store failed: {message.error}", severity="error", markup=False)
        self._show_count(f"Reading the store failed, so no pairs are shown · {KEYS_HINT}")

    def _fill_table(self, pairs: list[Any]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for pair in pairs:
            preview = pair.abstract[:ABSTRACT_PREVIEW_CHARS]
            if len(pair.abstract) > ABSTRACT_PREVIEW_CHARS:
                preview += "…"
            table.add_row(
                Text(pair.title),
                Text(HOW.get(pair.action, pair.action)),
                Text(model_label(pair.model_spec)),
                Text(preview, style="dim"),
                key=str(pair.abstract_id),
            )

    def _show_count(self, text: str) -> None:
        self.query_one("#review-count", Static).update(Text(text, style="dim"))

    # -- search ------------------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        """Wait for a pause in typing before searching; what is on screen until then is stale."""
        self._stop_debounce()
        self._read_id += 1  # a read still running is for older text: its result must not land
        self.loading = True
        self._pending_search = event.value.strip()
        self._show_count("Searching…")
        self._debounce = self.set_timer(SEARCH_DEBOUNCE_SECONDS, self._run_pending_search)

    def _run_pending_search(self) -> None:
        self._debounce = None  # fired, or about to be made moot; the timer is not stopped from its own callback
        search, self._pending_search = self._pending_search, None
        if search is not None:
            self._start_read(search)

    def _stop_debounce(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the search runs it now (no need to wait for the debounce) and moves to the table."""
        self._stop_debounce()
        self._run_pending_search()
        self.query_one(DataTable).focus()

    # -- choosing ----------------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Open the chosen abstract, unless the list is about to be replaced by a search: its rows are then
        stale, and a quick second enter after typing a search would open whatever came first before it."""
        if self.loading:
            self.app.notify("Still searching: enter opens a pair once the list is shown.", severity="warning")
            return
        self.dismiss(int(event.row_key.value))

    def action_focus_search(self) -> None:
        self.query_one(Input).focus()

    def action_dismiss_review(self) -> None:
        self.dismiss(None)

