"""The app's bookkeeping for one abstract: its session, writes waiting for the store, and history.

Nothing here decides what a decision means (core/store.py does); this module only keeps the screen
and the store in step: writes run in order, ids that an earlier write produces are read when a later
write runs, and rows are re-derived from the store's log after an undo or when an abstract is reopened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tui.widgets.candidates import ACCEPTED, EDITED, OWN, REJECTED, CandidateView

ACTION_TO_DECISION = {"accept": ACCEPTED, "edit": EDITED, "reject": REJECTED, "own_title": OWN}


@dataclass
class Session:
    """The abstract being curated. Ids stay None until the store has them (writes may be pending).

    ``left_rows`` are the rows on screen when the researcher moved to another abstract: reopened while
    some of its writes still wait for the store, it shows them, since the store does not have them yet.
    """

    text: str
    source: str = "pasted"
    abstract_id: int | None = None
    left_rows: list[CandidateView] | None = None


@dataclass
class PendingWrite:
    """One store call waiting to run on the writer thread.

    ``apply`` runs off the UI thread and may only touch the store and plain data; ``on_saved`` and
    ``revert`` run on the UI thread (``revert`` when an undo removes the write before it was saved).
    ``session`` is the abstract the write changes (None for settings): u only takes back this abstract's.
    ``setting`` is the store setting a settings write sets: a store that opens late must not overwrite
    the choice waiting in it with the value stored before. ``view`` is the row a decision is made on:
    its place in the queue orders it among the decisions not saved yet. ``undo``: an undo, whose effect
    the rows show only once it is saved.
    """

    description: str
    apply: Callable[[Any], Any]
    on_saved: Callable[[Any], None] = lambda result: None
    revert: Callable[[], None] | None = None
    session: Session | None = None
    setting: str | None = None
    view: CandidateView | None = None
    undo: bool = False


def views_from_store(candidates: list, history: list, generations: list) -> list[CandidateView]:
    """Rows for a reopened abstract, as the screen last showed them, in the order they appeared.

    A new run (ctrl+g) replaced the undecided rows of the runs before it, so of those only the candidates
    it kept (recorded in its ``kept``; runs recorded before that: those ever decided on) come back; the
    candidates of the latest new run and of the "more" runs after it all do, and so do the live own
    titles. Runs recorded without saying whether they were "more" count as more.

    Rows come in the order they appeared: a run's where it started, an own title where it was written.
    Runs record the own titles shown above their rows (``own_titles_above``), so an own title goes just
    before the first run that names it and after the others, and runs follow their ids. Abstracts with
    runs recorded before that are ordered by timestamps, which are late for writes that waited for a
    locked store (such writes are saved in a burst, so those rows could swap places).
    """
    new_runs = [generation for generation in generations if generation.params.get("more") is False]
    latest_new_run = new_runs[-1].id if new_runs else None
    kept = new_runs[-1].params.get("kept") if new_runs else None
    if kept is None:
        kept = [decision.candidate_id for decision in history if decision.candidate_id is not None]
    kept = set(kept)
    candidate_place, own_title_place = _places(generations)
    appeared: list[tuple[tuple, CandidateView]] = [
        (
            candidate_place(candidate),
            CandidateView(
                text=candidate.text,
                finished=True,
                score=candidate.score,
                flags=list(candidate.flags),
                candidate_id=candidate.id,
            ),
        )
        for candidate in candidates
        if latest_new_run is None or candidate.generation_id >= latest_new_run or candidate.id in kept
    ]
    appeared.extend(
        (
            own_title_place(decision),
            CandidateView(text=decision.title, finished=True, decision=OWN, decision_id=decision.id),
        )
        for decision in history
        if decision.action == "own_title" and not decision.undone
    )
    views = [view for _, view in sorted(appeared, key=lambda pair: pair[0])]
    apply_history(views, history)
    return views


def _places(generations: list) -> tuple[Callable[[Any], tuple], Callable[[Any], tuple]]:
    """Sort keys that put candidates and own titles in the order they appeared on screen (see above)."""
    if all("own_titles_above" in generation.params for generation in generations):
        first_run_below: dict[int, int] = {}
        for generation in sorted(generations, key=lambda generation: generation.id):
            for decision_id in generation.params["own_titles_above"]:
                first_run_below.setdefault(decision_id, generation.id)
        return (
            lambda candidate: (candidate.generation_id, 1, candidate.rank),
            lambda decision: (first_run_below.get(decision.id, float("inf")), 0, decision.id),
        )
    started = {generation.id: _started_at(generation) for generation in generations}
    return (
        lambda candidate: (started.get(candidate.generation_id, ""), candidate.generation_id, candidate.rank),
        lambda decision: (decision.decided_at, float("inf"), decision.id),
    )


def _started_at(generation) -> str:
    """When a run's rows appeared on screen: it is recorded when it ends, ``seconds`` after it started."""
    if not generation.seconds:
        return generation.created_at
    started = datetime.fromisoformat(generation.created_at) - timedelta(seconds=generation.seconds)
    return started.isoformat(timespec="milliseconds")


def apply_history(views: list[CandidateView], history: list) -> list[CandidateView]:
    """Set each candidate row's decision (and its log id) from the log; return own-title rows whose
    decision was undone."""
    live = [d for d in history if d.action != "undo" and not d.undone]
    latest = {d.candidate_id: d for d in live if d.candidate_id is not None}
    undone_own = []
    for view in views:
        if view.decision == OWN:
            if view.decision_id is not None and all(d.id != view.decision_id for d in live):
                undone_own.append(view)
            continue
        if view.candidate_id is None:
            continue
        decision = latest.get(view.candidate_id)
        view.decision = ACTION_TO_DECISION[decision.action] if decision else None
        view.decision_id = decision.id if decision else None
        view.reason = decision.reason if decision else None
        view.edited_text = decision.title if decision and decision.action == "edit" else None
    return undone_own
