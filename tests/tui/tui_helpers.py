"""Helpers for driving the real app: recorded notifications, waiting for workers, scripted generation."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from core.generate import Candidate, CandidateEvent, GenerationResult
from tui.app import TitlecraftApp

ABSTRACT = (
    "We study how small causal language models can propose titles for research papers. "
    "Candidates are sampled in one batch, streamed token by token, and curated by a researcher."
)


class RecordingApp(TitlecraftApp):
    """The app, remembering every notification so tests can check what the user was told."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[tuple[str, str]] = []

    def notify(self, message: str, *, severity: str = "information", **kwargs) -> None:
        self.told.append((severity, message))
        super().notify(message, severity=severity, **kwargs)

    def errors(self) -> list[str]:
        return [message for severity, message in self.told if severity == "error"]


async def settle(app: TitlecraftApp, pilot) -> None:
    """Wait until no worker runs, no message is queued and every store write has been saved."""
    for _ in range(200):
        await app.workers.wait_for_complete()
        await pilot.pause()
        if not any(worker.is_running for worker in app.workers) and not app.writing:
            return
    raise AssertionError("the app did not settle")


async def review_loaded(app: TitlecraftApp, pilot) -> None:
    """Wait until the review screen shows the result of its latest read, its search debounce included."""
    for _ in range(400):
        await settle(app, pilot)
        if not app.screen.loading:
            return
        await pilot.pause(0.05)  # the debounce timer has not fired yet
    raise AssertionError("the review screen did not finish reading")


async def ready(app: TitlecraftApp, pilot, abstract: str = ABSTRACT) -> None:
    """Wait for the model and the store, then paste ``abstract`` into the editor."""
    await settle(app, pilot)
    app.editor.text_area.insert(abstract)
    await pilot.pause()


def scripted_generate(
    titles: Sequence[str],
    step_delay: float = 0.0,
    started: threading.Event | None = None,
    hold: threading.Event | None = None,
):
    """A stand-in for ``TitleGenerator.generate`` that streams ``titles`` word by word; with ``hold``,
    it stops after the first word until that event is set (a run that is still going, for sure).

    It posts through the same callback and returns the same result type as the real generator, so the
    app's streaming, ranking and recording paths run unchanged, with fixed text and its real duration.
    """

    def generate(abstract, params, examples=(), on_event=None, cancel=None, start_index=0, avoid=()):
        began = time.perf_counter()
        chosen = [titles[(start_index + i) % len(titles)] for i in range(params.n)]
        words = [title.split(" ") for title in chosen]
        cancelled = False
        for step in range(max(len(w) for w in words)):
            if cancel is not None and cancel.is_set():
                cancelled = True
                break
            for i, title_words in enumerate(words):
                if step < len(title_words):
                    text, last = " ".join(title_words[: step + 1]), step == len(title_words) - 1
                    on_event(CandidateEvent(start_index + i, text, last))
            if started is not None:
                started.set()
            if hold is not None:
                hold.wait(timeout=30)
            time.sleep(step_delay)
        finished = [] if cancelled else chosen
        candidates = [
            Candidate(text=title, score=-0.25 * (rank + 1), flags=[], rank=rank + 1)
            for rank, title in enumerate(finished)
        ]
        return GenerationResult(
            candidates=candidates,
            notice=None,
            seconds=time.perf_counter() - began,
            first_token_seconds=0.04,
            new_tokens=40,
            tokens_per_second=80.0,
            cancelled=cancelled,
            device="cpu",
            model="tiny-llama (test)",
            params=params,
        )

    return generate
