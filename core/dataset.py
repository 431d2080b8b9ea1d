"""Turn pair files into clean, unique, leak-free train/validation/test splits for fine-tuning.

The split is by date so that evaluation scores titles of papers newer than anything trained on; test
abstracts and titles are then removed from the earlier splits so that a re-posted paper cannot leak.
"""

from __future__ import annotations

import calendar
import email.utils
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from core.candidates import word_count
from core.errors import TitlecraftError, TitlecraftWarning
from core.paths import CSV_SUFFIXES, PARQUET_SUFFIXES, refuse_file_in_the_way, refuse_folder_as_data_file
from core.prompts import normalise_whitespace

PAIR_COLUMNS = ("arxiv_id", "title", "abstract", "categories", "date", "source")
PAIR_SCHEMA = pa.schema([(column, pa.string()) for column in PAIR_COLUMNS])
REQUIRED_COLUMNS = ("title", "abstract")
SPLITS = ("train", "validation", "test")
MIN_ABSTRACT_CHARS = 300
MIN_TITLE_WORDS = 3
DEFAULT_TRAIN_UNTIL = "2025-10-01"
DEFAULT_VAL_UNTIL = "2026-01-01"
# Token lengths are measured on a random sample: the histogram's shape and the percentiles are stable
# at this size, and tokenising all 188k shared abstracts would take most of prepare's time budget.
DEFAULT_TOKEN_SAMPLE = 20_000
TOKENIZE_BATCH = 1_000
HISTOGRAM_FILE = "token_lengths.png"
DROP_REASONS = {
    "short_abstract": f"abstract under {MIN_ABSTRACT_CHARS} characters",
    "short_title": f"title under {MIN_TITLE_WORDS} words",
    "category": "no requested category",
    "unreadable_date": "date given but not readable as YYYY-MM-DD",
    "duplicate_id": "same arXiv id as an earlier row (version ignored)",
    "duplicate_title": "same normalised title as an earlier row",
    "duplicate_abstract": "same normalised abstract as an earlier row",
    "undated_recent": "undated, and its arXiv id names a month from train-until on",
    "leak_test": "train/validation row whose title or abstract is in test",
    "leak_validation": "train row whose title or abstract is in validation",
}

Tokenizer = Callable[..., dict]  # a Hugging Face tokenizer, or anything called the same way


# ---------------------------------------------------------------- reading


