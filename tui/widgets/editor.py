"""The abstract editor: a text area that takes pasted abstracts, with its token count underneath.

The count comes from the loaded model's tokenizer (via the core generator), so the warning about
truncation is the same one generation would give.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static, TextArea

PLACEHOLDER = "Paste an abstract here, then press ctrl+g to generate titles."


class AbstractEditor(Vertical):
    """The text area plus a one-line token count that turns into a warning when text will be cut."""

    def compose(self) -> ComposeResult:
        yield TextArea(id="abstract", soft_wrap=True, placeholder=PLACEHOLDER)
        yield Static(Text("tokens: waiting for the model"), id="token-count")

    @property
    def text_area(self) -> TextArea:
        return self.query_one("#abstract", TextArea)

    @property
    def text(self) -> str:
        return self.text_area.text

    def load(self, text: str) -> None:
        """Replace the abstract (from the queue or the review screen)."""
        self.text_area.load_text(text)

    def show_token_count(self, tokens: int, dropped: int) -> None:
        label = self.query_one("#token-count", Static)
        label.set_class(bool(dropped), "-truncated")
        if dropped:
            label.update(Text(f"⚠ {tokens} tokens: too long for the prompt, the last {dropped} will be dropped"))
        else:
            label.update(Text(f"{tokens} tokens"))

    def show_token_note(self, note: str) -> None:
        label = self.query_one("#token-count", Static)
        label.remove_class("-truncated")
        label.update(Text(note))
