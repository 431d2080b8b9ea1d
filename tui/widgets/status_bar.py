"""The status line: model and device, speed of the last run, store counts, few-shot and queue position.

The model part takes the room that is left and is cut with an ellipsis, so the counts on the right
stay visible on a narrow terminal; when the counts in full would leave the model less room than its
name, they are worded briefly instead ("few-shot: on (4/37)"), so a 60-column terminal shows both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


def model_label(spec: str | None) -> str:
    """A model spec as a short label: a checkpoint folder by its name, other specs as they are."""
    if spec is None:
        return "—"
    return Path(spec).name if Path(spec).is_dir() else spec


@dataclass
class StatusInfo:
    """Everything the status line shows; the app fills it in and calls ``StatusBar.show``."""

    model: str = ""
    device: str = ""
    loading: bool = False
    first_token_seconds: float | None = None
    tokens_per_second: float | None = None
    accepted: int | None = None  # None, with edited and rejected, until the store's counts have been read
    edited: int = 0
    rejected: int = 0
    store_unavailable: bool = False  # the store could not be opened: decisions wait on screen
    counts_unreadable: bool = False  # the store is open but reading its counts failed before any were read
    queue_position: int | None = None
    queue_length: int = 0
    few_shot: bool | None = True  # the researcher's toggle (f); None: the model's default, not loaded (yet)
    curated: int | None = None  # curated pairs in the store; None until the store has been read
    few_shot_used: int | None = None  # examples the last run's prompt held, None if it ran without


@dataclass
class StoreFigures:
    """The store's part of the status line. Read in a worker: on a store with tens of thousands of
    decisions these counts take about half a second, too long for the UI thread after every decision."""

    curated: int
    accepted: int
    edited: int
    rejected: int
    queue_length: int
    queue_position: int | None  # 0-based place of ``abstract_id`` in the import queue
    abstract_id: int | None  # the abstract open when they were read

    @classmethod
    def read(cls, store: Any, abstract_id: int | None) -> StoreFigures:
        counts = store.counts()
        stats = store.model_stats()
        position = None if abstract_id is None else store.queue_position(abstract_id)
        return cls(
            curated=counts["curated"],
            accepted=sum(model.accepted for model in stats),
            edited=sum(model.edited for model in stats),
            rejected=sum(model.rejected for model in stats),
            queue_length=counts["queued"],
            queue_position=None if position is None else position - 1,
            abstract_id=abstract_id,
        )

    def fill(self, info: StatusInfo, abstract_id: int | None) -> None:
        """Fill in the figures for the open abstract ``abstract_id``: a queue place read for another abstract
        is not its place (a new one pasted while the store is locked would show the one left's)."""
        info.curated = self.curated
        info.accepted, info.edited, info.rejected = self.accepted, self.edited, self.rejected
        info.queue_length = self.queue_length
        info.queue_position = self.queue_position if abstract_id == self.abstract_id else None


def few_shot_label(info: StatusInfo, brief: bool = False) -> str:
    """The few-shot toggle's state in words, e.g. "few-shot: on (4 of 37 curated)"; ``brief``: in few
    characters, e.g. "few-shot: on (4/37)"."""
    if brief:
        if info.few_shot is None:
            return "few-shot: –"
        if not info.few_shot or info.curated is None:
            return f"few-shot: {'on' if info.few_shot else 'off'}"
        used = "" if info.few_shot_used is None else f"{info.few_shot_used}/"
        return f"few-shot: on ({used}{info.curated})"
    if info.few_shot is None:
        return "few-shot: set once the model loads" if info.loading else "few-shot: no model loaded"
    if not info.few_shot:
        return "few-shot: off"
    if info.curated is None:  # the store is not read (yet)
        return "few-shot: on"
    if not info.curated:
        return "few-shot: no curated titles yet"
    if info.few_shot_used is None:
        return f"few-shot: on ({info.curated} curated)"
    return f"few-shot: on ({info.few_shot_used} of {info.curated} curated)"


class StatusBar(Horizontal):
    """One line at the bottom; spins while the model loads so the wait is visibly progressing."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info = StatusInfo()
        self._frame = 0
        self._spinner: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="status-model")
        yield Static(id="status-counts")

    def on_resize(self) -> None:
        self._update()

    def show(self, info: StatusInfo) -> None:
        self.info = info
        if info.loading and self._spinner is None:
            self._spinner = self.set_interval(0.1, self._spin)
        elif not info.loading and self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
        self._update()

    def text(self) -> str:
        """The whole line as plain text (what a screen reader or a test would read)."""
        return f"{self._model_text().plain} │ {self._counts_text(self._brief()).plain}"

    def _spin(self) -> None:
        self._frame = (self._frame + 1) % len(SPINNER)
        self._update()

    def _update(self) -> None:
        self.query_one("#status-model", Static).update(self._model_text())
        self.query_one("#status-counts", Static).update(self._counts_text(self._brief()))

    def _brief(self) -> bool:
        """Whether the counts must be worded briefly to leave the model's name whole (its device and
        speeds may still be cut); 2 is the counts' left padding."""
        name = len(self.info.model or "no model") + 1  # the spinner, while loading
        return name + 2 + self._counts_text(brief=False).cell_len > self.content_size.width

    def _model_text(self) -> Text:
        info = self.info
        text = Text()
        if info.loading:
            text.append(f"{SPINNER[self._frame]} loading {info.model}…", style="bold")
            return text
        text.append(info.model or "no model", style="bold")
        if info.device:
            text.append(f" on {info.device}")
        if info.first_token_seconds is not None:
            text.append(f" │ first token {info.first_token_seconds:.2f}s")
        if info.tokens_per_second is not None:
            text.append(f" │ {info.tokens_per_second:.1f} tok/s")
        return text

    def _counts_text(self, brief: bool) -> Text:
        info = self.info
        if info.store_unavailable:  # counts it cannot read must not look like an empty store
            text = Text("store unavailable" if brief else "store unavailable: decisions wait on screen", style="bold")
        elif info.accepted is None:
            text = Text("store counts unreadable" if info.counts_unreadable else "reading the store…")
        else:
            text = Text(f"✓{info.accepted} ✎{info.edited} ✗{info.rejected}")
        text.append(f" │ {few_shot_label(info, brief)}")
        if info.queue_length:
            position = "–" if info.queue_position is None else str(info.queue_position + 1)
            text.append(f" │ queue {position}/{info.queue_length}")
        return text
