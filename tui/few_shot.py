"""Few-shot from my titles: the researcher's curated pairs most like the abstract being titled.

Building a BM25 index over every curated pair takes a moment, so it is cached together with the store
state it was built from (curated count and size of the decision log, so that an edited title or an
undo also rebuilds it). Called from worker threads (generation and prefill), hence the lock.
"""

from __future__ import annotations

import threading
from typing import Any

FEW_SHOT_EXAMPLES = 4  # curated pairs retrieved per run (fewer when they do not all fit the prompt)


class CuratedExamples:
    """Retrieves curated (abstract, title) pairs for a prompt, rebuilding its index only when the store changed."""

    def __init__(self, k: int = FEW_SHOT_EXAMPLES) -> None:
        self.k = k
        self._cached: tuple[tuple, Any] | None = None  # (store state it was built from, Retriever)
        self._lock = threading.Lock()

    def for_prompt(self, store: Any, generator: Any, abstract: str, max_new_tokens: int) -> list:
        """The pairs most like ``abstract`` that fit its prompt, most similar first.

        The retriever never returns the abstract being titled, so a curated abstract is not shown to the
        model with its own answer. Only the examples that fit the prompt are returned, so the count the
        app records is what the model saw.
        """
        from core.retrieve import Retriever

        with self._lock:
            counts = store.counts()
            if not counts["curated"]:
                return []
            state = (id(store), counts["curated"], sum(counts["decisions"].values()))
            if self._cached is None or self._cached[0] != state:
                self._cached = (state, Retriever.from_store(store))
            retriever = self._cached[1]
        examples = retriever.examples(abstract, k=self.k)
        if not examples:
            return []
        fitting = generator.build_prompt(abstract, max_new_tokens, examples).examples_used
        return examples[:fitting]
