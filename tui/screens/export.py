"""The ``x`` dialog: pick an export format and a path; the app runs core's export and reports back."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from core.export import FORMATS

FORMAT_LABELS = {
    "sft": "SFT JSONL (prompt / completion)",
    "chat": "Chat JSONL (messages)",
    "dpo": "Preference JSONL (prompt / chosen / rejected)",
    "parquet": "Parquet with provenance",
    "csv": "CSV with provenance",
    "hf": "datasets folder (save_to_disk)",
}
SUFFIXES = {"sft": ".jsonl", "chat": ".jsonl", "dpo": ".jsonl", "parquet": ".parquet", "csv": ".csv", "hf": ""}


def default_path(folder: Path, export_format: str) -> str:
    return str(folder / f"curated-{export_format}{SUFFIXES[export_format]}")


class ExportScreen(ModalScreen[tuple[str, str] | None]):
    """Returns (format, path), or None when cancelled. The path follows the format until edited."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-dialog"):
            yield Static(Text("Export curated pairs", style="bold"), classes="dialog-title")
            yield Label("Format")
            yield Select(
                [(FORMAT_LABELS[name], name) for name in FORMATS], value="sft", allow_blank=False, id="export-format"
            )
            yield Label("Path")
            yield Input(default_path(self.folder, "sft"), id="export-path")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export", variant="primary", id="export")
                yield Button("Cancel", id="cancel")

    def on_select_changed(self, event: Select.Changed) -> None:
        path_input = self.query_one("#export-path", Input)
        if path_input.value in {default_path(self.folder, name) for name in FORMATS}:
            path_input.value = default_path(self.folder, str(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        path = self.query_one("#export-path", Input).value.strip()
        if not path:
            self.app.notify("Give a path to export to.", severity="warning")
            return
        self.dismiss((str(self.query_one("#export-format", Select).value), path))
