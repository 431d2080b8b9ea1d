"""Write curated pairs as fine-tuning data, in the shapes trainers already read.

Prompts come from core.prompts, the same templates training and generation use. Every export reads one
snapshot of the store (a decision made meanwhile is either wholly in it or not at all) and is written to
a temporary file that is renamed into place, so a failed export never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import TitlecraftError
from core.paths import CSV_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES, refuse_file_in_the_way
from core.prompts import chat_messages, completion_prompt, completion_target, normalise_whitespace
from core.store import CuratedPair, RejectedCandidate, Store

FORMATS = ("sft", "chat", "dpo", "parquet", "csv", "hf")
PAIR_COLUMNS = ("arxiv_id", "title", "abstract", "categories", "date", "source")
PROVENANCE_COLUMNS = (
    "action",
    "decided_at",
    "model_spec",
    "model_id",
    "params",
    "seed",
    "device",
    "candidate_rank",
    "candidate_score",
    "candidate_text",
    "reference_title",
    "abstract_id",
    "decision_id",
)
TABLE_COLUMNS = PAIR_COLUMNS + PROVENANCE_COLUMNS
# The file suffixes each format is read back by: import, train and prepare choose their reader by suffix.
FORMAT_SUFFIXES = {
    **dict.fromkeys(("sft", "chat", "dpo"), JSONL_SUFFIXES),
    "parquet": PARQUET_SUFFIXES,
    "csv": CSV_SUFFIXES,
    "hf": (),
}
FORMAT_WRITES = {
    **dict.fromkeys(("sft", "chat", "dpo"), "JSON Lines"),
    "parquet": "parquet",
    "csv": "CSV",
    "hf": "a datasets folder",
}
_INTEGER_COLUMNS = {"seed", "candidate_rank", "abstract_id", "decision_id"}
_FLOAT_COLUMNS = {"candidate_score"}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    rows: int


def parse_since(text: str) -> str:
    """A --since value as the store compares it: a YYYY-MM-DD date, or an ISO time converted to UTC."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TitlecraftError(f"--since expects a date like 2026-05-01 or an ISO time, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def export(
    store: Store, format_name: str, out: str | Path, since: str | None = None, model: str | None = None
) -> ExportResult:
    """Export the curated pairs (optionally only those decided since a date, or titled by one model).

    ``~`` in ``out`` is the home folder: the app's export dialog (and a quoted --out) get it unexpanded.
    """
    if format_name not in FORMATS:
        raise TitlecraftError(f"unknown export format {format_name!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out).expanduser()
    _refuse_the_suffix_of_another_format(format_name, out)
    refuse_file_in_the_way(out)
    _refuse_overwriting_the_store(store, out)
    since = parse_since(since) if since is not None else None
    with store.snapshot():
        specs = _recorded_specs(store, model) if model is not None else [None]
        pairs = sorted(
            (pair for spec in specs for pair in store.curated_pairs(since=since, model=spec)),
            key=lambda pair: pair.abstract_id,
        )
        rejected = store.rejected_candidates() if format_name == "dpo" else []
    if format_name == "sft":
        records = sft_records(pairs)
    elif format_name == "chat":
        records = chat_records(pairs)
    elif format_name == "dpo":
        records = preference_records(pairs, rejected)
    else:
        records = table_rows(pairs)
    if not records:
        raise TitlecraftError(_nothing_to_export(format_name, out, bool(pairs), since, model))
    if format_name in ("sft", "chat", "dpo"):
        rows = _write_jsonl(out, records)
    elif format_name == "csv":
        rows = _write_csv(out, records)
    elif format_name == "parquet":
        rows = _write_parquet(out, records)
    else:
        rows = _write_dataset(out, records)
    return ExportResult(out, format_name, rows)


def _recorded_specs(store: Store, model: str) -> list[str]:
    """The model specs in the store that name ``model``. The app records the --model it was started with
    as typed, so one checkpoint folder may be there as runs/mine/ (a shell's completion), ./runs/mine or
    its absolute path; an exact match alone found none of them when asked for another spelling."""
    wanted = os.path.abspath(os.path.expanduser(model))
    return [
        stats.model_spec
        for stats in store.model_stats()
        if stats.model_spec == model or os.path.abspath(os.path.expanduser(stats.model_spec)) == wanted
    ]


def _refuse_the_suffix_of_another_format(format_name: str, out: Path) -> None:
    """Refuse an ``out`` named for another format (pairs.jsonl exported as parquet): the app keeps a typed
    path when the format is switched, and the file was then refused by every reader that goes by its suffix
    ("not a parquet file", "not UTF-8 text"). Suffixes no format claims (pairs.sft) are left alone."""
    suffix = out.suffix.lower()
    named_for = [name for name, suffixes in FORMAT_SUFFIXES.items() if suffix in suffixes]
    if not named_for or format_name in named_for:
        return
    wanted = f"a {FORMAT_SUFFIXES[format_name][0]} name" if FORMAT_SUFFIXES[format_name] else "a folder name"
    formats = " or ".join(", ".join(named_for).rsplit(", ", 1))
    raise TitlecraftError(
        f"{out} is named as a {FORMAT_WRITES[named_for[0]]} file, but the {format_name} format writes "
        f"{FORMAT_WRITES[format_name]}: give {wanted}, or choose the {formats} format"
    )


def _refuse_overwriting_the_store(store: Store, out: Path) -> None:
    """An export renamed onto the database or its journal files would destroy every decision in it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        store_file = store.path.with_name(store.path.name + suffix)
        same_file = out.exists() and store_file.exists() and out.samefile(store_file)
        if same_file or out.resolve() == store_file.resolve():
            what = "the store itself" if not suffix else f"the store's {suffix[1:]} file"
            raise TitlecraftError(
                f"{out} is {what} ({store_file}); exporting there would destroy the curation database. "
                "Choose another --out path."
            )


def _nothing_to_export(format_name: str, out: Path, any_pairs: bool, since: str | None, model: str | None) -> str:
    """Why an export would be empty. Nothing is written then, so an earlier export at ``out`` survives."""
    if any_pairs:
        what = "no curated pair has a rejected candidate to set against it (dpo needs both)"
    else:
        filters = [f"decided since {since}" if since else "", f"titled by model {model!r}" if model else ""]
        what = " ".join(["no curated pairs", *filter(None, filters)]) + " in the store"
    return f"Nothing to export: {what}; {out} was not written."


def training_title(title: str) -> str:
    """A title as the training formats write it, on one line with whitespace collapsed, as titlecraft's
    training reads it: a title is stored as given, and one imported with a line break (a wrapped
    spreadsheet cell) taught other trainers titles running over two lines, where candidates end at one."""
    return normalise_whitespace(title)


def sft_records(pairs: Sequence[CuratedPair]) -> list[dict[str, str]]:
    return [
        {"prompt": completion_prompt(pair.abstract), "completion": completion_target(training_title(pair.title))}
        for pair in pairs
    ]


def chat_records(pairs: Sequence[CuratedPair]) -> list[dict[str, Any]]:
    return [
        {"messages": [*chat_messages(pair.abstract), {"role": "assistant", "content": training_title(pair.title)}]}
        for pair in pairs
    ]


def preference_records(pairs: Sequence[CuratedPair], rejected: Sequence[RejectedCandidate]) -> list[dict[str, str]]:
    """TRL's DPO shape: the curated title against each rejected candidate of the same abstract."""
    rejected_by_abstract: dict[int, list[RejectedCandidate]] = {}
    for candidate in rejected:
        rejected_by_abstract.setdefault(candidate.abstract_id, []).append(candidate)
    return [
        {
            "prompt": completion_prompt(pair.abstract),
            "chosen": completion_target(training_title(pair.title)),
            "rejected": completion_target(training_title(candidate.text)),
        }
        for pair in pairs
        for candidate in rejected_by_abstract.get(pair.abstract_id, [])
        if training_title(candidate.text) != training_title(pair.title)
    ]


def table_rows(pairs: Sequence[CuratedPair]) -> list[dict[str, Any]]:
    """The shared pair format plus provenance. ``date`` is the paper's when known, else the decision's."""
    return [
        {
            "arxiv_id": pair.arxiv_id,
            "title": pair.title,
            "abstract": pair.abstract,
            "categories": pair.categories,
            "date": pair.date or pair.decided_at[:10],
            "source": pair.source,
            "action": pair.action,
            "decided_at": pair.decided_at,
            "model_spec": pair.model_spec,
            "model_id": pair.model_id,
            "params": json.dumps(pair.params, sort_keys=True, ensure_ascii=False) if pair.params is not None else None,
            "seed": pair.seed,
            "device": pair.device,
            "candidate_rank": pair.candidate_rank,
            "candidate_score": pair.candidate_score,
            "candidate_text": pair.candidate_text,
            "reference_title": pair.reference_title,
            "abstract_id": pair.abstract_id,
            "decision_id": pair.decision_id,
        }
        for pair in pairs
    ]


@contextlib.contextmanager
def _replaced_atomically(out: Path) -> Iterator[Path]:
    """Yield an unused path beside ``out``; rename it onto ``out`` only if the block succeeds."""
    if out.is_dir():
        raise TitlecraftError(f"{out} is a folder; give a file path for this export format")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(6)}.partial")
    try:
        yield temporary
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)


