"""Reading a row of titlecraft's own JSONL exports back: shared by ``import`` and ``train --extra``.

Both read JSON lines a researcher may have mixed up (a chat export where an sft one belongs), so both say
in words what a row is instead of naming a missing field or printing Python's error.
"""

from __future__ import annotations

import json
from typing import Any


def json_object(line: str) -> dict[str, Any]:
    """One JSONL line as a dict; a ValueError says what is wrong with it (and at which column)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON ({error.msg}, column {error.colno})") from None
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    return row


def export_shape(row: dict[str, Any]) -> str | None:
    """Which export format a row has the fields of: "chat", "dpo" or "sft"; None for none of them."""
    if "messages" in row:
        return "chat"
    if {"prompt", "chosen", "rejected"} <= row.keys():
        return "dpo"
    if {"prompt", "completion"} <= row.keys():
        return "sft"
    return None
