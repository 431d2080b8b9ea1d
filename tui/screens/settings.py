"""The ``s`` dialog: sampling settings, validated here and remembered in the store by the app."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Integer, Number
from textual.widgets import Button, Input, Label, Static

from core.errors import TitlecraftError


@dataclass(frozen=True)
class SettingField:
    """One adjustable sampling parameter; ``key`` is its name in core's ``SamplingParams``."""

    key: str
    label: str
    kind: type
    low: float
    high: float

    def parse(self, raw: object) -> int | float:
        """Convert and range-check a value; raises ValueError with a readable message."""
        try:
            value = self.kind(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{self.label} must be a number") from None
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.label} must be between {self.low:g} and {self.high:g}")
        return value


SETTING_FIELDS = (
    SettingField("n", "Candidates per run", int, 1, 16),
    SettingField("temperature", "Temperature (0: greedy)", float, 0.0, 2.0),
    SettingField("top_p", "Top-p", float, 0.05, 1.0),
    SettingField("max_new_tokens", "Max new tokens", int, 4, 128),
    SettingField("oversample", "Extra samples (best kept)", int, 0, 16),
    SettingField("diversity", "Diversity weight (0: best-ranked)", float, 0.0, 5.0),
)


class SettingsScreen(ModalScreen[dict | None]):
    """Edits the sampling settings; returns the new values, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, values: dict) -> None:
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="settings-dialog"):
            yield Static(Text("Sampling settings", style="bold"), classes="dialog-title")
            for field in SETTING_FIELDS:
                validator = (Integer if field.kind is int else Number)(minimum=field.low, maximum=field.high)
                with Horizontal(classes="setting"):
                    yield Label(Text(field.label))
                    yield Input(
                        str(self.values[field.key]),
                        id=f"setting-{field.key}",
                        type="integer" if field.kind is int else "number",
                        validators=[validator],
                        compact=True,
                    )
            yield Static(id="settings-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _save(self) -> None:
        values = {}
        for field in SETTING_FIELDS:
            raw = self.query_one(f"#setting-{field.key}", Input).value
            try:
                values[field.key] = field.parse(raw)
            except ValueError as error:
                self._show_error(str(error))
                return
        from core.generate import SamplingParams  # imports torch, which the app loads in the background

        try:  # the rules that span a range (a temperature of 0 or at least 0.01) are core's
            SamplingParams(**values)
        except TitlecraftError as error:
            self._show_error(str(error))
            return
        self.dismiss(values)

    def _show_error(self, message: str) -> None:
        shown = self.query_one("#settings-error", Static)
        shown.update(Text(message, style="bold red"))
        shown.display = True