def _write_jsonl(out: Path, records: list[dict[str, Any]]) -> int:
    with _replaced_atomically(out) as temporary, temporary.open("x", encoding="utf-8", newline="\n") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)


def _write_csv(out: Path, rows: list[dict[str, Any]]) -> int:
    with _replaced_atomically(out) as temporary, temporary.open("x", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _arrow_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    def column_type(name: str):
        if name in _INTEGER_COLUMNS:
            return pa.int64()
        return pa.float64() if name in _FLOAT_COLUMNS else pa.string()

    schema = pa.schema([(name, column_type(name)) for name in TABLE_COLUMNS])
    return pa.Table.from_pylist(rows, schema=schema)


def _write_parquet(out: Path, rows: list[dict[str, Any]]) -> int:
    import pyarrow.parquet as pq

    table = _arrow_table(rows)
    with _replaced_atomically(out) as temporary:
        pq.write_table(table, temporary)
    return len(rows)


def _is_saved_dataset(folder: Path) -> bool:
    """Whether a folder is what ``datasets.save_to_disk`` wrote (an earlier hf export may be replaced)."""
    return (folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()


def _write_dataset(out: Path, rows: list[dict[str, Any]]) -> int:
    """A ``datasets`` folder (load it with ``datasets.load_from_disk``), swapped in whole."""
    import datasets

    if out.exists() and not out.is_dir():
        raise TitlecraftError(f"{out} is a file; the hf format writes a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_saved_dataset(out):
        raise TitlecraftError(
            f"{out} is a folder with other files in it; the hf format replaces its folder whole, so give a new "
            "or empty folder, or an earlier hf export"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    table = _arrow_table(rows)
    dataset = datasets.Dataset.from_list(rows, features=datasets.Features.from_arrow_schema(table.schema))
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        dataset.save_to_disk(staging / "dataset")
        previous = staging / "previous"
        if out.exists():
            os.replace(out, previous)
        try:
            os.replace(staging / "dataset", out)
        except OSError:
            if previous.exists():
                os.replace(previous, out)
            raise
    finally:
        shutil.rmtree(staging)
    return len(rows)
