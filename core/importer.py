"""Queue abstracts for curation from JSONL, CSV, parquet, plain text (.txt), or a titlecraft SFT export.

A row with a ``title`` column keeps it as the reference title (the paper's real title). A row of an SFT
export (``{"prompt", "completion"}``) carries a curated title, and so does one of a csv or parquet export
(``title`` beside ``reference_title``); either is recorded as an own-title decision: exporting and importing
again loses no title. Re-importing a file changes nothing. A bad row is reported with its file, place
and reason, and the good rows still land. An abstract is stored once with its first reference title; a
row repeating it with another reference title is named in the summary, and one giving details the stored
abstract lacks (reference title, arXiv id, categories, date) fills them in.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import TitlecraftError
from core.export_rows import export_shape, json_object
from core.paths import CSV_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES, TEXT_SUFFIXES
from core.prompts import normalise_whitespace, parse_completion_prompt
from core.store import Store

# The csv module's default field limit, kept as a row rule: a longer field is no abstract.
CSV_FIELD_LIMIT = 131_072
# Rows are committed in chunks: a crash keeps what was committed, and the TUI is never locked out long.
ROWS_PER_COMMIT = 500


@dataclass(frozen=True)
class ImportRow:
    abstract: str
    reference_title: str | None = None
    curated_title: str | None = None
    arxiv_id: str | None = None
    categories: str | None = None
    date: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class RowProblem:
    file: Path
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.location}: {self.reason}"


@dataclass
class ImportSummary:
    imported: int = 0
    already_present: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    # Rows whose abstract was already stored with another reference title: the stored one was kept.
    reference_title_clashes: list[RowProblem] = field(default_factory=list)


class BadRow(ValueError):
    """A row that cannot be imported; its text is the reason shown to the user."""


def import_file(
    store: Store, path: str | Path, rows: Iterator[tuple[str, ImportRow | BadRow]] | None = None
) -> ImportSummary:
    """Import every good row of ``path`` into ``store`` and its queue, in file order; ``rows`` is
    ``read_rows(path)`` when the caller has checked the file before opening the store."""
    path = Path(path)
    summary = ImportSummary()
    default_source = f"import:{path.name}"
    rows = read_rows(path) if rows is None else rows
    stored = 0  # rows of the file in the store once the last chunk committed
    try:
        while True:
            chunk = [row for _, row in zip(range(ROWS_PER_COMMIT), rows)]
            if not chunk:
                return summary
            _import_chunk(store, path, chunk, default_source, summary)
            stored = summary.imported + summary.already_present
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted_advice(store, path, stored)) from None


def _interrupted_advice(store: Store, path: Path, stored: int) -> str:
    """What an import stopped with ctrl+c kept: its committed chunks stay, and a re-run imports the rest."""
    if not stored:
        return "no row was stored yet; the same command starts the import again"
    rows = "1 row" if stored == 1 else f"{stored:,} rows"
    verb = "is" if stored == 1 else "are"
    return f"{rows} of {path} {verb} stored in {store.path}; run the same command again to finish the import"


def _import_chunk(
    store: Store,
    path: Path,
    chunk: list[tuple[str, ImportRow | BadRow]],
    default_source: str,
    summary: ImportSummary,
) -> None:
    """Import one chunk of rows in one commit, counting each in ``summary``."""
    with store.batch():
        for location, row in chunk:
            if isinstance(row, BadRow):
                summary.problems.append(RowProblem(path, location, str(row)))
                continue
            try:
                with store.batch():  # a savepoint: a row that fails leaves nothing behind
                    stored_id = store.find_abstract(row.abstract)
                    clash = _reference_title_clash(store, stored_id, row)
                    changed = _apply(store, row, default_source, stored_id)
            except (BadRow, TitlecraftError) as problem:
                summary.problems.append(RowProblem(path, location, str(problem)))
                continue
            if clash:
                summary.reference_title_clashes.append(RowProblem(path, location, clash))
            if changed:
                summary.imported += 1
            else:
                summary.already_present += 1


def _reference_title_clash(store: Store, stored_id: int | None, row: ImportRow) -> str | None:
    """Why the row's reference title will be dropped, if its abstract is stored (as ``stored_id``) with
    another one: an abstract is stored once and its first reference title stays, which the summary must
    say, not hide."""
    if stored_id is None or row.reference_title is None:
        return None
    kept = store.abstract(stored_id).reference_title
    if kept is None or normalise_whitespace(kept) == normalise_whitespace(row.reference_title):
        return None
    return (
        f'the abstract repeats one stored with the reference title "{kept}"; '
        f'kept that title, not "{row.reference_title}"'
    )


def _apply(store: Store, row: ImportRow, default_source: str, abstract_id: int | None) -> bool:
    """Store one row whose abstract is stored as ``abstract_id`` (None: not yet); True if it added
    anything (a new abstract, details a stored one lacked, or a new curated title)."""
    details = {
        "arxiv_id": row.arxiv_id,
        "reference_title": row.reference_title,
        "categories": row.categories,
        "date": row.date,
    }
    added = abstract_id is None
    if added:
        abstract_id = store.add_abstract(row.abstract, source=row.source or default_source, **details)
    else:
        added = store.fill_in_abstract(abstract_id, **details)
    store.enqueue(abstract_id)
    if row.curated_title is None:
        return added
    current = store.curated_title(abstract_id)
    # An sft row's title is read trimmed and training collapses whitespace, so a title that differs only in
    # whitespace (the sft export of a title stored with a trailing newline) is the same title, not a conflict.
    if current is not None and normalise_whitespace(current) == normalise_whitespace(row.curated_title):
        return added
    if current is not None:
        raise BadRow(f"abstract {abstract_id} already has a different curated title {current!r}; kept it")
    store.own_title(abstract_id, row.curated_title)
    return True


def read_rows(path: Path) -> Iterator[tuple[str, ImportRow | BadRow]]:
    """(location, row) pairs of a file, its format chosen by suffix; an unknown suffix is refused rather
    than read as plain text, where a TSV or any other format would become one garbled abstract per block."""
    if path.is_dir():
        raise TitlecraftError(f"{path} is a folder; name a file to import")
    if not path.is_file():
        raise TitlecraftError(f"there is no file {path} to import")
    suffix = path.suffix.lower()
    if suffix not in (*PARQUET_SUFFIXES, *JSONL_SUFFIXES, *CSV_SUFFIXES, *TEXT_SUFFIXES):
        what = f"the suffix {suffix!r}" if suffix else "a file without a suffix"
        raise TitlecraftError(
            f"cannot import {path}: {what} is not supported. Use JSON Lines ({', '.join(JSONL_SUFFIXES)}), "
            f"CSV ({', '.join(CSV_SUFFIXES)}), parquet ({', '.join(PARQUET_SUFFIXES)}) or plain text with "
            f"abstracts separated by blank lines ({', '.join(TEXT_SUFFIXES)})"
        )
    if suffix in PARQUET_SUFFIXES:
        return _refuse_no_rows(path, _parquet_rows(path))
    text = _read_text(path)
    if suffix in JSONL_SUFFIXES:
        _refuse_json_document(path, text)
        return _refuse_no_rows(path, _jsonl_rows(text))
    if suffix in CSV_SUFFIXES:
        return _refuse_no_rows(path, _csv_rows(path, text))
    return _refuse_no_rows(path, _plain_text_rows(text))


def _refuse_no_rows(
    path: Path, rows: Iterator[tuple[str, ImportRow | BadRow]]
) -> Iterator[tuple[str, ImportRow | BadRow]]:
    """The rows, read up to the first importable one now: a file without any (no rows, a CSV header or
    parquet body that cannot be read, JSON rows that all lack 'abstract') is refused before the caller
    opens a store, where an import into a new --db left an empty database behind."""
    bad_start: list[tuple[str, ImportRow | BadRow]] = []
    for location, row in rows:
        bad_start.append((location, row))
        if not isinstance(row, BadRow):
            return itertools.chain(bad_start, rows)
    if not bad_start:
        raise TitlecraftError(f"{path} holds no abstracts to import")
    location, problem = bad_start[0]
    verdict = "its only row cannot" if len(bad_start) == 1 else f"none of its {len(bad_start)} rows can"
    raise TitlecraftError(f"{path}: {verdict} be imported ({location}: {problem}); nothing was imported")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise TitlecraftError(f"{path} is not UTF-8 text ({error})") from error


def _refuse_json_document(path: Path, text: str) -> None:
    """A JSON array, or an object spread over lines, read line by line would import whichever of its lines
    happen to parse alone; refuse it whole instead."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return  # JSON Lines (or a broken file, whose bad lines are reported one by one)
    if isinstance(document, list):
        shape, jq_filter = "a JSON array", ".[]"
    elif isinstance(document, dict) and "\n" in text.strip():
        shape, jq_filter = "one JSON object spread over several lines", "."
    else:
        return
    raise TitlecraftError(
        f"{path} is {shape}, which import does not support: use JSON Lines (one object per line), e.g. "
        f"jq -c '{jq_filter}' {path} > {path.stem}.jsonl; nothing was imported"
    )


