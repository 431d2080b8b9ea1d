"""The ``?`` screen: every key, built from the live bindings so it cannot drift from them."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Keys handled by widgets rather than bindings, so they would otherwise be missing from the list.
EXTRA_KEYS = [
    ("tab / shift+tab", "Move focus between the abstract and the candidates"),
    ("enter (editing)", "Save the edited title"),
    ("escape (editing)", "Leave the title as it was"),
]


class HelpScreen(ModalScreen[None]):
    """A keys table over the main screen; any of escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, bindings: list[Binding]) -> None:
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static(Text("Keys", style="bold"), classes="dialog-title")
            yield Static(self._table())
            yield Static(Text("escape, q or ? closes this screen", style="dim"))

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for binding in self.bindings:
            keys = " / ".join(self.app.get_key_display(Binding(key, "")) for key in binding.key.split(","))
            table.add_row(keys, binding.tooltip or binding.description)
        for keys, description in EXTRA_KEYS:
            table.add_row(keys, description)
        return table
