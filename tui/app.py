"""The titlecraft curation app: paste an abstract, watch candidates stream in, decide, review, export.

The app is a shell over core. Three kinds of slow work run in thread workers that only post messages:
loading the model, generating (one run at a time; a new run or escape sets the old run's cancel event),
and writing to the store (one write at a time, in order). Writes that fail stay queued and visibly
pending; they are retried with the next decision, so a locked or read-only database never loses one.

Few-shot from my titles (``f``): while it is on and the store has curated pairs, each run's prompt also
holds the curated pairs whose abstracts are most like this one (BM25, core/retrieve.py), so accepted
titles steer the next candidates without retraining (tui/few_shot.py keeps the index until the store's
decisions change).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.worker import get_current_worker
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import var
from textual.widgets import Footer, Static, TextArea

from core.errors import StoreUnavailable
from core.prompts import CHAT
from core.store import normalise_abstract
from tui.curation import PendingWrite, Session, apply_history, views_from_store
from tui.few_shot import FEW_SHOT_EXAMPLES, CuratedExamples
from tui.messages import (
    AbstractPasted,
    CandidateStreamed,
    EditSubmitted,
    ExportFailed,
    ExportFinished,
    FewShotUnavailable,
    GenerationFailed,
    GenerationFinished,
    ModelLoaded,
    ModelLoadFailed,
    StatusRead,
    StoreOpened,
    StoreOpenFailed,
    TokensCounted,
    WriteFailed,
    WriteSaved,
    error_text,
)
from tui.screens.export import ExportScreen
from tui.screens.help import HelpScreen
from tui.screens.prompt import TextPrompt
from tui.screens.review import ReviewScreen
from tui.screens.settings import SETTING_FIELDS, SettingsScreen
from tui.widgets.candidates import ACCEPTED, EDITED, OWN, REJECTED, CandidateList, CandidateView
from tui.widgets.editor import AbstractEditor
from tui.widgets.status_bar import StatusBar, StatusInfo, StoreFigures, model_label

SAMPLING_SETTING = "tui.sampling"
FEW_SHOT_SETTING = "tui.few_shot"
DEFAULT_SAMPLING = {"n": 5, "temperature": 0.8, "top_p": 0.95, "max_new_tokens": 40, "oversample": 3, "diversity": 1.5}
TOKEN_COUNT_DELAY = 0.3  # seconds of typing pause before the abstract is re-tokenised


class TitlecraftApp(App[None]):
    """Curate titles for abstracts with a small model; every decision lands in the store at once."""

    CSS_PATH = Path(__file__).parent / "app.tcss"
    TITLE = "titlecraft"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    # Short terminals get tighter dialogs, and the shortest (under 20 rows) borderless buttons in them.
    VERTICAL_BREAKPOINTS = [(0, "-shortest"), (20, "-short"), (32, "-tall")]
    ENABLE_COMMAND_PALETTE = False
    # The live generation run (id, its rows, cancel event); the footer dims escape without one.
    running: var[dict | None] = var(None, bindings=True)
    BINDINGS = [
        Binding(
            "ctrl+g", "generate", "Generate", priority=True, tooltip="Generate candidates (decided ones stay)"
        ),
        # Keys comes early: at 80 columns the footer cuts off its end, and ? leads to every other key.
        Binding("question_mark", "help", "Keys", tooltip="Show all keys"),
        Binding("a", "accept", "Accept", tooltip="Accept the highlighted candidate"),
        Binding("e", "edit", "Edit", tooltip="Edit the highlighted candidate in place"),
        Binding("r", "reject", "Reject", tooltip="Reject the highlighted candidate (optional reason)"),
        Binding("t", "own_title", "Own", tooltip="Write your own title"),
        Binding("u", "undo", "Undo", tooltip="Undo the last decision on this abstract"),
        Binding("m", "more", "More", tooltip="Append more candidates for the same abstract"),
        Binding("escape", "cancel", "Stop", tooltip="Cancel the running generation"),
        Binding("n", "next_abstract", "Next", show=False, tooltip="Next untitled abstract in the import queue"),
        Binding("p", "previous_abstract", "Prev", show=False, tooltip="Previous abstract in the imported queue"),
        Binding("v", "review", "Review", tooltip="Review curated pairs"),
        # Export is rare enough to live on the ? screen only: the footer needs its room at 100 columns.
        Binding("x", "export", "Export", show=False, tooltip="Export curated pairs"),
        Binding("s", "settings", "Settings", show=False, tooltip="Sampling settings"),
        Binding("f", "few_shot", "Few-shot", tooltip="Few-shot from my titles: on / off"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit"),
    ]
    # Actions of the main screen: hidden while a dialog or the review screen is up.
    MAIN_ACTIONS = frozenset(binding.action for binding in BINDINGS) - {"quit"}
    # Single-letter keys: the abstract editor takes them as text while it has focus.
    LETTER_ACTIONS = MAIN_ACTIONS - {"generate", "cancel"}

    def __init__(
        self,
        model_spec: str = "embedded",
        db_path: str | Path | None = None,
        device: str = "auto",
    ) -> None:
        super().__init__()
        self.model_spec = model_spec
        self.db_path = db_path
        self.device = device
        self.generator: Any = None
        self.model_info: Any = None
        self.model_error: str | None = None
        self.store: Any = None  # the writer thread's connection
        self.reader: Any = None  # the UI thread's, for quick reads
        self.sampling = dict(DEFAULT_SAMPLING)
        self.session: Session | None = None
        self.pending: deque[PendingWrite] = deque()
        self.writing = False
        self.run_id = 0
        self.last_run: Any = None
        self.quit_requested = False
        self.draft_warned: str | None = None  # the typed abstract that leaving would drop, once told so
        self._token_timer = None
        self.few_shot_choice: bool | None = None  # the user's saved choice; None: the model's default
        self.store_figures: StoreFigures | None = None  # the status line's store part, as last read
        self.status_error: str | None = None  # the last failed status read's error, told once
        self.store_error: str | None = None  # why the store could not be opened, until it opens
        self.last_few_shot: int | None = None  # examples in the last run's prompt; None: it ran without
        self.curated_examples = CuratedExamples()

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="body"):
            with Vertical(id="abstract-pane"):
                yield Static(Text("Abstract"), classes="pane-title")
                yield AbstractEditor(id="editor")
            with Vertical(id="candidates-pane"):
                yield Static(Text("Candidates"), classes="pane-title")
                yield CandidateList(id="candidates")
        yield StatusBar(id="status")
        yield Footer(compact=True)

    @property
    def editor(self) -> AbstractEditor:
        return self.query_one(AbstractEditor)

    @property
    def candidates(self) -> CandidateList:
        return self.query_one(CandidateList)

    def on_mount(self) -> None:
        self.editor.text_area.focus()
        self._show_status()
        self._load_model()
        self._open_store_worker()

    def on_unmount(self) -> None:
        if self.running:
            self.running["cancel"].set()
        if self.reader is not None:
            self.reader.close()
        if self.store is not None:
            self.store.close()  # waits for a write in flight: the store serialises its calls

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide main-screen keys under dialogs; dim (None) keys that cannot act right now."""
        if action in self.MAIN_ACTIONS and self.screen is not self.screen_stack[0]:
            return False
        if action == "cancel" and self.running is None:
            return None
        if action in self.LETTER_ACTIONS and isinstance(self.focused, TextArea):
            return None
        return True

    def notify_error(self, message: str) -> None:
        """Errors carry paths and user text: never read them as markup."""
        self.notify(message, severity="error", markup=False, timeout=8)

    # -- model -------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="model")
    def _load_model(self) -> None:
        try:
            from core.generate import TitleGenerator
            from core.models import load_model

            model, tokenizer, info = load_model(self.model_spec, device=self.device)
            generator = TitleGenerator(model, tokenizer, info)
        except Exception as error:  # noqa: BLE001 - any failure becomes a notification, never a crash
            self.post_message(ModelLoadFailed(error_text(error)))
        else:
            self.post_message(ModelLoaded(generator, info))

    def on_model_loaded(self, message: ModelLoaded) -> None:
        self.generator = message.generator
        self.model_info = message.info
        self._show_status()
        self._count_tokens()

    def on_model_load_failed(self, message: ModelLoadFailed) -> None:
        self.model_error = message.error
        self.editor.show_token_note("tokens: no model loaded")
        self._show_status()
        self.notify_error(f"The model could not be loaded: {message.error}")

    # -- store -------------------------------------------------------------------------------------

    @work(thread=True, group="store")
    def _open_store_worker(self) -> None:
        try:
            store = _open_store(self.db_path)
        except Exception as error:  # noqa: BLE001
            self.post_message(StoreOpenFailed(error_text(error)))
        else:
            self.post_message(StoreOpened(store, _open_reader(store)))

    def on_store_opened(self, message: StoreOpened) -> None:
        if self.store is not None:  # the start-up open and a retried write both got there
            for store in (message.store, message.reader):
                if store is not None:
                    store.close()
            return
        self.store, self.reader = message.store, message.reader
        self.store_error = None
        self._read_settings()
        self._refresh_status()
        self._flush_writes()

    def on_store_open_failed(self, message: StoreOpenFailed) -> None:
        self.store_error = message.error
        self._show_status()
        self.notify_error(
            f"The store could not be opened: {message.error}. Decisions will be kept pending on screen "
            "and saved once it works."
        )

    @property
    def read_store(self) -> Any:
        """The connection for reads: the read-only one, so that no read waits behind a write held up by
        another process's lock; the writer's until that one is open."""
        return self.reader or self.store

    @property
    def few_shot_store(self) -> Any:
        """Where a run's few-shot examples come from: the read connection when few-shot is on, else None."""
        return self.read_store if self.few_shot else None

    def _read(self, read: Callable[[Any], Any], default: Any = None) -> Any:
        """A quick read on the UI thread; a failing store gives ``default`` and a notification."""
        if self.store is None:
            return default
        try:
            return read(self.read_store)
        except Exception as error:  # noqa: BLE001
            self.notify_error(f"Reading the store failed: {error_text(error)}")
            return default

    def _read_settings(self) -> None:
        """Take up the stored settings, except those changed here while the store could not be opened:
        their writes still wait, and the researcher's newer choice wins."""
        waiting = {write.setting for write in self.pending}
        saved = {}
        if SAMPLING_SETTING not in waiting:
            saved = self._read(lambda store: store.get_setting(SAMPLING_SETTING, {}), {}) or {}
        for field in SETTING_FIELDS:
            if field.key in saved:
                try:
                    self.sampling[field.key] = field.parse(saved[field.key])
                except ValueError:
                    continue
        if FEW_SHOT_SETTING in waiting:
            return
        few_shot = self._read(lambda store: store.get_setting(FEW_SHOT_SETTING, {}), {})
        if isinstance(few_shot, dict) and isinstance(few_shot.get("enabled"), bool):
            self.few_shot_choice = few_shot["enabled"]

    def submit(self, write: PendingWrite) -> None:
        """Queue a store write behind any earlier ones and start the writer if it is idle."""
        self.quit_requested = False
        self.pending.append(write)
        self._flush_writes()

    def _flush_writes(self) -> None:
        if self.writing or not self.pending:
            return
        self.writing = True
        self._write(self.pending[0], self.store)

    @work(thread=True, group="store")
    def _write(self, write: PendingWrite, store: Any) -> None:
        opened = None
        try:
            if store is None:
                store = opened = _open_store(self.db_path)
            result = write.apply(store)
        except Exception as error:  # noqa: BLE001 - the user is told why; see on_write_failed
            retryable = store is None or isinstance(error, StoreUnavailable)  # None: it did not open
            outcome = WriteFailed(write, error_text(error), retryable)
        else:
            outcome = WriteSaved(write, result)
        if opened is not None:
            self.post_message(StoreOpened(opened, _open_reader(opened)))
        self.post_message(outcome)

    def on_write_saved(self, message: WriteSaved) -> None:
        self.writing = False
        if self.pending and self.pending[0] is message.write:
            self.pending.popleft()
        message.write.on_saved(message.result)
        self._refresh_status()
        self._flush_writes()

    def on_write_failed(self, message: WriteFailed) -> None:
        """An unavailable store keeps the write queued for a retry with the next decision; a write the
        store refuses (e.g. an undo with nothing left to undo) is dropped and its row reverted, so that
        it cannot hold up the writes queued behind it."""
        self.writing = False
        write = message.write
        if message.retryable:
            waiting = len(self.pending)
            self.notify_error(
                f"Could not save {write.description}: {message.error}. "
                f"{waiting} change{'s' if waiting != 1 else ''} pending; retried with your next decision."
            )
            return
        if self.pending and self.pending[0] is write:
            self.pending.popleft()
        if write.revert is not None:
            write.revert()
        self.notify_error(f"Could not save {write.description}: {message.error}. It was dropped.")
        self._refresh_status()
        self._flush_writes()

    # -- abstract and token count ------------------------------------------------------------------

    @on(TextArea.Changed, "#abstract")
    def _abstract_changed(self) -> None:
        if self._token_timer is not None:
            self._token_timer.stop()
        self._token_timer = self.set_timer(TOKEN_COUNT_DELAY, self._count_tokens)

    def _count_tokens(self) -> None:
        if self.generator is None or not self.is_running:  # the typing-pause timer can fire as the app quits
            return
        text = self.editor.text
        if not text.strip():
            self.editor.show_token_note("0 tokens")
            return
        self._count_and_prefill(text, self.sampling["max_new_tokens"], self.few_shot_store)

    @work(thread=True, exclusive=True, group="prefill")
    def _count_and_prefill(self, abstract: str, max_new_tokens: int, few_shot_store: Any = None) -> None:
        """Count the edited abstract's tokens off the UI thread (a long one takes a noticeable moment),
        then run its prompt while the researcher reads it, so that Generate starts decoding at once."""
        try:
            tokens, dropped = self.generator.count_tokens(abstract, max_new_tokens)
        except Exception as error:  # noqa: BLE001
            self.post_message(TokensCounted(abstract, None, error=error_text(error)))
            return
        self.post_message(TokensCounted(abstract, tokens, dropped))
        try:
            examples = []
            if few_shot_store is not None:
                examples = self.curated_examples.for_prompt(few_shot_store, self.generator, abstract, max_new_tokens)
            self.generator.prefill(abstract, max_new_tokens, examples)
        except Exception:  # noqa: BLE001, S110 - only a head start: Generate runs the prompt and reports errors
            pass

    def on_tokens_counted(self, message: TokensCounted) -> None:
        if message.abstract != self.editor.text:
            return  # the abstract changed meanwhile: its own count follows
        if message.tokens is None:
            self.editor.show_token_note(f"tokens: could not count ({message.error})")
        else:
            self.editor.show_token_count(message.tokens, message.dropped)

    def on_abstract_pasted(self, message: AbstractPasted) -> None:
        """An abstract pasted while the candidates have the focus (after deciding on the last one's) replaces the
        abstract in the editor, and the editor takes the focus (ctrl+z there takes the paste back); a typed
        abstract not saved yet is never replaced."""
        if not message.text.strip():
            return
        if self._unsaved_draft() is not None:
            self.notify(
                "The abstract in the editor is not saved (ctrl+g saves it with its candidates), so the paste did "
                "not replace it: tab to the abstract to paste into it.",
                severity="warning",
            )
            return
        area = self.editor.text_area
        area.replace(message.text, (0, 0), area.document.end)
        area.move_cursor((0, 0))
        area.focus()

    def _editor_is_session(self) -> bool:
        """Whether the editor shows the open session's abstract, as the store tells abstracts apart
        (whitespace and accent encoding aside: a PDF's "é" may be "e" and a combining accent)."""
        return self.session is not None and normalise_abstract(self.session.text) == normalise_abstract(
            self.editor.text
        )

    def _unsaved_draft(self) -> str | None:
        """The editor's text when it is an abstract the store does not have yet: typed or edited, with no
        candidates generated for it (ctrl+g saves it); None when there is none."""
        text = normalise_abstract(self.editor.text)
        return text if text and not self._editor_is_session() else None

    def _draft_kept(self, opening: str) -> bool:
        """Whether opening the abstract ``opening`` must wait: the first attempt over another, unsaved typed
        abstract says what it would drop; the same attempt again drops it."""
        draft = self._unsaved_draft()
        if draft is None or draft == self.draft_warned or draft == normalise_abstract(opening):
            return False
        self.draft_warned = draft
        self.notify(
            "The abstract in the editor is not saved: ctrl+g saves it with its candidates. "
            "Open the other abstract again to leave it.",
            severity="warning",
        )
        return True

    def _editor_text_refused(self) -> bool:
        """Tell why the editor's text cannot be curated now, if it cannot: it is empty, or it is a new
        abstract while a title is being edited (the edit's row would be cleared with the old rows)."""
        if not normalise_abstract(self.editor.text):
            self.notify_error("The abstract is empty: paste or type one first.")
            return True
        if self.candidates.editing and not self._editor_is_session():
            self.candidates.resume_edit()
            self.notify(
                "A title is being edited: enter saves it, escape leaves it, then go on with the edited abstract.",
                severity="warning",
            )
            return True
        return False

    def _session_for_editor(self) -> Session | None:
        """The session for the editor's text: the current one if unchanged, the stored abstract's if it was
        curated before (its rows and decisions come back, so u and the titles to avoid see them), the left
        session's if its writes still wait for the store (which does not know the abstract yet), else a
        new abstract."""
        if self._editor_text_refused():
            return None
        if self._editor_is_session():
            return self.session
        text = self.editor.text
        stored = self._read(lambda store: store.find_abstract(text))
        if stored is not None:
            self.open_abstract(stored)
            if self.session is not None and self.session.abstract_id == stored:
                return self.session
        same_text = normalise_abstract(text)
        waiting = self._session_with_unsaved_writes(lambda left: normalise_abstract(left.text) == same_text)
        session = waiting or Session(text=text)
        self._leave_session()
        self.session = session
        self._cancel_run()  # a run for the previous abstract must not land on this one
        self.candidates.clear_rows()
        self._refresh_status()
        if waiting is not None:
            self.candidates.add_rows(waiting.left_rows)
            return waiting

        def saved(abstract_id: int) -> None:
            session.abstract_id = abstract_id
            self._refresh_status()

        self.submit(
            PendingWrite(
                "the abstract",
                lambda store: store.add_abstract(session.text, source=session.source),
                saved,
                session=session,
            )
        )
        return session

    def open_abstract(self, abstract_id: int) -> None:
        """Show a stored abstract with its candidates and decisions (queue navigation, review)."""
        if self.candidates.resume_edit():
            self.notify(
                "A title is being edited: enter saves it, escape leaves it, then open another abstract.",
                severity="warning",
            )
            return
        record = self._read(lambda store: store.abstract(abstract_id))
        if record is None:  # told why; the abstract on screen, and a run for it, go on
            return
        if self._draft_kept(record.text):
            return
        self._leave_session()
        self._cancel_run()
        waiting = self._session_with_unsaved_writes(lambda left: left.abstract_id == abstract_id)
        if waiting is not None:
            self.session, views = waiting, waiting.left_rows
        else:
            candidates = self._read(lambda store: store.candidates(abstract_id), [])
            history = self._read(lambda store: store.history(abstract_id), [])
            generations = self._read(lambda store: store.generations(abstract_id), [])
            self.session = Session(text=record.text, source=record.source, abstract_id=abstract_id)
            views = views_from_store(candidates, history, generations)
        self.editor.load(record.text)
        self.candidates.clear_rows()
        self.candidates.add_rows(views)
        self._refresh_status()

    def _leave_session(self) -> None:
        """Remember the rows of the abstract being left, for reopening it: a run going on is stopped, so they
        are the rows as they were before it."""
        if self.session is None:
            return
        self.session.left_rows = self._rows_before(self.running) if self.running else self.candidates.views()

    def _session_with_unsaved_writes(self, matches: Callable[[Session], bool]) -> Session | None:
        """A left session that ``matches`` with writes still waiting for the store: its rows, not the store's,
        show those decisions (and the waiting writes update those rows once saved)."""
        return next(
            (
                write.session
                for write in self.pending
                if write.session is not None and write.session.left_rows is not None and matches(write.session)
            ),
            None,
        )

    # -- generation --------------------------------------------------------------------------------

    def action_generate(self) -> None:
        self._start_run(more=False)

    def action_more(self) -> None:
        """More candidates for the abstract on screen; once its text was edited, they are a new run for
        the new text (the rows shown belong to the old one)."""
        edited = self.session is not None and not self._editor_is_session()
        rows_replaced = edited and bool(self.candidates.rows)
        if self._start_run(more=bool(self.candidates.rows) and not edited) and rows_replaced:
            self.notify("The abstract was edited, so these candidates are for its new text.")

    def action_cancel(self) -> None:
        if self.running is not None:
            self.running["cancel"].set()

    def _cancel_run(self) -> None:
        if self.running is not None:
            self.running["cancel"].set()
            self.running = None

    def _start_run(self, more: bool) -> bool:
        """Start a run (``more``: appended to the rows shown); False, with the reason told, if none started."""
        if self.generator is None:
            why = f"it failed to load: {self.model_error}" if self.model_error else "it is still loading"
            self.notify_error(f"No model to generate with: {why}.")
            return False
        if more and self.running is not None:
            if self.running["cancel"].is_set():  # escape was pressed: the run ends at its next step
                self.notify("The run is stopping: press m again once its candidates are kept.", severity="warning")
            else:
                self.notify("Candidates are still coming: wait, or press escape to stop them.", severity="warning")
            return False
        if self.candidates.resume_edit():
            self.notify("A title is being edited: enter saves it, escape leaves it, then generate.", severity="warning")
            return False
        session = self.session if more else self._session_for_editor()
        if session is None:
            return False
        stopped = self.running
        self._cancel_run()
        from core.generate import SamplingParams

        params = SamplingParams(**self.sampling)
        kept, before = None, []
        if not more:
            # A new run replaces the undecided rows only: titles decided on stay in view, where u can
            # still undo them, and are not offered again. A run it stops is never recorded, so the rows
            # it replaces are those from before that run, not that run's half-written ones.
            before = self._rows_before(stopped) if stopped else self.candidates.views()
            kept = [view for view in before if view.decision is not None]
            self.candidates.replace_rows(kept)
        shown = tuple(view.text for view in self.candidates.views() if view.decision != OWN)
        self.run_id += 1
        cancel = threading.Event()
        first_row = len(self.candidates.rows)
        slots = [CandidateView() for _ in range(1 if params.temperature == 0 else params.n)]  # greedy: one
        self.running = {
            "id": self.run_id,
            "cancel": cancel,
            "session": session,
            "slots": slots,
            "kept": kept,
            "before": before,
        }
        self.candidates.add_rows(slots)
        self.candidates.cursor = first_row
        self.candidates.focus()
        self._generate(self.run_id, session.text, params, cancel, len(shown), shown, self.few_shot_store)
        return True

    @work(thread=True, exclusive=True, group="generate")
    def _generate(
        self, run_id: int, abstract: str, params: Any, cancel, start_index: int, avoid, few_shot_store: Any = None
    ) -> None:
        """One run; with ``few_shot_store`` (few-shot on), its prompt also holds the closest curated pairs.
        That store is the read connection: on the writer's, a decision waiting for another process's lock
        would hold up the run for as long as it waits (the store serialises each connection's calls)."""

        def stream(event) -> None:
            self.post_message(CandidateStreamed(run_id, event.index - start_index, event.text, event.finished))

        examples: list = []
        if few_shot_store is not None:
            try:
                examples = self.curated_examples.for_prompt(
                    few_shot_store, self.generator, abstract, params.max_new_tokens
                )
            except Exception as error:  # noqa: BLE001 - the run goes ahead without examples
                self.post_message(FewShotUnavailable(error_text(error)))
        try:
            result = self.generator.generate(
                abstract,
                params,
                examples=examples,
                on_event=stream,
                cancel=cancel,
                start_index=start_index,
                avoid=avoid,
            )
        except Exception as error:  # noqa: BLE001 - CUDA OOM, empty abstract, bugs: all become notifications
            self.post_message(GenerationFailed(run_id, error_text(error)))
        else:
            few_shot = len(examples) if few_shot_store is not None else None
            self.post_message(GenerationFinished(run_id, result, few_shot))

    def on_few_shot_unavailable(self, message: FewShotUnavailable) -> None:
        self.notify(
            f"Few-shot examples were not available ({message.error}); generating without them.",
            severity="warning",
            markup=False,
            timeout=8,
        )

    def _is_current(self, run_id: int) -> bool:
        return self.running is not None and self.running["id"] == run_id

    def _first_row(self, run: dict) -> int:
        """Where a run's rows start now: not a fixed index, since rows above them can go while it runs (an
        own title undone)."""
        return self.candidates.index_of(run["slots"][0])

    def on_candidate_streamed(self, message: CandidateStreamed) -> None:
        if not self._is_current(message.run_id) or message.index >= len(self.running["slots"]):
            return
        view = self.running["slots"][message.index]
        view.text = message.text
        view.finished = message.finished
        self.candidates.show_streamed(self.candidates.index_of(view))

    def on_generation_failed(self, message: GenerationFailed) -> None:
        if not self._is_current(message.run_id):
            return
        run = self.running
        self.running = None
        self.notify_error(f"Generation failed: {message.error}")
        self._take_back_run(run)

    def _rows_before(self, run: dict) -> list[CandidateView]:
        """The rows on screen without ``run``'s own, and with the undecided rows it replaced (a new run) back
        where they were: what the store shows of the abstract until the run is recorded. Rows written while
        it ran (your own titles) come last."""
        slots = {id(view) for view in run["slots"]}
        on_screen = [view for view in self.candidates.views() if id(view) not in slots]
        kept = {id(view) for view in run["kept"] or ()}
        shown = {id(view) for view in on_screen} | {id(view) for view in run["before"] if id(view) not in kept}
        earlier = {id(view) for view in run["before"]}
        back = [view for view in run["before"] if id(view) in shown]
        return back + [view for view in on_screen if id(view) not in earlier]

    def _take_back_run(self, run: dict) -> None:
        """Take off the screen a run that added no candidate (stopped at once, failed, only repeats). It is
        not recorded, so the store still holds the undecided rows a new run replaced (reopening the abstract
        shows them): they come back on screen too."""
        self.candidates.replace_rows(self._rows_before(run))
        replaced = len(run["before"]) - len(run["kept"] or ())
        if replaced:
            noun = "candidate it was to replace is" if replaced == 1 else "candidates it was to replace are"
            self.notify(f"The run added no candidate, so the {replaced} {noun} back.")

    def _rows_added_during(self, run: dict) -> list[CandidateView]:
        """Rows below a run's own (your own titles written while it ran): kept when its rows are replaced."""
        return [
            view
            for view in self.candidates.views()[self._first_row(run) :]
            if all(view is not slot for slot in run["slots"])
        ]

    def on_generation_finished(self, message: GenerationFinished) -> None:
        if not self._is_current(message.run_id):
            return
        run, result = self.running, message.result
        self.running = None
        self.last_run = result
        self.last_few_shot = message.few_shot
        views = [
            CandidateView(text=c.text, finished=True, score=c.score, flags=list(c.flags)) for c in result.candidates
        ]
        own_above = [view for view in self.candidates.views()[: self._first_row(run)] if view.decision == OWN]
        highlighted = self.candidates.current
        if views:
            self.candidates.replace_rows(views + self._rows_added_during(run), start=self._first_row(run))
            if highlighted is not None:
                self._highlight_again(run, highlighted.view, views)
        self._show_status()
        if result.notice:
            self.notify(result.notice, severity="warning", markup=False, timeout=8)
        if result.cancelled:
            self.notify(f"Generation stopped: {len(views)} candidate(s) kept as far as they got.", markup=False)
        elif not views:
            self.notify(_no_new_candidates(result.params), severity="warning", timeout=8)
        if views:
            self._record_candidates(run["session"], result, views, message.few_shot or 0, run["kept"], own_above)
        else:
            self._take_back_run(run)

    def _highlight_again(self, run: dict, highlighted: CandidateView, views: list[CandidateView]) -> None:
        """Keep the highlight on the title it was on once a run's rows are re-ranked, since a, e and r act on
        it: a row the run did not replace keeps it, and a streamed title the researcher moved it to keeps it
        in its ranked place. Left on the run's first row, where the run put it, it stays on the top one."""
        index = self.candidates.index_of(highlighted)
        if index is None and highlighted is not run["slots"][0]:
            index = next((self.candidates.index_of(view) for view in views if view.text == highlighted.text), None)
        if index is not None:
            self.candidates.cursor = index

    def _record_candidates(
        self,
        session: Session,
        result: Any,
        views: list[CandidateView],
        few_shot: int,
        kept: list | None,
        own_above: list[CandidateView],
    ) -> None:
        """Record the run with its provenance, then give each row its candidate id.

        A "more" run is recorded as a generation of its own: it has its own seed and timings. Its params
        also say how many curated few-shot examples its prompt held (``few_shot_examples``, 0 without),
        whether it was "more", for a new run (``kept`` rows: it replaced the others) the candidates it
        kept in view (``kept``): reopening shows those, whatever was decided or undone since, and the own
        titles shown above its rows (``own_titles_above``), so that reopening puts every own title where
        it was without going by timestamps, which are late for writes that waited for a locked store.
        """
        rows = [{"text": v.text, "score": v.score, "flags": v.flags} for v in views]
        spec = self.model_info.spec
        params = {**asdict(result.params), "few_shot_examples": few_shot, "more": kept is None}

        def apply(store) -> list[int]:
            # The ids are known now: the writes that record those rows ran before this one.
            recorded = {**params, "own_titles_above": [view.decision_id for view in own_above if view.decision_id]}
            if kept is not None:
                recorded["kept"] = [view.candidate_id for view in kept if view.candidate_id is not None]
            _, ids = store.record_generation(
                session.abstract_id,
                spec,
                result.model,
                recorded,
                result.params.seed,
                result.device,
                result.seconds,
                result.first_token_seconds,
                rows,
            )
            return ids

        def saved(ids: list[int]) -> None:
            for view, candidate_id in zip(views, ids, strict=True):
                view.candidate_id = candidate_id

        self.submit(PendingWrite("the generated candidates", apply, saved, session=session))

    # -- decisions ---------------------------------------------------------------------------------

    def _decidable_row(self) -> int | None:
        """The highlighted row if a decision can be made on it now, else tell the user why not."""
        rows = self.candidates
        row = rows.current
        if row is None:
            self.notify("No candidate to decide on: press ctrl+g to generate.", severity="warning")
            return None
        in_run = self.running is not None and any(row.view is slot for slot in self.running["slots"])
        if not row.view.finished or in_run:  # a run's rows are re-ranked, so replaced, when it ends
            self.notify("That candidate is still being written (escape stops the run).", severity="warning")
            return None
        if row.view.decision == OWN:
            self.notify(
                "That is your own title: nothing to accept, edit or reject (u takes back decisions, latest first).",
                severity="warning",
            )
            return None
        return rows.cursor

    def _decide(self, index: int, description: str, change: Callable[[CandidateView], None], apply) -> None:
        """Show a decision at once (marked pending), then save it; undo before saving reverts it."""
        view = self.candidates.rows[index].view
        before = (view.decision, view.reason, view.edited_text)
        change(view)
        view.pending += 1
        self.candidates.show_view(view)

        def saved(decision_id: int) -> None:
            view.pending -= 1
            view.decision_id = decision_id
            self.candidates.show_view(view)

        def revert() -> None:
            view.decision, view.reason, view.edited_text = before
            view.pending -= 1
            self.candidates.show_view(view)

        self.submit(PendingWrite(description, lambda store: apply(store, view), saved, revert, self.session, view=view))

    def _already_decided(self, view: CandidateView, decision: str) -> bool:
        """Whether ``decision`` on ``view`` would change nothing, so must not be logged (one u would then
        seem to do nothing): the row is rejected already, or its acceptance is the abstract's title, no later
        accept, edit or own title on another row superseding it. While an undo waits for the store the rows
        may still show what it takes back, so then the key counts as pressed."""
        waiting = [write for write in self.pending if write.session is self.session]
        if view.decision != decision or any(write.undo for write in waiting):
            return False
        if decision == REJECTED:
            return True

        def decided_when(row: CandidateView) -> tuple[int, int]:
            """Saved decisions in log order, then those waiting for the store in queue order."""
            places = [place for place, write in enumerate(waiting) if write.view is row]
            return (1, places[-1]) if places else (0, row.decision_id or 0)

        titles = [row for row in self.candidates.views() if row.decision in (ACCEPTED, EDITED, OWN)]
        return max(titles, key=decided_when) is view

    def action_accept(self) -> None:
        index = self._decidable_row()
        if index is None:
            return
        if self._already_decided(self.candidates.rows[index].view, ACCEPTED):
            self.notify("Already accepted: it is this abstract's title, so nothing was saved.")
            return

        def change(view: CandidateView) -> None:
            view.decision, view.reason, view.edited_text = ACCEPTED, None, None

        self._decide(index, "the acceptance", change, lambda store, view: store.accept(view.candidate_id))

    def action_edit(self) -> None:
        index = self._decidable_row()
        if index is not None:
            self.quit_requested = False  # a ctrl+q warning about an earlier title does not cover this one
            self.candidates.start_edit(index)

    def on_edit_submitted(self, message: EditSubmitted) -> None:
        text, view = message.text.strip(), message.view
        index = self.candidates.index_of(view)
        if index is None:
            return
        if not text:
            self.notify("An empty title was not saved.", severity="warning")
            return
        if text == view.shown_text:
            self.notify("Title unchanged: nothing saved (a accepts it as it is).", markup=False)
            return

        def change(view: CandidateView) -> None:
            view.decision, view.reason, view.edited_text = EDITED, None, text

        self._decide(index, "the edit", change, lambda store, view: store.edit(view.candidate_id, text))

    def action_reject(self) -> None:
        index = self._decidable_row()
        if index is None:
            return
        view = self.candidates.rows[index].view
        if self._already_decided(view, REJECTED):
            self.notify("Already rejected: nothing was saved.")
            return

        def rejected(reason: str | None) -> None:
            position = self.candidates.index_of(view)
            if reason is None or position is None:
                return

            def change(view: CandidateView) -> None:
                view.decision, view.reason, view.edited_text = REJECTED, reason or None, None

            self._decide(
                position,
                "the rejection",
                change,
                lambda store, view: store.reject(view.candidate_id, view.reason),
            )

        self.push_screen(
            TextPrompt(
                "Reject: why? (optional)",
                "enter rejects (a reason helps later) · escape keeps the candidate",
                placeholder="e.g. too generic, wrong method, misleading",
                draft="the rejection reason",
            ),
            rejected,
        )
        self.quit_requested = False

    def action_own_title(self) -> None:
        """Ask for the researcher's own title. The abstract it belongs to (a new one if the text was edited)
        is settled only once the title is entered, so leaving the prompt with escape changes nothing."""
        if self._editor_text_refused():
            return

        def written(title: str | None) -> None:
            if title is None:  # left with escape
                return
            if not title:
                self.notify("An empty title was not saved.", severity="warning")
                return
            session = self._session_for_editor()
            if session is None:
                return
            view = CandidateView(text=title, finished=True, decision=OWN, pending=1)
            self.candidates.add_rows([view])
            self.candidates.cursor = len(self.candidates.rows) - 1

            def saved(decision_id: int) -> None:
                view.pending = 0
                view.decision_id = decision_id
                self.candidates.show_view(view)

            self.submit(
                PendingWrite(
                    "your own title",
                    lambda store: store.own_title(session.abstract_id, title),
                    saved,
                    lambda: self.candidates.remove_view(view),
                    session,
                    view=view,
                )
            )

        self.push_screen(TextPrompt("Your own title", "enter saves · escape cancels", draft="your own title"), written)
        self.quit_requested = False

    def action_undo(self) -> None:
        """Undo the last decision: drop it if it is still waiting to be saved, else log an undo."""
        session = self.session
        write = self._last_unsent_write(session)
        if write is not None and write.revert is not None:
            self.pending = deque(waiting for waiting in self.pending if waiting is not write)
            write.revert()
            self.notify(f"Undone: {write.description} (it had not been saved yet).", markup=False)
            return
        if session is None or not any(view.decision for view in self.candidates.views()):
            self.notify("Nothing to undo on this abstract.", severity="warning")
            return

        def apply(store) -> list:
            store.undo(session.abstract_id)
            return store.history(session.abstract_id)

        self.submit(
            PendingWrite(
                "the undo", apply, lambda history: self._after_undo(session, history), session=session, undo=True
            )
        )

    def _last_unsent_write(self, session: Session | None) -> PendingWrite | None:
        """The latest write for ``session``'s abstract not yet sent to the store (the one in flight cannot
        be taken back). Writes for other abstracts are passed over: after n, p or v, u must not undo a
        decision on the abstract the researcher left."""
        unsent = list(self.pending)[1 if self.writing else 0 :]
        return next((write for write in reversed(unsent) if session is not None and write.session is session), None)

    def _after_undo(self, session: Session, history: list) -> None:
        """Show the log after the undo on the rows: on screen, or on the rows remembered for the abstract if
        the researcher left it (reopened while later writes wait, it shows those). Rows with decisions still
        waiting to be saved are left as they are: those writes were queued after the undo, so the log read
        here does not have them yet."""
        undone = next(d for d in reversed(history) if d.action == "undo")
        target = next(d for d in history if d.id == undone.undoes)
        self.notify(f"Undone: {target.action.replace('_', ' ')} of “{target.title}”.", markup=False)
        if session is not self.session:
            if session.left_rows is not None:
                settled = [view for view in session.left_rows if not view.pending]
                gone = {id(view) for view in apply_history(settled, history)}
                session.left_rows = [view for view in session.left_rows if id(view) not in gone]
            return
        settled = [view for view in self.candidates.views() if not view.pending]
        for view in apply_history(settled, history):
            self.candidates.remove_view(view)
        for view in self.candidates.views():
            self.candidates.show_view(view)

    # -- queue -------------------------------------------------------------------------------------

    def action_next_abstract(self) -> None:
        """The next queued abstract that still needs a title: a researcher resuming an import lands on
        the first one left, and abstracts titled earlier are skipped (``p`` and review reach them)."""
        current = self.session.abstract_id if self.session else None

        def at_end() -> str:
            where = "after this one " if self._read(lambda store: store.queue_position(current)) else ""
            return f"Every queued abstract {where}has a title: p goes back, v reviews them."

        self._open_queued(lambda store: store.next_in_queue(after=current), at_end)

    def action_previous_abstract(self) -> None:
        """The queued abstract before this one, titled or not."""
        current = self.session.abstract_id if self.session else None
        self._open_queued(
            lambda store: store.previous_in_queue(before=current), lambda: "That was the first abstract in the queue."
        )

    def _open_queued(self, find: Callable[[Any], int | None], at_end: Callable[[], str]) -> None:
        """Open the queued abstract ``find`` picks; when there is none, say why."""
        if self.store is None:  # reads would give nothing, which must not read as an empty queue
            self.notify_error("The store is not open, so the import queue cannot be read.")
            return
        found = self._read(find)
        if found is not None:
            self.open_abstract(found)
        elif not self._read(lambda store: store.queue_length(), 0):
            self.notify("The import queue is empty.", severity="warning")
        else:
            self.notify(at_end())

    # -- screens -----------------------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen([*self.BINDINGS, *CandidateList.BINDINGS]))

    def action_review(self) -> None:
        if self.store is None:
            self.notify_error("The store is not open, so there is nothing to review.")
            return

        def chosen(abstract_id: int | None) -> None:
            if abstract_id is not None:
                self.open_abstract(abstract_id)
                if not self.candidates.editing:  # else the open edit has the focus, for enter or escape
                    self.candidates.focus()

        self.push_screen(ReviewScreen(self.read_store), chosen)

    def action_settings(self) -> None:
        def saved(values: dict | None) -> None:
            if values is None:
                return
            self.sampling.update(values)
            self.submit(
                PendingWrite(
                    "the settings",
                    lambda store: store.set_setting(SAMPLING_SETTING, dict(values)),
                    setting=SAMPLING_SETTING,
                )
            )
            self.notify("Settings saved; they apply to the next generation.")
            self._count_tokens()

        self.push_screen(SettingsScreen(dict(self.sampling)), saved)

    @property
    def few_shot(self) -> bool:
        """Few-shot from my titles: the user's choice, else on for instruct (chat-template) models only.

        Measured on the test split (docs/evaluation.md), retrieved examples lift the instruct model but
        lower the fine-tuned default, which learned to title an abstract without examples.
        """
        if self.few_shot_choice is not None:
            return self.few_shot_choice
        return self.model_info is not None and self.model_info.template == CHAT

    @property
    def few_shot_known(self) -> bool:
        """Whether the toggle's state is known: chosen by the user, or the loaded model's default."""
        return self.few_shot_choice is not None or self.model_info is not None

    def action_few_shot(self) -> None:
        """Toggle few-shot from my titles; the choice is remembered in the store. The abstract is prefilled
        again, since the examples change its prompt (else ctrl+g would start by running it)."""
        if not self.few_shot_known and self.model_error is not None:
            self.notify("The model failed to load, so there is nothing for few-shot to steer.", severity="warning")
            return
        if not self.few_shot_known:
            self.notify(
                "The model is still loading: few-shot starts on for instruct models and off for fine-tuned "
                "ones, so it can be toggled once the model has loaded.",
                severity="warning",
            )
            return
        self.few_shot_choice = enabled = not self.few_shot
        self.last_few_shot = None
        self.submit(
            PendingWrite(
                "the few-shot setting",
                lambda store: store.set_setting(FEW_SHOT_SETTING, {"enabled": enabled}),
                setting=FEW_SHOT_SETTING,
            )
        )
        self._show_status()
        self._count_tokens()
        if not enabled:
            self.notify("Few-shot off: the next candidates come from the model alone.")
        elif self.store_figures is not None and self.store_figures.curated:
            self.notify(
                f"Few-shot on: the next prompts show the model up to {FEW_SHOT_EXAMPLES} of your "
                f"{self.store_figures.curated} curated titles, the most similar first."
            )
        else:
            self.notify("Few-shot on: it starts with your first accepted, edited or own title.")

    def action_export(self) -> None:
        if self.store is None:
            self.notify_error("The store is not open, so there is nothing to export.")
            return

        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is not None:
                self._export(self.read_store, *choice)

        self.push_screen(ExportScreen(self.store.path.parent / "exports"), chosen)

    @work(thread=True, exclusive=True, group="export")
    def _export(self, store: Any, export_format: str, path: str) -> None:
        """Export through the read connection: it reads one WAL snapshot of what is saved, so it does not
        wait behind a decision on the writer's that waits for another process's lock."""
        from core.export import export

        try:
            result = export(store, export_format, path)
        except Exception as error:  # noqa: BLE001
            self.post_message(ExportFailed(error_text(error)))
        else:
            self.post_message(ExportFinished(str(result.path), result.rows))

    def on_export_finished(self, message: ExportFinished) -> None:
        """Say where the pairs went and, while the store refuses writes, which changes are not among them:
        the export reads the store, and decisions still waiting for it are only on screen."""
        noun = "pair" if message.rows == 1 else "pairs"
        told = f"Exported {message.rows} {noun} to {message.path}"
        unsaved = sum(write.session is not None for write in self.pending)
        if not unsaved:
            self.notify(told, markup=False)
            return
        changes = "1 change is" if unsaved == 1 else f"{unsaved} changes are"
        self.notify(
            f"{told}. {changes} not saved yet, so not in it: export again once they are saved.",
            severity="warning",
            markup=False,
            timeout=8,
        )

    def on_export_failed(self, message: ExportFailed) -> None:
        self.notify_error(f"Export failed: {message.error}")

    # -- status and quitting -----------------------------------------------------------------------

    def _show_status(self) -> None:
        """Show the status line now with the store figures last read, and read fresh ones in a worker."""
        loading = self.generator is None and self.model_error is None
        info = StatusInfo(model=model_label(self.model_spec), loading=loading)
        if self.model_info is not None:
            info.device = self.model_info.device
        elif self.model_error is not None:
            info.model += " (failed to load)"
        if self.last_run is not None:
            info.first_token_seconds = self.last_run.first_token_seconds
            info.tokens_per_second = self.last_run.tokens_per_second
        info.store_unavailable = self.store is None and self.store_error is not None
        info.few_shot = self.few_shot if self.few_shot_known else None
        info.few_shot_used = self.last_few_shot if self.few_shot else None
        if self.store_figures is not None:
            self.store_figures.fill(info, self.session.abstract_id if self.session else None)
        info.counts_unreadable = self.status_error is not None
        self.query_one(StatusBar).show(info)

    def _refresh_status(self) -> None:
        """Re-read the store's figures (off the UI thread) and then show the status line."""
        self._show_status()
        if self.store is not None:
            self._read_status(self.read_store, self.session.abstract_id if self.session else None)

    @work(thread=True, exclusive=True, group="status")
    def _read_status(self, store: Any, abstract_id: int | None) -> None:
        try:
            message = StatusRead(abstract_id, figures=StoreFigures.read(store, abstract_id))
        except Exception as error:  # noqa: BLE001 - the status line keeps its last figures
            message = StatusRead(abstract_id, error=error_text(error))
        if not get_current_worker().is_cancelled:  # a newer read is under way: its figures are fresher
            self.post_message(message)

    def on_status_read(self, message: StatusRead) -> None:
        if message.error is not None:
            if message.error != self.status_error:
                self.notify_error(f"Reading the store failed: {message.error}")
                self.status_error = message.error
                self._show_status()
            return
        self.status_error = None
        if message.abstract_id != (self.session.abstract_id if self.session else None):
            return  # read for an abstract no longer open: the read started when this one opened follows
        self.store_figures = message.figures
        self._show_status()

    def action_quit(self) -> None:
        """Quit, unless decisions are unsaved or a title (or reason) is being typed: then ask for a second
        ctrl+q. Starting another edit or prompt after that warning needs its own."""
        unsaved = [f"{len(self.pending)} change(s) are not saved yet"] if self.pending else []
        if self.candidates.editing:
            unsaved.append("a title is being edited (enter saves it)")
        if isinstance(self.screen, TextPrompt) and self.screen.unsaved_draft:
            unsaved.append(f"{self.screen.unsaved_draft} is typed but not saved (enter saves it)")
        if self._unsaved_draft() is not None:
            unsaved.append("the abstract in the editor is not saved (ctrl+g saves it with its candidates)")
        if unsaved and not self.quit_requested:
            self.quit_requested = True
            self.notify(
                "; ".join(unsaved).capitalize() + ". Press ctrl+q again to quit and lose them.", severity="warning"
            )
            return
        self._cancel_run()
        self.exit()


def _no_new_candidates(params: Any) -> str:
    """Why a finished run added no row: its titles all repeated ones on screen (or came out empty). Without
    this the run's rows just vanish, and at temperature 0 every further run can only repeat itself."""
    if params.temperature == 0:
        return (
            "No new candidates: at temperature 0 (greedy) the model gives the title already shown every time. "
            "Raise the temperature in the settings (s) for more."
        )
    return "No new candidates: the model only repeated titles already shown. Try m again or a higher temperature."


def _open_store(path: str | Path | None) -> Any:
    from core.store import Store

    return Store(path)


def _open_reader(store: Any) -> Any:
    """A second connection for reads on the UI thread (opened off it): with WAL, reads never queue behind a
    write that waits for another process's lock. None if it cannot open: reads then share the writer's."""
    try:
        return _open_store(store.path)
    except Exception:  # noqa: BLE001
        return None