def _jsonl_rows(text: str) -> Iterator[tuple[str, ImportRow | BadRow]]:
    # Split on "\n" only: JSON strings may hold raw U+2028 or U+0085, which str.splitlines would cut.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        yield f"line {number}", _guarded(_json_row, line)


def _json_row(line: str) -> ImportRow:
    try:
        record = json_object(line)
    except ValueError as error:
        raise BadRow(str(error)) from None
    if export_shape(record) == "sft":
        return _sft_row(record)
    _refuse_other_export_shapes(record)
    return _record_row(record)


def _refuse_other_export_shapes(record: dict[str, Any]) -> None:
    """A chat or dpo export row has no 'abstract' field; name what it is instead of calling it a row
    that lacks one, and point to the exports that do import."""
    shape = export_shape(record)
    if "abstract" in record or shape not in ("chat", "dpo"):
        return
    raise BadRow(
        f"this is a row of a {shape} export, which import cannot read back: "
        "import the sft, csv or parquet export of the same store instead"
    )


def _sft_row(record: dict[str, Any]) -> ImportRow:
    prompt, completion = record["prompt"], record["completion"]
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise BadRow("'prompt' and 'completion' must be text")
    _require_unicode("prompt", prompt)
    _require_unicode("completion", completion)
    try:
        abstract = parse_completion_prompt(prompt)
    except ValueError as error:
        raise BadRow(str(error)) from error
    title = completion.strip()
    if not title:
        raise BadRow("the completion (title) is empty")
    return ImportRow(abstract=_required_abstract(abstract), curated_title=title)


