"""The candidates panel: one row per candidate title, filled in live and marked by its decision.

Rows render user and model text through ``rich.text.Text`` so brackets are never read as markup.
The panel keeps a cursor (up/down, j/k), edits a row in place with a prefilled input, and only
follows new output to the bottom when the researcher is already looking at the bottom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Input, Static

from tui.messages import AbstractPasted, EditSubmitted

ACCEPTED, EDITED, REJECTED, OWN = "accepted", "edited", "rejected", "own"
MARKERS = {None: "·", ACCEPTED: "✓", EDITED: "✎", REJECTED: "✗", OWN: "★"}
# How close (in lines) to the bottom counts as "following the output".
FOLLOW_MARGIN = 2
STREAM_REPAINT_SECONDS = 1 / 30


@dataclass
class CandidateView:
    """What one row shows; ``pending`` counts its decisions that are not in the store yet.

    ``text`` is the candidate as generated (or the researcher's own title); an edit is kept apart in
    ``edited_text`` so that undoing it can show the original again.
    """

    text: str = ""
    finished: bool = False
    score: float | None = None
    flags: list[str] = field(default_factory=list)
    candidate_id: int | None = None
    decision: str | None = None
    decision_id: int | None = None  # its live decision's log id (None until saved): orders decisions
    reason: str | None = None
    edited_text: str | None = None
    pending: int = 0

    @property
    def shown_text(self) -> str:
        return self.edited_text if self.decision == EDITED and self.edited_text is not None else self.text


class CandidateRow(Horizontal):
    """A marker glyph, the title text and its score/flags; classes carry the decision for CSS."""

    def __init__(self, view: CandidateView) -> None:
        super().__init__(classes="candidate")
        self.view = view

    def compose(self) -> ComposeResult:
        yield Static(classes="marker")
        yield Static(classes="title")

    def on_mount(self) -> None:
        self.show_view()

    def show_view(self) -> None:
        """Re-render from ``self.view``: marker, literal text, meta line and state classes."""
        if not self.query(".marker"):
            return  # not composed yet: on_mount renders the view
        view = self.view
        for decision in (ACCEPTED, EDITED, REJECTED, OWN):
            self.set_class(view.decision == decision, f"-{decision}")
        self.set_class(view.pending > 0, "-pending")
        self.set_class(not view.finished, "-streaming")
        self.set_class(bool(view.flags), "-flagged")
        self.query_one(".marker", Static).update(Text(MARKERS[view.decision]))
        self.query_one(".title", Static).update(self._title_text())

    def _title_text(self) -> Text:
        view = self.view
        text = Text(view.shown_text or ("…" if not view.finished else "(empty)"))
        if not view.finished:
            text.append("▌", style="dim")
        details = []
        if view.score is not None:
            details.append(f"{view.score:.2f}")
        details.extend(flag.replace("_", " ") for flag in view.flags)
        if view.reason:
            details.append(f"reason: {view.reason}")
        if view.pending:
            details.append("not saved yet")
        if details:
            text.append("  " + " · ".join(details), style="italic dim")
        return text


class EditInput(Input):
    """The in-place editor: enter saves the edit, escape leaves the row as it was."""

    BINDINGS = [Binding("escape", "cancel_edit", "Cancel edit")]

    def __init__(self, view: CandidateView) -> None:
        super().__init__(value=view.shown_text, classes="edit-input", select_on_focus=False, compact=True)
        self.view = view

    def _close(self) -> None:
        row = self.parent
        candidate_list = row.parent
        row.remove_class("-editing")
        self.remove()
        candidate_list.focus()

    def action_cancel_edit(self) -> None:
        self._close()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        candidate_list = self.parent.parent
        self._close()
        candidate_list.post_message(EditSubmitted(self.view, event.value))


class CandidateList(VerticalScroll, can_focus=True):
    """The focusable list of candidate rows with a cursor."""

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False, tooltip="Highlight the previous candidate"),
        Binding("down,j", "cursor_down", "Down", show=False, tooltip="Highlight the next candidate"),
        # The scroll keys move the highlight too: scrolled out of view, it would still be what a, e and r act on.
        Binding("pageup", "page_cursor(-1)", "Page up", show=False, tooltip="Highlight the candidate a page up"),
        Binding("pagedown", "page_cursor(1)", "Page down", show=False, tooltip="Highlight the candidate a page down"),
        Binding("home", "first_row", "First", show=False, tooltip="Highlight the first candidate"),
        Binding("end", "last_row", "Last", show=False, tooltip="Highlight the last candidate"),
    ]

    cursor: reactive[int] = reactive(0, init=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[CandidateRow] = []
        self._streamed: set[int] = set()
        self._repaint: Timer | None = None

    @property
    def near_bottom(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - FOLLOW_MARGIN

    @property
    def current(self) -> CandidateRow | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    @property
    def editing(self) -> bool:
        """Whether a row's in-place editor is open (its text would be lost by replacing the rows)."""
        return bool(self.query(EditInput))

    def views(self) -> list[CandidateView]:
        return [row.view for row in self.rows]

    def clear_rows(self) -> None:
        self.rows = []
        self.remove_children()
        self.cursor = 0

    def add_rows(self, views: list[CandidateView]) -> None:
        """Append rows; follow them down only if the researcher was already at the bottom."""
        follow = self.near_bottom
        new_rows = [CandidateRow(view) for view in views]
        self.rows.extend(new_rows)
        self.mount_all(new_rows)
        self.call_after_refresh(self._mark_cursor)
        if follow:
            self.call_after_refresh(self._follow_output)

    def replace_rows(self, views: list[CandidateView], start: int = 0) -> None:
        """Replace rows from ``start`` on with ``views`` (a finished run re-ranks its candidates). A row that
        already shows one of ``views`` is moved into place rather than built anew, so that a title being
        edited in it stays open with what was typed."""
        reusable = {id(row.view): row for row in self.rows[start:]}
        new_rows = [reusable.pop(id(view), None) or CandidateRow(view) for view in views]
        for row in reusable.values():
            row.remove()
        follow = self.near_bottom
        previous = self.rows[start - 1] if start else None
        for row in new_rows:
            if row.parent is not self:
                self.mount(row)
            if previous is None:
                self.move_child(row, before=0)
            else:
                self.move_child(row, after=previous)
            previous = row
        self.rows = self.rows[:start] + new_rows
        self.call_after_refresh(self._mark_cursor)
        if follow:
            self.call_after_refresh(self._follow_output)
        self.cursor = min(self.cursor, max(len(self.rows) - 1, 0))

    def show_streamed(self, index: int) -> None:
        """Mark a row whose text grew; rows are re-rendered together a few dozen times a second.

        N candidates each grow every decoding step; one repaint per frame instead of one per token
        leaves the CPU (and the GIL) to the generation thread.
        """
        self._streamed.add(index)
        if self._repaint is None:
            self._repaint = self.set_timer(STREAM_REPAINT_SECONDS, self._repaint_streamed)

    def _repaint_streamed(self) -> None:
        self._repaint = None
        follow = self.near_bottom
        for index in sorted(self._streamed):
            if index < len(self.rows):
                self.rows[index].show_view()
        self._streamed.clear()
        if follow and self.max_scroll_y:
            self.call_after_refresh(self._follow_output)

    def _follow_output(self) -> None:
        """Scroll towards the newest rows, but never past the highlighted one: the keys act on it."""
        self.scroll_end(animate=False, immediate=True)
        if self.current is not None:
            self.scroll_to_widget(self.current, animate=False, immediate=True)

    def index_of(self, view: CandidateView) -> int | None:
        return next((i for i, row in enumerate(self.rows) if row.view is view), None)

    def show_view(self, view: CandidateView) -> None:
        """Re-render the row showing ``view`` (if it is still on screen)."""
        index = self.index_of(view)
        if index is not None:
            self.rows[index].show_view()

    def remove_view(self, view: CandidateView) -> None:
        index = self.index_of(view)
        if index is None:
            return
        self.rows.pop(index).remove()
        self.cursor = min(self.cursor, max(len(self.rows) - 1, 0))
        self._mark_cursor()

    def start_edit(self, index: int) -> None:
        """Swap the row's text for a prefilled input; its message says what was typed. While another title is
        being edited, that edit gets the focus back instead: one edit at a time."""
        if self.resume_edit():
            return
        row = self.rows[index]
        editor = EditInput(row.view)
        row.add_class("-editing")
        row.mount(editor)
        editor.focus()

    def resume_edit(self) -> bool:
        """Highlight the row being edited and focus its input (tab or a click may have moved the focus away), so
        that enter and escape act on the edit again; False if no title is being edited."""
        editor = next(iter(self.query(EditInput)), None)
        if editor is None:
            return False
        self.cursor = self.rows.index(editor.parent)
        editor.focus()
        return True

    def watch_cursor(self) -> None:
        self._mark_cursor()

    def _mark_cursor(self) -> None:
        for position, row in enumerate(self.rows):
            row.set_class(position == self.cursor, "-cursor")
        if self.current is not None:
            self.scroll_to_widget(self.current, animate=False)

    def on_click(self, event: events.Click) -> None:
        """A click highlights the row under it: a, e and r then act on the candidate the researcher pointed at,
        not on one highlighted elsewhere."""
        clicked = event.widget
        while clicked is not None and clicked is not self and not isinstance(clicked, CandidateRow):
            clicked = clicked.parent
        if isinstance(clicked, CandidateRow) and clicked in self.rows:
            self.cursor = self.rows.index(clicked)

    def on_paste(self, event: events.Paste) -> None:
        """Text pasted here (not into a title being edited, whose input takes it) is meant for the abstract:
        the app puts it there rather than drop it."""
        if self.has_focus:
            event.stop()
            self.post_message(AbstractPasted(event.text))

    def action_cursor_up(self) -> None:
        if self.cursor > 0:
            self.cursor -= 1

    def action_cursor_down(self) -> None:
        if self.cursor < len(self.rows) - 1:
            self.cursor += 1

    def action_page_cursor(self, direction: int) -> None:
        """Highlight the row about one screen away (rows differ in height: long titles wrap)."""
        if self.current is None:
            return
        target = self.current.virtual_region.y + direction * self.scrollable_content_region.height
        if direction > 0:
            below = [i for i, row in enumerate(self.rows) if i > self.cursor and row.virtual_region.y <= target]
            self.cursor = below[-1] if below else min(self.cursor + 1, len(self.rows) - 1)
        else:
            above = [i for i, row in enumerate(self.rows) if i < self.cursor and row.virtual_region.y >= target]
            self.cursor = above[0] if above else max(self.cursor - 1, 0)

    def action_first_row(self) -> None:
        self.cursor = 0

    def action_last_row(self) -> None:
        self.cursor = max(len(self.rows) - 1, 0)
