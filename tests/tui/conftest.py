"""Fixtures for driving the real app on the tiny checkpoint with a temporary store."""

from __future__ import annotations

import pytest
from tui_helpers import RecordingApp


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "titlecraft.db"


@pytest.fixture
def make_app(tiny_llama_dir, db_path):
    """Build the app on the tiny checkpoint and a temporary store (keyword arguments override)."""

    def make(**overrides) -> RecordingApp:
        options = {"model_spec": str(tiny_llama_dir), "db_path": db_path, "device": "cpu"}
        options.update(overrides)
        return RecordingApp(**options)

    return make


@pytest.fixture
def retriever_builds(monkeypatch) -> list:
    """The stores a few-shot retriever index was built from, in order (the real build still runs)."""
    from core.retrieve import Retriever

    builds = []
    real_from_store = Retriever.from_store.__func__

    def counted_from_store(cls, store):
        builds.append(store)
        return real_from_store(cls, store)

    monkeypatch.setattr(Retriever, "from_store", classmethod(counted_from_store))
    return builds
