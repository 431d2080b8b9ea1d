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
