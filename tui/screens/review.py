"""The ``v`` screen: every curated pair in a table, searchable; enter reopens that abstract."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from core.errors import TitlecraftError
from tui.widgets.status_bar import model_label

ABSTRACT_PREVIEW_CHARS = 80
HOW = {"accept": "accepted", "edit": "edited", "own_title": "own"}


class ReviewScreen(Screen[int | None]):
    """Returns the chosen abstract's id, or None when left with escape."""

    BINDINGS = [
        Binding("escape", "dismiss_review", "Back"),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self, store: Any) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        yield Static(Text("Curated pairs", style="bold"), classes="pane-title")
        yield Input(placeholder="search titles and abstracts", id="review-search")
        yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="review-count")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Title", "How", "Model", "Abstract")
        self._show("")
        table.focus()

    def _show(self, search: str) -> None:
        table = self.query_one(DataTable)
        table.clear()
        try:
            pairs = self.store.search_curated(search) if search else self.store.curated_pairs()
        except TitlecraftError as error:
            self.app.notify(f"Reading the store failed: {error}", severity="error", markup=False)
            pairs = []
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
        noun = "pair" if len(pairs) == 1 else "pairs"
        self.query_one("#review-count", Static).update(
            Text(f"{len(pairs)} curated {noun} · enter opens one · / searches · escape goes back", style="dim")
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show(event.value.strip())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(int(event.row_key.value))

    def action_focus_search(self) -> None:
        self.query_one(Input).focus()

    def action_dismiss_review(self) -> None:
        self.dismiss(None)
