"""Preparing splits: cleaning, de-duplication, date split, leak removal, outputs, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from shared_pairs import SHARED_PAIRS

from core.cli import main
from core.dataset import (
    DROP_REASONS,
    PAIR_COLUMNS,
    HISTOGRAM_FILE,
    SPLITS,
    load_split,
    load_splits,
    normalise_arxiv_id,
    prepare,
    read_pairs,
    text_key,
)
from core.errors import TitlecraftError, TitlecraftWarning

OUTPUT_FILES = {*(f"{name}.parquet" for name in SPLITS), "summary.json", "summary.md", HISTOGRAM_FILE}


class WordTokenizer:
    """A stand-in for a Hugging Face tokenizer: one token per word, called the same way."""

    name_or_path = "words"

    def __call__(self, texts, **_options):
        return {"input_ids": [text.split() for text in texts]}


def pair(number: int, date: str | None, **fields) -> dict:
    words = " ".join(f"word{number}n{i}" for i in range(50))
    row = {
        "arxiv_id": f"2001.{number:05d}",
        "title": f"Learning Topic {number} With Care",
        "abstract": f"We study topic {number} in depth. {words}.",
        "categories": "cs.CL cs.AI",
        "date": date,
        "source": "test",
    }
    return {**row, **fields}


def write_parquet(rows: list[dict], path: Path) -> Path:
    pd.DataFrame(rows).to_parquet(path)
    return path


def prepare_rows(rows: list[dict], tmp_path: Path, **options) -> tuple[dict, dict[str, pd.DataFrame]]:
    source = write_parquet(rows, tmp_path / "pairs.parquet")
    out = tmp_path / "prepared"
    summary = prepare([source], out, tokenizer=WordTokenizer(), progress=False, **options)
    return summary, {name: pd.read_parquet(out / f"{name}.parquet") for name in SPLITS}


def test_cleans_deduplicates_and_splits_by_date(tmp_path):
    rows = [
        pair(1, "2024-05-01", title="Learning  Topic 1\n   With Care", abstract=pair(1, None)["abstract"].replace(" ", "\n ", 3)),
        pair(2, None),
        pair(3, "2025-10-01"),
        pair(4, "2025-12-31T23:59:00Z"),
        pair(5, "2026-01-01"),
        pair(6, "2024-01-01", abstract="Too short to be an abstract."),
        pair(7, "2024-01-01", title="Short Title"),
        pair(8, "2024-02-01", arxiv_id="2001.00001v3", title="A Different Title Entirely Here"),
        pair(9, "2024-03-01", title="learning topic-1: with care!"),
        pair(10, "2025-9-30"),  # not zero-padded: still before 2025-10-01
    ]
    summary, splits = prepare_rows(rows, tmp_path)

    train = splits["train"]
    assert list(train["arxiv_id"]) == ["2001.00001", "2001.00002", "2001.00010"]
    assert train["title"].iloc[0] == "Learning Topic 1 With Care"
    assert "\n" not in train["abstract"].iloc[0] and "  " not in train["abstract"].iloc[0]
    assert train["date"].isna().sum() == 1  # undated rows go to train
    assert train["date"].iloc[2] == "2025-09-30"
    assert list(splits["validation"]["arxiv_id"]) == ["2001.00003", "2001.00004"]
    assert list(splits["validation"]["date"]) == ["2025-10-01", "2025-12-31"]
    assert list(splits["test"]["arxiv_id"]) == ["2001.00005"]
    assert summary["splits"] == {"train": 3, "validation": 2, "test": 1}
    assert summary["dropped"] == {
        "short_abstract": 1,
        "short_title": 1,
        "category": 0,
        "unreadable_date": 0,
        "duplicate_id": 1,
        "duplicate_title": 1,
        "duplicate_abstract": 0,
        "undated_recent": 0,
        "leak_test": 0,
        "leak_validation": 0,
    }
    assert summary["per_year"]["undated"] == {"train": 1, "validation": 0, "test": 0}
    assert summary["per_primary_category"] == {"cs.CL": {"train": 3, "validation": 2, "test": 1}}
    assert summary["token_lengths"]["title"]["max"] == 5
    out = tmp_path / "prepared"
    assert {path.name for path in out.iterdir()} == OUTPUT_FILES
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "| train | 3 | 2024-05-01 | 2025-09-30 |" in (out / "summary.md").read_text()
    assert (out / HISTOGRAM_FILE).read_bytes().startswith(b"\x89PNG")
    assert pq.read_schema(out / "train.parquet").names == list(PAIR_COLUMNS)


def test_dates_are_read_strictly_and_unreadable_ones_are_dropped_with_a_warning(tmp_path):
    rows = [
        pair(1, "Thu, 5 Mar 2026 10:00:00 GMT"),  # RFC 2822, as arXiv writes version dates
        pair(2, "03/05/2026"),  # March or May: not guessed
        pair(3, "20260305"),
        pair(4, "2026-02-30"),
        pair(5, None),
        pair(6, "2024-1-2"),
        pair(7, "2025-11-1"),
    ]
    with pytest.warns(TitlecraftWarning, match=r"3 row\(s\) dropped because their date is not readable.*'03/05/2026'"):
        summary, splits = prepare_rows(rows, tmp_path)
    assert [list(splits[name]["arxiv_id"]) for name in SPLITS] == [["2001.00005", "2001.00006"], ["2001.00007"], ["2001.00001"]]
    assert list(splits["train"]["date"].fillna("undated")) == ["undated", "2024-01-02"]
    assert list(splits["validation"]["date"]) == ["2025-11-01"]
    assert list(splits["test"]["date"]) == ["2026-03-05"]
    assert summary["dropped"]["unreadable_date"] == 3 and summary["undated_in_train"] == 1
    assert "| date given but not readable as YYYY-MM-DD | 3 |" in (tmp_path / "prepared" / "summary.md").read_text()


def test_a_date_written_as_a_json_object_or_list_is_dropped_as_unreadable(tmp_path):
    """A MongoDB export writes dates as {"$date": ...}: prepare stopped with a pandas traceback
    (unhashable type: 'dict') while naming examples of unreadable dates, instead of naming them."""
    path = tmp_path / "pairs.jsonl"
    rows = [pair(1, "2024-01-02"), pair(2, {"$date": "2024-01-03T00:00:00Z"}), pair(3, ["2024-01-04"])]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.warns(TitlecraftWarning, match=r"2 row\(s\) dropped .*\"\{'\$date': '2024-01-03T00:00:00Z'\}\""):
        summary = prepare([path], tmp_path / "prepared", tokenizer=WordTokenizer(), progress=False)
    assert summary["splits"]["train"] == 1 and summary["dropped"]["unreadable_date"] == 2


def test_an_undated_row_whose_arxiv_id_names_a_later_month_is_kept_out_of_train(tmp_path):
    """Undated rows all went to train, so papers from the validation and test months (7 of the shared
    pairs, 2602.08028 among them) trained the model that test then scores; an arXiv id names the month."""
    rows = [
        pair(1, None, arxiv_id="2509.00001"),
        pair(2, None, arxiv_id="2510.00002"),
        pair(3, None, arxiv_id="2602.08028v2"),
        pair(4, None, arxiv_id="hep-th/9901001"),
        pair(5, None, arxiv_id=None),
        pair(6, "2024-01-01"),
        pair(7, "2026-02-01"),
    ]
    summary, splits = prepare_rows(rows, tmp_path)
    assert [sorted(splits[name]["arxiv_id"].fillna("none")) for name in SPLITS] == [
        ["2001.00006", "2509.00001", "hep-th/9901001", "none"],
        [],
        ["2001.00007"],
    ]
    assert summary["dropped"]["undated_recent"] == 2 and summary["undated_in_train"] == 3
    assert f"| {DROP_REASONS['undated_recent']} | 2 |" in (tmp_path / "prepared" / "summary.md").read_text()
    # A month that straddles --train-until counts by its last day: it may hold papers after the boundary.
    summary, _ = prepare_rows([rows[0], rows[5]], tmp_path, train_until="2025-09-15")
    assert summary["dropped"]["undated_recent"] == 1


def test_an_abstract_repeated_under_another_title_and_id_is_dropped(tmp_path):
    """The shared pairs hold 19 abstracts twice, under two arXiv ids and two titles (one paper's abstract
    filed under another's title): both were kept, so a split trained on, or scored, one abstract twice
    with contradicting titles."""
    first = pair(1, "2026-02-01")
    rows = [first, pair(2, "2026-02-02", abstract=first["abstract"].upper().replace(" ", "  ")), pair(3, "2026-02-03")]
    summary, splits = prepare_rows(rows, tmp_path)
    assert list(splits["test"]["arxiv_id"]) == ["2001.00001", "2001.00003"]
    assert summary["dropped"]["duplicate_abstract"] == 1
    assert "| same normalised abstract as an earlier row | 1 |" in (tmp_path / "prepared" / "summary.md").read_text()


def test_test_titles_and_abstracts_do_not_leak_into_earlier_splits(tmp_path):
    test_row = pair(1, "2026-02-01")
    validation_row = pair(2, "2025-11-01")
    rows = [
        test_row,
        validation_row,
        pair(3, "2024-01-01", abstract=test_row["abstract"].upper()),  # same abstract, other case
        pair(4, "2025-11-02", abstract=test_row["abstract"]),  # validation copy of a test abstract
        pair(5, "2024-01-01", abstract=validation_row["abstract"] + " "),
        pair(6, "2024-01-01"),
    ]
    summary, splits = prepare_rows(rows, tmp_path)
    assert [list(splits[name]["arxiv_id"]) for name in SPLITS] == [["2001.00006"], ["2001.00002"], ["2001.00001"]]
    assert summary["dropped"]["leak_test"] == 2 and summary["dropped"]["leak_validation"] == 1


def test_category_filter_and_split_dates_are_configurable(tmp_path):
    rows = [
        pair(1, "2020-01-01", categories="cs.CV"),
        pair(2, "2020-06-01", categories="cs.LG stat.ML"),
        pair(3, "2021-01-01", categories=None),
        pair(4, "2021-06-01", categories="stat.ML"),
    ]
    summary, splits = prepare_rows(
        rows, tmp_path, categories="stat.ML, cs.CV", train_until="2020-03-01", val_until="2021-01-01"
    )
    assert [list(splits[name]["arxiv_id"]) for name in SPLITS] == [["2001.00001"], ["2001.00002"], ["2001.00004"]]
    assert summary["dropped"]["category"] == 1
    assert summary["parameters"]["categories"] == ["cs.CV", "stat.ML"]
    with pytest.raises(TitlecraftError, match="must be earlier"):
        prepare_rows(rows, tmp_path, train_until="2021-01-01", val_until="2020-01-01")
    with pytest.raises(TitlecraftError, match="is not a date"):
        prepare_rows(rows, tmp_path, val_until="soon")


def test_a_requested_category_is_matched_in_any_case_and_one_no_row_has_is_named(tmp_path):
    """--categories cs.CL,cs.cv kept the cs.CL rows and dropped every cs.CV row without a word (scrape's
    --subcats match in any case); a misspelt name dropped its rows as silently."""
    rows = [pair(1, "2020-01-01", categories="cs.CV"), pair(2, "2020-06-01", categories="cs.CL stat.ML"),
            pair(3, "2021-01-01", categories="math.OC")]
    with pytest.warns(TitlecraftWarning, match="--categories cs.Al matched no row"):
        summary, splits = prepare_rows(rows, tmp_path, categories="cs.cv,CS.CL,cs.Al")
    assert sorted(pd.concat(splits.values())["arxiv_id"]) == ["2001.00001", "2001.00002"]
    assert summary["dropped"]["category"] == 1


def test_empty_splits_warn_and_load_as_datasets(tmp_path):
    with pytest.warns(TitlecraftWarning, match="validation split is empty"):
        prepare_rows([pair(1, "2020-01-01"), pair(2, "2026-05-01")], tmp_path)
    splits = load_splits(tmp_path / "prepared")
    assert {name: len(split) for name, split in splits.items()} == {"train": 1, "validation": 0, "test": 1}
    assert splits["train"].column_names == list(PAIR_COLUMNS)
    assert splits["test"][0]["title"] == "Learning Topic 2 With Care"
    with pytest.raises(TitlecraftError, match="no such split"):
        load_split(tmp_path / "missing.parquet")
    with pytest.warns(TitlecraftWarning, match="train split is empty"):
        prepare_rows([pair(1, "2025-11-01"), pair(2, "2026-05-01")], tmp_path)


def test_parquet_jsonl_and_csv_read_alike(tmp_path):
    rows = [pair(1, "2024-01-01", title="Line\u2028Separated Title Here"), pair(2, None, source=None)]
    frame = pd.DataFrame(rows)
    frame.to_parquet(tmp_path / "p.parquet")
    frame.to_json(tmp_path / "p.jsonl", orient="records", lines=True, force_ascii=False)
    frame.drop(columns=["source"]).to_csv(tmp_path / "p.csv", index=False)
    parquet, jsonl, csv = (read_pairs(tmp_path / f"p.{ext}") for ext in ("parquet", "jsonl", "csv"))
    assert parquet["title"].tolist() == jsonl["title"].tolist() == csv["title"].tolist()
    assert parquet["source"].tolist() == ["test", "p.parquet"]  # missing provenance: the file name
    assert csv["source"].tolist() == ["p.csv", "p.csv"]


def test_a_parquet_file_storing_text_as_bytes_is_read_as_text(tmp_path):
    """Writers that store strings without parquet's UTF-8 annotation (Hive, Impala, older Spark) give
    binary columns: prepare wrote their titles and abstracts as "b'...'", the Python spelling of bytes,
    into every split without a word. They are read as the UTF-8 text they hold, and bytes that are not
    UTF-8 are a clear error."""
    rows = [pair(1, "2024-01-01"), pair(2, None)]
    table = pa.Table.from_pylist(rows)
    for name in ("title", "abstract", "arxiv_id"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.cast(table[name], pa.binary()))
    pq.write_table(table, tmp_path / "binary.parquet")
    frame = read_pairs(tmp_path / "binary.parquet")
    assert frame["title"].tolist() == [row["title"] for row in rows]
    assert frame["abstract"].tolist() == [row["abstract"] for row in rows]
    assert frame["arxiv_id"].tolist() == ["2001.00001", "2001.00002"]

    not_utf8 = pa.table({"title": pa.array([b"A \xff B C"]), "abstract": pa.array(["x"])})
    pq.write_table(not_utf8, tmp_path / "latin1.parquet")
    with pytest.raises(TitlecraftError, match=r"latin1.parquet: its column 'title' holds bytes that are not UTF-8 text"):
        read_pairs(tmp_path / "latin1.parquet")


def test_a_binary_column_that_is_no_pair_column_is_left_alone(tmp_path):
    """Only the pair columns are read as text: a file that also stores, say, each paper's PDF or a hash as
    bytes was refused as 'holds bytes that are not UTF-8 text' over a column that read_pairs drops anyway."""
    rows = [pair(1, "2024-01-01"), pair(2, "2024-01-02")]
    table = pa.Table.from_pylist(rows).append_column("pdf", pa.array([b"%PDF-\xff\xfe", b"\x89PNG\x00"]))
    pq.write_table(table, tmp_path / "with_pdf.parquet")
    frame = read_pairs(tmp_path / "with_pdf.parquet")
    assert frame["title"].tolist() == [row["title"] for row in rows]
    assert "pdf" not in frame.columns


def test_ids_and_text_keys_normalise():
    assert normalise_arxiv_id("arXiv:2501.01234v2") == "2501.01234"
    assert normalise_arxiv_id("https://arxiv.org/abs/hep-th/9901001v1") == "hep-th/9901001"
    for spelling in (
        "https://www.arxiv.org/abs/2501.01234v3",
        "arxiv.org/abs/2501.01234",
        "http://export.arxiv.org/pdf/2501.01234v1.pdf",
        "oai:arXiv.org:2501.01234",
        "https://arxiv.org/abs/2501.01234/",
    ):
        assert normalise_arxiv_id(spelling) == "2501.01234", spelling
    assert normalise_arxiv_id("oai:arXiv.org:hep-th/9901001") == "hep-th/9901001"
    assert normalise_arxiv_id(" ") is None
    assert text_key("Étude: GPT-4's (Über) Ranking_2!") == "étudegpt4süberranking2"


def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([pair(1, None)]), sink)
    return sink.getvalue().to_pybytes()


BAD_INPUTS = {
    "parquet named csv": ("pairs.csv", _parquet_bytes(), "is a Parquet file, not .csv"),
    "csv named parquet": ("pairs.parquet", b"title,abstract\nA B C,text\n", "is not a Parquet file"),
    "truncated parquet": ("pairs.parquet", _parquet_bytes()[:200], "could not be read as Parquet"),
    "csv named jsonl": ("pairs.jsonl", b"title,abstract\nA B C,text\n", "line 1 is not valid JSON"),
    "jsonl of arrays": ("pairs.jsonl", b'["title", "abstract"]\n', "line 1 is not a JSON object"),
    "missing columns": ("pairs.csv", b"title,summary\nA B C,text\n", "lacks the column(s) abstract"),
    "invalid utf-8 csv": ("pairs.csv", b"title,abstract\nA \xff B C,text\n", "is not valid UTF-8"),
    "invalid utf-8 jsonl": ("pairs.jsonl", b'{"title": "A \xc3 B", "abstract": "x"}\n', "is not valid UTF-8"),
    # A JSON escape can spell half a character, which no parquet split can hold: it was a traceback.
    "lone surrogate jsonl": (
        "pairs.jsonl", b'{"title": "A B C", "abstract": "x"}\n{"title": "A B \\ud800", "abstract": "x"}\n',
        "line 2 holds a lone surrogate '\\ud800', which is not text",
    ),
    "empty parquet": ("pairs.parquet", b"", "is empty"),
    "empty jsonl": ("pairs.jsonl", b"", "is empty"),
    "header only csv": ("pairs.csv", b"title,abstract\n", "has no rows"),
    "blank jsonl": ("pairs.jsonl", b"\n\n", "has no rows"),
    "unsupported type": ("pairs.txt", b"hello", "unsupported file type '.txt'"),
}


@pytest.mark.parametrize("name, content, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_a_clear_error_naming_the_file(tmp_path, name, content, message):
    good = write_parquet([pair(1, None)], tmp_path / "good.parquet")
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(TitlecraftError) as raised:
        prepare([good, bad], tmp_path / "prepared", tokenizer=WordTokenizer(), progress=False)
    assert str(bad) in str(raised.value) and message in str(raised.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted({"good.parquet", name})


def test_missing_input_and_all_rows_dropped_are_errors(tmp_path):
    with pytest.raises(TitlecraftError, match="nope.csv: no such file"):
        prepare([tmp_path / "nope.csv"], tmp_path / "out", tokenizer=WordTokenizer(), progress=False)
    short = write_parquet([pair(1, None, abstract="tiny")], tmp_path / "short.parquet")
    with pytest.raises(TitlecraftError, match="no rows are left"):
        prepare([short], tmp_path / "out", tokenizer=WordTokenizer(), progress=False)
    assert not (tmp_path / "out").exists()


def test_all_rows_dropped_names_the_reasons_in_words(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    rows = [pair(1, None, abstract="tiny"), pair(2, None, abstract="tiny"), pair(3, None), pair(3, None)]
    source = write_parquet(rows, tmp_path / "pairs.parquet")
    assert main(["prepare", "--in", str(source), "--out", str(tmp_path / "out"), "--categories", "q-bio.GN"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: no rows are left: all 4 rows were dropped "
        f"({DROP_REASONS['short_abstract']}: 2; {DROP_REASONS['category']}: 2)"
    ]
    assert not (tmp_path / "out").exists()


def test_failure_while_writing_leaves_the_output_folder_as_it_was(tmp_path, monkeypatch):
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "train.parquet").write_text("previous run")
    source = write_parquet([pair(1, None)], tmp_path / "pairs.parquet")

    def broken_plot(*args):
        raise OSError("disk full")

    monkeypatch.setattr("core.dataset.plot_token_lengths", broken_plot)
    with pytest.warns(TitlecraftWarning), pytest.raises(OSError, match="disk full"):
        prepare([source], out, tokenizer=WordTokenizer(), progress=False)
    assert [path.name for path in out.iterdir()] == ["train.parquet"]
    assert (out / "train.parquet").read_text() == "previous run"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.parquet", "prepared"]


@pytest.mark.parametrize("renames_before_the_kill", [1, 2])
def test_a_kill_while_a_new_set_moves_in_never_leaves_old_and_new_splits_mixed(tmp_path, monkeypatch, renames_before_the_kill):
    """The files moved in one at a time: killed in between, old and new splits sat side by side unnoticed."""
    dates = ("2024-05-01", "2025-11-01", "2026-02-01")  # one row in each split
    old_source = write_parquet([pair(n, day) for n, day in enumerate(dates)], tmp_path / "old.parquet")
    longer = [pair(n + 10, day) for n, day in enumerate(dates)]  # every file of the new set differs, the histogram too
    new_source = write_parquet([{**row, "abstract": row["abstract"] + " More words."} for row in longer], tmp_path / "new.parquet")
    out = tmp_path / "prepared"
    prepare([old_source], out, tokenizer=WordTokenizer(), progress=False)
    old_set = {path.name: path.read_bytes() for path in out.iterdir()}
    real_replace, renames = os.replace, []

    def replace_then_die(*args):
        real_replace(*args)
        renames.append(args)
        if len(renames) == renames_before_the_kill:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare([new_source], out, tokenizer=WordTokenizer(), progress=False)
    monkeypatch.undo()
    left = {path.name: path.read_bytes() for path in out.iterdir()} if out.exists() else {}
    if left:
        assert set(left) == OUTPUT_FILES and len({left[name] == old_set[name] for name in left}) == 1
    else:  # no set at all: readers say so
        with pytest.raises(TitlecraftError, match="run `titlecraft prepare` first"):
            load_splits(out)
    prepare([new_source], out, tokenizer=WordTokenizer(), progress=False)
    assert all(path.read_bytes() != old_set[path.name] for path in out.iterdir())


def test_an_out_folder_holding_other_files_is_refused_before_any_work(tmp_path):
    """The new set replaces the whole folder, which would take the other files with it."""
    out = tmp_path / "prepared"
    out.mkdir()
    (out / "notes.txt").write_text("kept")
    source = write_parquet([pair(1, None)], tmp_path / "pairs.parquet")
    with pytest.raises(TitlecraftError, match=f"--out {out} holds files prepare does not write \\(notes.txt\\)"):
        prepare([source], out, tokenizer=WordTokenizer(), progress=False)
    assert [path.name for path in out.iterdir()] == ["notes.txt"]


@pytest.fixture(scope="module")
def shared_slice(tmp_path_factory) -> Path:
    """About 4,000 real rows around both split boundaries, plus undated rows, with some re-posted."""
    table = pq.read_table(SHARED_PAIRS)
    dates = table.column("date")

    def first_index_from(day: str) -> int:
        return pc.index(pc.greater_equal(dates, day), True).as_py()

    parts = [
        table.slice(first_index_from("2025-09-25"), 1500),
        table.slice(first_index_from("2025-12-25"), 1500),
        table.slice(table.num_rows - 300, 300),
    ]
    reposted = parts[1].slice(0, 50)  # the same papers again, as a second harvest would bring them
    suffix = pa.scalar("v2", reposted.schema.field("arxiv_id").type)
    versioned = pc.binary_join_element_wise(reposted.column("arxiv_id"), suffix, pa.scalar("", suffix.type))
    parts.append(reposted.set_column(0, "arxiv_id", versioned))
    path = tmp_path_factory.mktemp("shared") / "slice.parquet"
    pq.write_table(pa.concat_tables(parts), path)
    return path


def test_real_pairs_split_without_overlap(shared_slice, tmp_path):
    out = tmp_path / "prepared"
    summary = prepare([shared_slice], out, tokenizer=WordTokenizer(), progress=False)
    splits = {name: pd.read_parquet(out / f"{name}.parquet") for name in SPLITS}

    assert all(len(frame) > 500 for frame in splits.values())
    assert summary["rows_read"] == 3350 == sum(summary["splits"].values()) + sum(summary["dropped"].values())
    assert summary["dropped"]["duplicate_id"] >= 50
    assert splits["train"]["date"].dropna().max() < "2025-10-01" <= splits["validation"]["date"].min()
    assert splits["validation"]["date"].max() < "2026-01-01" <= splits["test"]["date"].min()
    assert splits["train"]["date"].isna().sum() == summary["undated_in_train"] > 0
    for column in ("arxiv_id", "title", "abstract"):
        seen = [set(frame[column].map(text_key)) for frame in splits.values()]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2]), column
    titles = pd.concat(splits.values())["title"]
    assert (titles != titles.str.lower()).mean() > 0.9  # original case kept


def test_cli_prepare_reads_every_file_of_a_repeated_in_option(tmp_path, monkeypatch, capsys):
    """argparse kept only the last `--in`: `--in a.parquet --in b.parquet` prepared b alone, without a word."""
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    first = write_parquet([pair(1, "2024-01-01"), pair(2, "2025-11-01")], tmp_path / "first.parquet")
    second = write_parquet([pair(3, "2026-02-01")], tmp_path / "second.parquet")
    third = write_parquet([pair(4, "2024-02-01")], tmp_path / "third.parquet")
    out = tmp_path / "prepared"
    assert main(["prepare", "--in", str(first), "--in", str(second), str(third), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [item["path"] for item in summary["inputs"]] == [str(first), str(second), str(third)]
    assert summary["splits"] == {"train": 2, "validation": 1, "test": 1}
    assert "train 2, validation 1, test 1 rows written" in capsys.readouterr().out


def test_a_parquet_file_named_pq_is_read_as_import_and_train_read_it(tmp_path):
    """prepare --in and eval --data refused 'unsupported file type .pq' for a file import and train take."""
    rows = [pair(1, "2024-01-01"), pair(2, "2025-11-01"), pair(3, "2026-02-01")]
    source = write_parquet(rows, tmp_path / "pairs.PQ")
    assert list(read_pairs(source)["arxiv_id"]) == ["2001.00001", "2001.00002", "2001.00003"]
    summary = prepare([source], tmp_path / "prepared", tokenizer=WordTokenizer(), progress=False)
    assert summary["splits"] == {"train": 1, "validation": 1, "test": 1}


def test_cli_prepare_keeps_every_category_of_a_repeated_categories_option(tmp_path, monkeypatch):
    """argparse kept only the last `--categories`: `--categories cs.CL --categories cs.AI` kept cs.AI alone."""
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    rows = [pair(1, "2024-01-01", categories="cs.CL"), pair(2, "2024-01-01", categories="cs.AI cs.LG"),
            pair(3, "2025-11-01", categories="cs.CL cs.CV"), pair(4, "2026-02-01", categories="cs.CV")]
    source, out = write_parquet(rows, tmp_path / "pairs.parquet"), tmp_path / "prepared"
    assert main(["prepare", "--in", str(source), "--out", str(out), "--categories", "cs.CL", "--categories", "cs.AI"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"]["categories"] == ["cs.AI", "cs.CL"] and summary["dropped"]["category"] == 1


def test_an_out_whose_folder_cannot_be_created_is_refused_before_any_input_is_read(tmp_path, monkeypatch):
    """The folder was made only when the outputs were written: prepare read, cleaned and tokenised every
    input, then failed with a bare 'No such file or directory' naming its hidden work folder."""
    monkeypatch.setattr("core.dataset.read_pairs", lambda path: pytest.fail("an input was read"))
    out = Path("/proc") / f"titlecraft-{tmp_path.name}" / "prepared"  # procfs takes no new folder, even from root
    with pytest.raises(TitlecraftError, match=f"cannot write --out {out}: its folder {out.parent} cannot be created"):
        prepare([tmp_path / "pairs.parquet"], out, tokenizer=WordTokenizer(), progress=False)


def test_cli_prepare(shared_slice, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    out = tmp_path / "prepared"
    code = main(["prepare", "--in", str(shared_slice), "--out", str(out), "--categories", "cs.CL", "--token-sample", "0"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["token_lengths"]["rows"] == summary["token_lengths"]["of"] == sum(summary["splits"].values())
    assert all("cs.CL" in cats.split() for cats in pd.read_parquet(out / "train.parquet")["categories"])
    assert "rows written to" in capsys.readouterr().out

    assert main(["prepare", "--in", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    assert main(["prepare", "--in", str(shared_slice), "--out", str(tmp_path / "x"), "--token-sample", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --token-sample -1 is not a number of rows") and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_warnings_during_prepare_print_on_their_own_lines_not_after_the_progress_bar(tmp_path, monkeypatch, capsys):
    """A warning raised while the progress bar was drawn was printed right after it, on its line."""
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    source = write_parquet([pair(1, "2020-01-01", categories="cs.CL"), pair(2, "2024-13-01")], tmp_path / "pairs.parquet")
    assert main(["prepare", "--in", str(source), "--out", str(tmp_path / "prepared"), "--categories", "cs.CL,cs.Al"]) == 0
    pieces = capsys.readouterr().err.replace("\r", "\n").split("\n")
    warned = [piece for piece in pieces if "warning:" in piece]
    assert len(warned) == 4 and all(piece.startswith("warning: ") for piece in warned), warned
    assert any(piece.startswith("warning: --categories cs.Al matched no row") for piece in warned)  # none lost
    assert any(piece.startswith("warning: 1 row(s) dropped because their date is not readable") for piece in warned)


def test_a_parquet_saved_from_a_filtered_frame_reads_with_fresh_row_numbers(tmp_path):
    frame = pd.DataFrame([pair(i, "2024-01-01") for i in range(6)])
    frame[frame.index % 2 == 1].to_parquet(tmp_path / "subset.parquet")  # pandas keeps the index 1, 3, 5
    subset = read_pairs(tmp_path / "subset.parquet")
    assert list(subset.index) == [0, 1, 2]
    assert subset.at[2, "title"] == frame.at[5, "title"]


def test_cli_prepare_reads_and_checks_its_inputs_before_loading_the_tokenizer(shared_slice, tmp_path, monkeypatch,
                                                                               capsys):
    """The tokenizer loaded first: on a fresh install a mistyped --in or --train-until was reported only
    after the embedded model was de-quantised for it, and a tokenizer that could not load hid the mistake."""
    def unreachable(spec):
        raise TitlecraftError(f"could not load model {spec!r}")

    monkeypatch.setattr("core.commands.prepare.load_tokenizer", unreachable)
    assert main(["prepare", "--in", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'missing.jsonl'}: no such file" in err and "could not load" not in err
    assert main(["prepare", "--in", str(shared_slice), "--out", str(tmp_path / "x"), "--train-until", "soon"]) == 2
    assert "train-until 'soon' is not a date" in capsys.readouterr().err
    assert main(["prepare", "--in", str(shared_slice), "--out", str(tmp_path / "x"), "--tokenizer", "nowhere"]) == 2
    assert "could not load model 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_token_length_percentiles_are_rounded_in_the_summary(tmp_path):
    """summary.md showed a p95 of 1144.1499999999992 beside a mean of 766.2 (numpy's float noise)."""
    rows = [pair(number, "2020-01-01") for number in range(10)]
    for number, row in enumerate(rows):
        row["abstract"] += " pad" * (3 * number)  # 56, 59, ... 83 words: the 95th percentile is 81.65
    summary, _ = prepare_rows(rows, tmp_path)
    assert summary["token_lengths"]["abstract"]["p95"] == 81.6
    assert summary["token_lengths"]["abstract"]["p99"] == 82.7
    assert "| abstract | 69.5 | 69.5 | 81.6 | 82.7 | 83 |" in (tmp_path / "prepared" / "summary.md").read_text()


def test_chinese_and_japanese_titles_are_counted_in_words_as_the_length_flags_count_them(tmp_path):
    """Written without spaces, a Chinese or Japanese title was one word whatever its length, so every such
    row was dropped as 'title under 3 words'; its words are counted as the candidate flags count them
    (two such characters a word), and a one-word title is still dropped."""
    rows = [
        pair(1, "2024-05-01", title="基于深度学习的图像分类方法研究"),
        pair(2, "2024-05-02", title="深層学習による画像分類"),
        pair(3, "2024-05-03", title="研究"),
        pair(4, "2024-05-04"),
    ]
    summary, splits = prepare_rows(rows, tmp_path)
    assert list(splits["train"]["arxiv_id"]) == ["2001.00001", "2001.00002", "2001.00004"]
    assert summary["dropped"]["short_title"] == 1
