"""Every custom message the app passes around, in one place.

Worker threads never touch widgets: they post these messages and the app updates the screen on its
own thread. Each generation run carries a ``run_id`` so that late messages from a cancelled run are
recognised and ignored.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from core.errors import TitlecraftError


def error_text(error: BaseException) -> str:
    """How a worker's failure is worded in its message: a TitlecraftError's text is the message (it was
    written for the user); anything else also names its type."""
    if isinstance(error, TitlecraftError):
        return str(error)
    return f"{type(error).__name__}: {error}"


class ModelLoaded(Message):
    """The model finished loading; ``generator`` is ready to use."""

    def __init__(self, generator: Any, info: Any) -> None:
        super().__init__()
        self.generator = generator
        self.info = info


class ModelLoadFailed(Message):
    """The model could not be loaded; ``error`` is the message to show."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class CandidateStreamed(Message):
    """A candidate's text grew by a token (or ended) during run ``run_id``."""

    def __init__(self, run_id: int, index: int, text: str, finished: bool) -> None:
        super().__init__()
        self.run_id = run_id
        self.index = index
        self.text = text
        self.finished = finished


class GenerationFinished(Message):
    """Run ``run_id`` ended (completed or cancelled) with a core ``GenerationResult``.

    ``few_shot`` is how many curated examples its prompt held, None when few-shot was off.
    """

    def __init__(self, run_id: int, result: Any, few_shot: int | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.result = result
        self.few_shot = few_shot


class FewShotUnavailable(Message):
    """Curated examples could not be retrieved for a run, which went ahead without them."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class GenerationFailed(Message):
    """Run ``run_id`` raised; ``error`` is the message to show."""

    def __init__(self, run_id: int, error: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.error = error


class EditSubmitted(Message):
    """The researcher finished editing a candidate in place; ``view`` is that row's CandidateView."""

    def __init__(self, view: Any, text: str) -> None:
        super().__init__()
        self.view = view
        self.text = text


class AbstractPasted(Message):
    """Text was pasted while the candidates had the focus: they take no text, so it is the next abstract."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ExportFinished(Message):
    """An export wrote ``path`` (``rows`` records)."""

    def __init__(self, path: str, rows: int) -> None:
        super().__init__()
        self.path = path
        self.rows = rows


class ExportFailed(Message):
    """An export failed; ``error`` is the message to show."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class TokensCounted(Message):
    """The token count of ``abstract`` (``tokens`` None and ``error`` set when it could not be counted)."""

    def __init__(self, abstract: str, tokens: int | None, dropped: int = 0, error: str | None = None) -> None:
        super().__init__()
        self.abstract = abstract
        self.tokens = tokens
        self.dropped = dropped
        self.error = error


class StoreOpened(Message):
    """The store opened (at start-up, or later when a retried write finally reached it), with a second
    connection for the UI thread's reads (None if that one could not be opened)."""

    def __init__(self, store: Any, reader: Any = None) -> None:
        super().__init__()
        self.store = store
        self.reader = reader


class StoreOpenFailed(Message):
    """The store could not be opened at start-up; decisions wait on screen until it can."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class WriteSaved(Message):
    """A queued store write succeeded with ``result``."""

    def __init__(self, write: Any, result: Any) -> None:
        super().__init__()
        self.write = write
        self.result = result


class WriteFailed(Message):
    """A queued store write failed. ``retryable``: the store was unavailable (locked, read-only...), so
    the write stays queued; otherwise the write itself cannot be applied and is dropped."""

    def __init__(self, write: Any, error: str, retryable: bool) -> None:
        super().__init__()
        self.write = write
        self.error = error
        self.retryable = retryable


class StatusRead(Message):
    """The store's figures for the status line, read for the abstract ``abstract_id`` was open then
    (``figures`` None and ``error`` set when the read failed)."""

    def __init__(self, abstract_id: int | None, figures: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.abstract_id = abstract_id
        self.figures = figures
        self.error = error


class ReviewPairsRead(Message):
    """The review screen's read ``read_id`` found ``pairs`` (at most its row limit) of ``total`` matching."""

    def __init__(self, read_id: int, pairs: list[Any], total: int) -> None:
        super().__init__()
        self.read_id = read_id
        self.pairs = pairs
        self.total = total


class ReviewReadFailed(Message):
    """The review screen's read ``read_id`` failed; ``error`` is the message to show."""

    def __init__(self, read_id: int, error: str) -> None:
        super().__init__()
        self.read_id = read_id
        self.error = error
