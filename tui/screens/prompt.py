"""A one-line question over the main screen: a rejection reason or the researcher's own title."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class TextPrompt(ModalScreen[str | None]):
    """Returns the typed text on enter (possibly empty) and None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, hint: str, placeholder: str = "", value: str = "", draft: str = "") -> None:
        super().__init__()
        self.prompt_title = title
        self.hint = hint
        self.placeholder = placeholder
        self.value = value
        self.draft = draft  # what the typed text is, for ctrl+q's warning ("your own title")

    @property
    def unsaved_draft(self) -> str | None:
        """The typed text's name if quitting now would lose it (ctrl+q then asks twice), else None."""
        if self.draft and self.query_one("#prompt-input", Input).value.strip():
            return self.draft
        return None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog prompt-dialog"):
            yield Static(Text(self.prompt_title, style="bold"), classes="dialog-title")
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Static(Text(self.hint, style="dim"))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