def _record_row(record: dict[str, Any]) -> ImportRow:
    categories = record.get("categories")
    if isinstance(categories, list):
        categories = " ".join(str(category) for category in categories)
    date = _day(record.get("date"))
    if "reference_title" in record:  # titlecraft's own csv/parquet export, whose title is the curated one
        reference_title = _optional_text("reference_title", record["reference_title"])
        # Trimmed as an sft row's completion is: a spreadsheet cell's trailing newline is no part of the title.
        curated_title = (_optional_text("title", record.get("title")) or "").strip() or None
    else:
        reference_title, curated_title = _optional_text("title", record.get("title")), None
    return ImportRow(
        abstract=_required_abstract(record.get("abstract"), () if "abstract" in record else record),
        reference_title=reference_title,
        curated_title=curated_title,
        arxiv_id=_optional_text("arxiv_id", record.get("arxiv_id")),
        categories=_optional_text("categories", categories),
        date=_optional_text("date", date),
        source=_optional_text("source", record.get("source")),
    )


def _day(value: Any) -> Any:
    """A date, timestamp or ISO time as YYYY-MM-DD, the pair format's dates; anything else as given.

    Parquet date columns arrive as date objects, pandas' timestamps as datetimes.
    """
    from core.dataset import parse_day

    if value is None or not (hasattr(value, "isoformat") or isinstance(value, str)):
        return value
    text = value.isoformat() if hasattr(value, "isoformat") else value
    return parse_day(text) or value