def _magic(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(4)


def _read_parquet(path: Path) -> pd.DataFrame:
    if _magic(path) != b"PAR1":
        raise TitlecraftError(f"{path} is not a Parquet file (it lacks the Parquet signature)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise TitlecraftError(f"{path} could not be read as Parquet: {error}") from None
    return text_from_bytes(path, table).to_pandas()


def text_from_bytes(path: Path, table: pa.Table) -> pa.Table:
    """Binary pair columns as the UTF-8 text they hold: writers that store strings without parquet's UTF-8
    annotation (Hive, Impala, older Spark) give bytes, whose Python spelling "b'...'" became the titles
    and abstracts of every split. Other binary columns (a paper's PDF, a hash) are no text, and left alone."""
    for index, field in enumerate(table.schema):
        if field.name not in PAIR_COLUMNS:
            continue
        if not (pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type)):
            continue
        text_type = pa.large_string() if pa.types.is_large_binary(field.type) else pa.string()
        try:
            table = table.set_column(index, field.name, table.column(index).cast(text_type))
        except pa.ArrowInvalid:
            raise TitlecraftError(f"{path}: its column {field.name!r} holds bytes that are not UTF-8 text") from None
    return table


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"PAR1"):
        raise TitlecraftError(f"{path} is a Parquet file, not {path.suffix}; rename it to .parquet")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TitlecraftError(f"{path} is not valid UTF-8 text (bad byte at offset {error.start})") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(_decode(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise TitlecraftError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise TitlecraftError(f"{path}: line {number} is not a JSON object")
        if "\\u" in line:  # only an escape can spell a lone surrogate: the file was decoded as UTF-8
            _refuse_lone_surrogates(path, number, row)
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _refuse_lone_surrogates(path: Path, number: int, row: dict) -> None:
    """A JSON escape such as "\\ud800" spells half a character, which is not text: no parquet split can
    hold it, and the row failed as a traceback from deep inside pandas."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        surrogate = error.object[error.start]
        raise TitlecraftError(f"{path}: line {number} holds a lone surrogate {surrogate!r}, which is not text") from None


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(io.StringIO(_decode(path)), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, ValueError) as error:
        raise TitlecraftError(f"{path} could not be read as CSV: {error}") from None


# .pq too: import and train read parquet so named, and prepare and eval refused the same file.
_READERS = {**dict.fromkeys(PARQUET_SUFFIXES, _read_parquet), ".jsonl": _read_jsonl, **dict.fromkeys(CSV_SUFFIXES, _read_csv)}


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """Read one pair file (Parquet, JSONL or CSV) into the pair columns; anything else is a clear error.

    Only ``title`` and ``abstract`` are required; missing optional columns are empty, except ``source``,
    which defaults to the file name so that every row keeps its provenance.
    """
    path = Path(path)
    refuse_folder_as_data_file(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise TitlecraftError(f"{path}: unsupported file type {path.suffix!r}; use {', '.join(_READERS)}")
    if not path.is_file():
        raise TitlecraftError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise TitlecraftError(f"{path} is empty")
    frame = reader(path)
    if len(frame) == 0:
        raise TitlecraftError(f"{path} has no rows")
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise TitlecraftError(
            f"{path} lacks the column(s) {', '.join(missing)} "
            f"(pair files have {', '.join(PAIR_COLUMNS)}; title and abstract are required)"
        )
    frame = frame.reindex(columns=list(PAIR_COLUMNS)).astype(object).reset_index(drop=True)
    frame["source"] = frame["source"].where(frame["source"].notna(), path.name)
    return frame


# ---------------------------------------------------------------- cleaning

_ISO_DAY = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?")
_ARXIV_ID = re.compile(
    r"^(?:(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf)/|oai:arxiv\.org:|arxiv:)?(.+?)(?:v\d+)?(?:\.pdf)?/?$", re.I
)
# arXiv numbers a paper by the month of its first version: YYMM.NNNNN since April 2007, and
# archive/YYMMNNN before (hep-th/9901001, from 1991).
_ARXIV_ID_MONTH = re.compile(
    r"(?P<new_year>\d{2})(?P<new_month>\d{2})\.\d{4,5}|[a-z-]+(?:\.[A-Za-z-]+)?/(?P<year>\d{2})(?P<month>\d{2})\d{3}"
)


class _KeepAlphanumeric(dict):
    """A ``str.translate`` table that deletes every character but letters and digits, filled lazily.

    Several times faster than a regular expression on 188k abstracts.
    """

    def __missing__(self, codepoint: int) -> int | None:
        kept = codepoint if chr(codepoint).isalnum() else None
        self[codepoint] = kept
        return kept


_KEEP_ALPHANUMERIC = _KeepAlphanumeric()


def _is_missing(value) -> bool:
    return not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value))


def normalise_arxiv_id(value) -> str | None:
    """``arXiv:2501.01234v2``, an OAI identifier or an abs/pdf URL (any host spelling, with or without a
    scheme) becomes ``2501.01234``, so that versions of one paper are recognised as duplicates; empty
    values become None."""
    if _is_missing(value) or not str(value).strip():
        return None
    return _ARXIV_ID.match(str(value).strip()).group(1)


def text_key(text: str) -> str:
    """The form two texts are compared in for duplicates and leaks: lowercase alphanumerics only."""
    return text.lower().translate(_KEEP_ALPHANUMERIC)


def _clean_text(value) -> str:
    return "" if _is_missing(value) else normalise_whitespace(str(value))


def _clean_categories(value) -> str | None:
    if isinstance(value, (list, tuple, np.ndarray)):
        value = " ".join(map(str, value))
    text = _clean_text(value)
    return text or None


def parse_day(value) -> str | None:
    """The day of an ISO date or timestamp (``2025-9-30``, ``2025-12-31T23:59:00Z``) or of an RFC 2822
    date (arXiv's version dates) as YYYY-MM-DD, so that dates compare correctly as text; None for
    anything else, such as the ambiguous ``03/05/2026`` or the impossible ``2026-02-30``."""
    text = str(value).strip()
    iso = _ISO_DAY.fullmatch(text)
    try:
        if iso:
            return date(*map(int, iso.groups())).isoformat()
        return email.utils.parsedate_to_datetime(text).date().isoformat()
    except (TypeError, ValueError, OverflowError):
        return None


def clean_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Collapse whitespace in title and abstract, strip id versions, and write dates as YYYY-MM-DD.

    A date that is given but cannot be read is kept, as written, in ``unreadable_date`` so that
    :func:`filter_pairs` can drop its row instead of treating it as undated.
    """
    days = frame["date"].map(lambda value: None if _is_missing(value) else parse_day(value)).astype(object)
    given = frame["date"].map(lambda value: not _is_missing(value) and bool(str(value).strip()))
    return pd.DataFrame(
        {
            "arxiv_id": frame["arxiv_id"].map(normalise_arxiv_id).astype(object),
            "title": frame["title"].map(_clean_text).astype(object),
            "abstract": frame["abstract"].map(_clean_text).astype(object),
            "categories": frame["categories"].map(_clean_categories).astype(object),
            "date": days,
            "source": frame["source"].map(_clean_text).astype(object),
            "unreadable_date": frame["date"].where(given & days.isna(), None).astype(object),
        }
    )


def parse_categories(categories: str | Iterable[str] | None) -> frozenset[str] | None:
    """``"cs.CL,cs.AI"`` or a list of names as a set; None or empty means no category filter."""
    if categories is None:
        return None
    names = categories.split(",") if isinstance(categories, str) else categories
    wanted = frozenset(name.strip() for name in names if name.strip())
    return wanted or None


def _drop(frame: pd.DataFrame, mask: pd.Series, reason: str, dropped: dict[str, int]) -> pd.DataFrame:
    dropped[reason] += int(mask.sum())
    return frame[~mask]


def describe_all_dropped(dropped: dict[str, int]) -> str:
    """Why every row was dropped, in words: the reasons that dropped any, with their counts."""
    reasons = "; ".join(f"{DROP_REASONS[reason]}: {count:,}" for reason, count in dropped.items() if count)
    total = sum(dropped.values())
    if not total:
        return "the input files hold no rows"
    return f"{'the only row was' if total == 1 else f'all {total:,} rows were'} dropped ({reasons})"


def _drop_unreadable_dates(frame: pd.DataFrame, dropped: dict[str, int]) -> pd.DataFrame:
    """Drop rows whose date cannot be read, with a warning: guessing would put them in the wrong
    split, and treating them as undated would put test-period papers into train."""
    unreadable = frame["unreadable_date"].notna()
    if unreadable.any():
        # As text before unique(): a JSON object or list (MongoDB's {"$date": ...}) cannot be hashed.
        examples = ", ".join(map(repr, frame.loc[unreadable, "unreadable_date"].map(str).unique()[:3]))
        warnings.warn(
            f"{int(unreadable.sum()):,} row(s) dropped because their date is not readable as YYYY-MM-DD "
            f"(e.g. {examples}); write those dates as YYYY-MM-DD to keep the rows",
            TitlecraftWarning,
            stacklevel=3,
        )
    return _drop(frame, unreadable, "unreadable_date", dropped)


def _drop_other_categories(frame: pd.DataFrame, categories: frozenset[str], dropped: dict[str, int]) -> pd.DataFrame:
    """Keep rows in any of ``categories``, compared in any case as scrape --subcats compares them (arXiv's
    names never differ only in case). A requested name that no row has is named in a warning: cs.cv, or
    a typo, dropped all its rows without a word while the other names kept theirs."""
    wanted = {name.lower(): name for name in categories}
    row_categories = frame["categories"].map(lambda cats: set(cats.lower().split()) if isinstance(cats, str) else set())
    present = set().union(*row_categories)
    unmatched = sorted(name for key, name in wanted.items() if key not in present)
    if unmatched:
        warnings.warn(
            f"--categories {', '.join(unmatched)} matched no row; check the spelling (e.g. cs.CL)",
            TitlecraftWarning,
            stacklevel=4,
        )
    in_category = row_categories.map(lambda cats: not cats.isdisjoint(wanted))
    return _drop(frame, ~in_category.astype(bool), "category", dropped)


def filter_pairs(frame: pd.DataFrame, categories: frozenset[str] | None, dropped: dict[str, int]) -> pd.DataFrame:
    """Drop short texts, unwanted categories, unreadable dates and duplicates; the first occurrence of a
    duplicate wins."""
    frame = _drop(frame, frame["abstract"].str.len() < MIN_ABSTRACT_CHARS, "short_abstract", dropped)
    # Words as the candidate flags count them: Chinese and Japanese titles, written without spaces, were one
    # "word" each, and every such row was dropped as short.
    frame = _drop(frame, frame["title"].map(word_count) < MIN_TITLE_WORDS, "short_title", dropped)
    if categories:
        frame = _drop_other_categories(frame, categories, dropped)
    frame = _drop_unreadable_dates(frame, dropped)
    repeated_id = frame["arxiv_id"].notna() & frame.duplicated("arxiv_id")
    frame = _drop(frame, repeated_id, "duplicate_id", dropped)
    frame = frame.assign(
        title_key=frame["title"].map(text_key), abstract_key=frame["abstract"].map(text_key)
    )
    return _drop(frame, frame.duplicated("title_key"), "duplicate_title", dropped)


# ---------------------------------------------------------------- splitting


def check_split_dates(train_until: str | date, val_until: str | date) -> tuple[str, str]:
    """Both boundaries as YYYY-MM-DD, with validation starting before test."""
    bounds = []
    for name, value in (("train-until", train_until), ("val-until", val_until)):
        try:
            bounds.append(date.fromisoformat(str(value)).isoformat())
        except ValueError:
            raise TitlecraftError(f"{name} {value!r} is not a date (expected YYYY-MM-DD)") from None
    if bounds[0] >= bounds[1]:
        raise TitlecraftError(f"train-until ({bounds[0]}) must be earlier than val-until ({bounds[1]})")
    return bounds[0], bounds[1]


def arxiv_month_end(arxiv_id) -> str | None:
    """The last day (YYYY-MM-DD) of the month a normalised arXiv id was first submitted in, which the id
    names; None for an id without one (or no id)."""
    match = _ARXIV_ID_MONTH.fullmatch(arxiv_id) if isinstance(arxiv_id, str) else None
    if match is None:
        return None
    if match["new_year"] is not None:
        year, month = 2000 + int(match["new_year"]), int(match["new_month"])
    else:
        short_year, month = int(match["year"]), int(match["month"])
        year = (1900 if short_year >= 91 else 2000) + short_year
    if not 1 <= month <= 12:
        return None
    return date(year, month, calendar.monthrange(year, month)[1]).isoformat()


def drop_undated_of_later_months(frame: pd.DataFrame, train_until: str, dropped: dict[str, int]) -> pd.DataFrame:
    """Drop undated rows whose arXiv id names a month ending on or after ``train_until``: undated rows go
    to train, which put papers of the validation and test months there to train the model that test then
    scores. Their day is unknown, so they are not moved into validation or test either: those keep the
    papers dated in their windows (and the seeded evaluation selections drawn from them)."""
    month_end = frame["arxiv_id"].where(frame["date"].isna()).map(arxiv_month_end).fillna("")
    return _drop(frame, month_end.ge(train_until), "undated_recent", dropped)


def split_by_date(frame: pd.DataFrame, train_until: str, val_until: str) -> dict[str, pd.DataFrame]:
    """train: before ``train_until`` or undated; validation: up to ``val_until``; test: the rest."""
    dated = frame["date"].notna()
    is_test = dated & (frame["date"] >= val_until)
    is_validation = dated & (frame["date"] >= train_until) & ~is_test
    return {
        "train": frame[~is_test & ~is_validation],
        "validation": frame[is_validation],
        "test": frame[is_test],
    }


def _overlaps(frame: pd.DataFrame, newer: pd.DataFrame) -> pd.Series:
    titles = set(newer["title_key"]) - {""}
    abstracts = set(newer["abstract_key"]) - {""}
    return frame["title_key"].isin(titles) | frame["abstract_key"].isin(abstracts)


def remove_leaks(splits: dict[str, pd.DataFrame], dropped: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Drop train/validation rows sharing a title or abstract with test, then train rows shared with validation."""
    splits = dict(splits)
    for name in ("train", "validation"):
        splits[name] = _drop(splits[name], _overlaps(splits[name], splits["test"]), "leak_test", dropped)
    splits["train"] = _drop(
        splits["train"], _overlaps(splits["train"], splits["validation"]), "leak_validation", dropped
    )
    return splits


def drop_repeated_abstracts(splits: dict[str, pd.DataFrame], dropped: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Drop rows repeating an abstract of an earlier row of their split: one abstract under two titles (a
    paper's abstract filed with another's title) is a contradicting target, and scored twice in test.
    Copies across splits are leaks, which remove_leaks settles in favour of the later split."""
    return {
        name: _drop(frame, frame["abstract_key"].ne("") & frame.duplicated("abstract_key"), "duplicate_abstract", dropped)
        for name, frame in splits.items()
    }


# ---------------------------------------------------------------- statistics


def token_lengths(tokenizer: Tokenizer, texts: Sequence[str], bar: tqdm | None = None) -> list[int]:
    """Token counts of ``texts`` (no special tokens), tokenised in batches for a fast tokenizer."""
    lengths: list[int] = []
    for start in range(0, len(texts), TOKENIZE_BATCH):
        batch = list(texts[start : start + TOKENIZE_BATCH])
        encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False)
        lengths += [len(ids) for ids in encoded["input_ids"]]
        if bar is not None:
            bar.update(len(batch))
    return lengths


def _length_stats(lengths: Sequence[int]) -> dict[str, float]:
    if not lengths:
        return {}
    values = np.asarray(lengths)
    # Rounded like the mean: interpolated percentiles carry float noise (a p95 of 1144.1499999999992).
    return {
        "mean": round(float(values.mean()), 1),
        "median": round(float(np.median(values)), 1),
        "p95": round(float(np.percentile(values, 95)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
        "max": int(values.max()),
    }


def _counts_by(splits: dict[str, pd.DataFrame], key: Callable[[pd.DataFrame], pd.Series]) -> dict[str, dict]:
    counts = {name: key(frame).value_counts() for name, frame in splits.items()}
    keys = sorted(set().union(*(c.index for c in counts.values())), key=str)
    return {k: {name: int(counts[name].get(k, 0)) for name in SPLITS} for k in keys}


def _primary_category(frame: pd.DataFrame) -> pd.Series:
    return frame["categories"].map(lambda cats: cats.split()[0] if isinstance(cats, str) else "(none)")


def _year(frame: pd.DataFrame) -> pd.Series:
    return frame["date"].map(lambda day: day[:4] if isinstance(day, str) else "undated")


def _date_range(frame: pd.DataFrame) -> list[str] | None:
    dates = frame["date"].dropna()
    return [dates.min(), dates.max()] if len(dates) else None


def build_summary(
    inputs: Sequence[tuple[Path, int]],
    splits: dict[str, pd.DataFrame],
    dropped: dict[str, int],
    parameters: dict,
    tokens: dict,
) -> dict:
    per_category = _counts_by(splits, _primary_category)
    return {
        "inputs": [{"path": str(path), "rows": rows} for path, rows in inputs],
        "rows_read": sum(rows for _, rows in inputs),
        "parameters": parameters,
        "splits": {name: len(frame) for name, frame in splits.items()},
        "date_ranges": {name: _date_range(frame) for name, frame in splits.items()},
        "undated_in_train": int(splits["train"]["date"].isna().sum()),
        "dropped": dropped,
        "per_primary_category": dict(sorted(per_category.items(), key=lambda item: -sum(item[1].values()))),
        "per_year": _counts_by(splits, _year),
        "token_lengths": tokens,
    }


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(f"{cell:,}" if isinstance(cell, int) else str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def render_summary_markdown(summary: dict) -> str:
    """The summary as a readable Markdown report next to the splits."""
    parameters, tokens = summary["parameters"], summary["token_lengths"]
    categories = ", ".join(parameters["categories"]) if parameters["categories"] else "all"
    lines = [
        "# Prepared dataset",
        "",
        f"{summary['rows_read']:,} rows read from {len(summary['inputs'])} file(s): "
        + ", ".join(f"`{item['path']}` ({item['rows']:,})" for item in summary["inputs"])
        + ".",
        "",
        f"Split by date: train before {parameters['train_until']} (and the {summary['undated_in_train']:,} "
        f"undated rows), validation until {parameters['val_until']}, test from then on. Categories: {categories}.",
        "",
        "## Rows per split",
        "",
        *_table(
            ["Split", "Rows", "First date", "Last date"],
            [(name, rows, *(summary["date_ranges"][name] or ["–", "–"])) for name, rows in summary["splits"].items()],
        ),
        "## Dropped rows",
        "",
        *_table(["Reason", "Rows"], [(DROP_REASONS[reason], count) for reason, count in summary["dropped"].items()]),
        "## Rows per primary category",
        "",
        *_table(["Category", *SPLITS], [(k, *v.values()) for k, v in summary["per_primary_category"].items()]),
        "## Rows per year",
        "",
        *_table(["Year", *SPLITS], [(k, *v.values()) for k, v in summary["per_year"].items()]),
        "## Token lengths",
        "",
        f"Tokenizer `{tokens['tokenizer']}`, measured on {tokens['rows']:,} of {tokens['of']:,} rows.",
        "",
        *_table(
            ["Field", "mean", "median", "p95", "p99", "max"],
            [(field, *tokens[field].values()) for field in ("abstract", "title") if tokens[field]],
        ),
        f"![Token lengths]({HISTOGRAM_FILE})",
        "",
    ]
    return "\n".join(lines)


def _integer_bins(lengths: Sequence[int], target: int = 60) -> np.ndarray:
    """Bin edges on whole tokens, so that no bar silently holds more token counts than its neighbours."""
    low, high = min(lengths), max(lengths)
    width = max(1, -(-(high - low + 1) // target))
    return np.arange(low, high + width + 1, width) - 0.5


def plot_token_lengths(abstract_lengths: Sequence[int], title_lengths: Sequence[int], caption: str, path: Path) -> None:
    """Histograms of abstract and title token lengths with their 95th percentile, drawn off-screen (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, lengths, field in zip(figure.subplots(1, 2), (abstract_lengths, title_lengths), ("Abstract", "Title")):
        axes.hist(lengths, bins=_integer_bins(lengths), color="#4c72b0")
        p95 = np.percentile(lengths, 95)
        axes.axvline(p95, color="#c44e52", linestyle="--", label=f"95th percentile: {p95:.0f}")
        axes.set_xlabel("tokens")
        axes.set_ylabel("rows")
        axes.set_title(f"{field} length")
        axes.legend()
    figure.suptitle(caption)
    figure.savefig(path, dpi=100)


# ---------------------------------------------------------------- writing and loading


PREPARED_FILES = frozenset({*(f"{name}.parquet" for name in SPLITS), "summary.json", "summary.md", HISTOGRAM_FILE})


def refuse_other_files(out_dir: Path) -> None:
    """Refuse an output folder holding files prepare does not write: the new set replaces the whole
    folder (see _write_outputs), which would take them with it."""
    others = sorted(path.name for path in out_dir.iterdir()) if out_dir.is_dir() else []
    others = [name for name in others if name not in PREPARED_FILES]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise TitlecraftError(
            f"--out {out_dir} holds files prepare does not write ({shown}); it replaces the whole folder, "
            "so choose another one or move them out"
        )


def _create_parent_folder(out_dir: Path) -> None:
    """Create the folder --out goes in before any input is read: made only when the outputs were written,
    one that cannot be made failed after reading, cleaning and tokenising, naming the hidden work folder."""
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or error
        raise TitlecraftError(f"cannot write --out {out_dir}: its folder {parent} cannot be created ({reason})") from None
    if not os.access(parent, os.W_OK):
        raise TitlecraftError(f"cannot write --out {out_dir}: its folder {parent} is not writable")


def _write_outputs(out_dir: Path, splits: dict[str, pd.DataFrame], summary: dict, lengths: tuple[list, list]) -> None:
    """Write the new set into a work folder beside ``out_dir``, then swap folders: the old set is
    renamed away, the new one renamed into place. Moving its files in one by one, a kill in between
    left old and new splits side by side without a sign (a test split de-leaked against another
    run's train split); a kill between the two renames leaves no ``out_dir`` at all, which every
    reader reports, and the old set in the hidden work folder."""
    out_dir = out_dir.resolve()  # a symlinked folder: its target is replaced, the link kept
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    new_set = work / "new"
    try:
        new_set.mkdir()  # inside the work folder, as mkdtemp's own folder is private (mode 0700)
        for name, frame in splits.items():
            table = pa.Table.from_pandas(frame[list(PAIR_COLUMNS)], schema=PAIR_SCHEMA, preserve_index=False)
            pq.write_table(table, new_set / f"{name}.parquet")
        (new_set / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
        (new_set / "summary.md").write_text(render_summary_markdown(summary), encoding="utf-8")
        tokens = summary["token_lengths"]
        caption = f"{tokens['tokenizer']}: {tokens['rows']:,} of {tokens['of']:,} rows"
        plot_token_lengths(*lengths, caption, new_set / HISTOGRAM_FILE)
        if out_dir.exists():
            os.replace(out_dir, work / "old")
        os.replace(new_set, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    tokenizer: Tokenizer,
    tokenizer_name: str | None = None,
    train_until: str | date = DEFAULT_TRAIN_UNTIL,
    val_until: str | date = DEFAULT_VAL_UNTIL,
    categories: str | Iterable[str] | None = None,
    token_sample: int | None = DEFAULT_TOKEN_SAMPLE,
    progress: bool = True,
) -> dict:
    """Read, clean, de-duplicate, split by date and de-leak pair files; write the splits and a summary.

    ``out_dir`` receives train/validation/test.parquet, summary.json, summary.md and the token-length
    histogram, replacing the whole folder at once; nothing is written there unless every step succeeds,
    and a folder holding other files is refused. ``token_sample`` rows (None or 0:
    all) are tokenised for the length statistics, labelled ``tokenizer_name``. Returns the summary.
    """
    if not inputs:
        raise TitlecraftError("no input files given")
    refuse_file_in_the_way(out_dir, folder=True)  # now, not after the inputs were read, cleaned and tokenised
    refuse_other_files(Path(out_dir))
    if token_sample is not None and token_sample < 0:
        raise TitlecraftError(f"--token-sample {token_sample} is not a number of rows: give a positive number, or 0 for all")
    train_until, val_until = check_split_dates(train_until, val_until)
    _create_parent_folder(Path(out_dir))
    wanted = parse_categories(categories)
    dropped = dict.fromkeys(DROP_REASONS, 0)
    paths = [Path(path) for path in inputs]
    with tqdm(total=len(paths) + 2, desc="prepare", unit="step", disable=not progress) as bar:
        frames = []
        for path in paths:
            bar.set_postfix_str(path.name)
            frames.append(read_pairs(path))
            bar.update()
        bar.set_postfix_str("clean and de-duplicate")
        frame = filter_pairs(clean_pairs(pd.concat(frames, ignore_index=True)), wanted, dropped)
        bar.update()
        bar.set_postfix_str("split and de-leak")
        frame = drop_undated_of_later_months(frame, train_until, dropped)
        splits = drop_repeated_abstracts(remove_leaks(split_by_date(frame, train_until, val_until), dropped), dropped)
        bar.update()
    kept = pd.concat(splits.values())
    if kept.empty:
        raise TitlecraftError(f"no rows are left: {describe_all_dropped(dropped)}")
    for name in SPLITS:
        if splits[name].empty:
            warnings.warn(f"the {name} split is empty; check --train-until/--val-until", TitlecraftWarning, stacklevel=2)
    sample = kept if not token_sample or token_sample >= len(kept) else kept.sample(token_sample, random_state=0)
    with tqdm(total=2 * len(sample), desc="tokenise", unit="text", disable=not progress) as bar:
        abstract_lengths = token_lengths(tokenizer, sample["abstract"].tolist(), bar)
        title_lengths = token_lengths(tokenizer, sample["title"].tolist(), bar)
    tokens = {
        "tokenizer": tokenizer_name or getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__,
        "rows": len(sample),
        "of": len(kept),
        "abstract": _length_stats(abstract_lengths),
        "title": _length_stats(title_lengths),
    }
    parameters = {
        "train_until": train_until,
        "val_until": val_until,
        "categories": sorted(wanted) if wanted else None,
        "min_abstract_chars": MIN_ABSTRACT_CHARS,
        "min_title_words": MIN_TITLE_WORDS,
    }
    summary = build_summary([(p, len(f)) for p, f in zip(paths, frames)], splits, dropped, parameters, tokens)
    _write_outputs(Path(out_dir), splits, summary, (abstract_lengths, title_lengths))
    return summary


def load_split(path: str | os.PathLike):
    """One prepared split as an in-memory ``datasets.Dataset`` (no cache files are written)."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    path = Path(path)
    if not path.is_file():
        raise TitlecraftError(f"{path}: no such split; run `titlecraft prepare` first")
    try:
        return Dataset(InMemoryTable(pq.read_table(path)))
    except (pa.ArrowException, OSError) as error:
        raise TitlecraftError(f"{path} could not be read as Parquet: {error}") from None


def load_splits(folder: str | os.PathLike):
    """The train/validation/test splits written by :func:`prepare` as a ``datasets.DatasetDict``."""
    from datasets import DatasetDict

    return DatasetDict({name: load_split(Path(folder) / f"{name}.parquet") for name in SPLITS})