def _required_abstract(value: Any, fields: Iterable[str] = ()) -> str:
    if not isinstance(value, str):
        found = f"; the row has {', '.join(repr(str(name)) for name in fields)}" if fields else ""
        raise BadRow(f"missing 'abstract' (it must be text{found})")
    if not value.strip():
        raise BadRow("the abstract is empty")
    return _require_unicode("abstract", value)


def _optional_text(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRow(f"'{key}' must be text, not {type(value).__name__}")
    return _require_unicode(key, value)


def _require_unicode(key: str, value: str) -> str:
    """JSON escapes can spell a lone surrogate ("\\ud800"), which is not text and cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRow(
            f"'{key}' holds a lone surrogate {value[error.start]!r} at character {error.start + 1}, which is not text"
        ) from None
    return value


def _guarded(parse, *args) -> ImportRow | BadRow:
    """Parse a row, returning the problem instead of raising so that the next rows still import."""
    try:
        return parse(*args)
    except BadRow as problem:
        return problem


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, ImportRow | BadRow]]:
    # strict: an unbalanced quote is an error, not a field that silently swallows the rest of the file.
    # skipinitialspace: after "abstract, title" the column is "title", and ', "a, b"' one quoted field.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True, skipinitialspace=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as error:
        raise TitlecraftError(f"{path} has a malformed CSV header ({error})") from None
    if fieldnames is None or "abstract" not in fieldnames:
        raise TitlecraftError(f"{path} has no 'abstract' column (columns: {fieldnames or 'none'})")
    start_line = reader.line_num + 1
    while True:
        try:
            with _csv_field_limit(len(text) + 1):
                record = next(reader, None)
        except csv.Error as error:
            yield f"line {start_line}", BadRow(
                f"malformed CSV in the row starting here ({error}), likely an unbalanced quote; the rest of the "
                "file was not read: fix it and import again (rows already imported are not imported twice)"
            )
            return
        if record is None:
            return
        yield f"line {start_line}", _guarded(_csv_record_row, record)
        start_line = reader.line_num + 1


@contextlib.contextmanager
def _csv_field_limit(limit: int) -> Iterator[None]:
    """Lift the csv module's process-wide field limit while our reader parses: a reader stopped by it
    mid-record resumes inside that record, so the limit is checked per row instead (CSV_FIELD_LIMIT)."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_record_row(record: dict[str | None, Any]) -> ImportRow:
    if None in record:
        raise BadRow("more fields than the header has columns")
    longest = max(len(value or "") for value in record.values())
    if longest > CSV_FIELD_LIMIT:
        raise BadRow(f"a field holds {longest:,} characters, more than the {CSV_FIELD_LIMIT:,} a CSV field may hold")
    return _record_row(record)


def _parquet_rows(path: Path) -> Iterator[tuple[str, ImportRow | BadRow]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise TitlecraftError(f"cannot read {path} as parquet: {error}") from error
    if "abstract" not in table.column_names:
        raise TitlecraftError(f"{path} has no 'abstract' column (columns: {', '.join(table.column_names)})")
    for number, record in enumerate(table.to_pylist(), start=1):
        yield f"row {number}", _guarded(_record_row, record)


def _plain_text_rows(text: str) -> Iterator[tuple[str, ImportRow | BadRow]]:
    """Abstracts separated by blank lines, each located by the line where it starts."""
    block: list[str] = []
    start = 0
    for number, line in enumerate([*text.split("\n"), ""], start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield f"line {start}", ImportRow(abstract="\n".join(block))
            block = []
