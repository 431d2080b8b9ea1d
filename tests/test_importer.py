"""Importing abstracts into the queue from every supported file shape, including bad rows."""

from __future__ import annotations

import csv
import datetime
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import importer
from core.cli import main
from core.errors import TitlecraftError
from core.export import export
from core.importer import import_file
from core.prompts import completion_prompt, completion_target
from core.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "titlecraft.db") as opened:
        yield opened


def write_jsonl(path, lines):
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_rows_land_and_bad_rows_are_reported_with_file_and_line(store, tmp_path):
    path = write_jsonl(
        tmp_path / "papers.jsonl",
        [
            {"abstract": "First abstract.", "title": "First Real Title", "arxiv_id": "2401.00001"},
            "{not json",
            {"title": "No abstract here"},
            "",
            {"abstract": "Second abstract.", "title": 42},
            ["a", "list"],
            {"abstract": "   "},
            {"abstract": "Third.\u2028With a line separator.", "source": "arxiv", "categories": ["cs.CL", "cs.LG"]},
        ],
    )
    summary = import_file(store, path)
    assert (summary.imported, summary.already_present) == (2, 0)
    assert [str(problem) for problem in summary.problems] == [
        f"{path}:line 2: invalid JSON (Expecting property name enclosed in double quotes, column 2)",
        f"{path}:line 3: missing 'abstract' (it must be text; the row has 'title')",
        f"{path}:line 5: 'title' must be text, not int",
        f"{path}:line 6: expected a JSON object",
        f"{path}:line 7: the abstract is empty",
    ]
    first, third = (store.abstract(entry.abstract_id) for entry in store.queue())
    assert (first.text, first.reference_title, first.arxiv_id, first.source) == (
        "First abstract.", "First Real Title", "2401.00001", "import:papers.jsonl",
    )
    assert (third.source, third.categories) == ("arxiv", "cs.CL cs.LG")
    assert store.curated_pairs() == []  # a reference title is not a curated one


def test_reimporting_is_idempotent(store, tmp_path):
    path = write_jsonl(tmp_path / "papers.jsonl", [{"abstract": f"Abstract {n}."} for n in range(4)])
    assert import_file(store, path).imported == 4
    again = import_file(store, path)
    assert (again.imported, again.already_present, again.problems) == (0, 4, [])
    counts = store.counts()
    assert (counts["abstracts"], counts["queued"]) == (4, 4)


def test_a_repeated_abstract_with_another_reference_title_is_named_in_the_summary(tmp_path, capsys):
    path = write_jsonl(
        tmp_path / "papers.jsonl",
        [
            {"abstract": "One abstract.", "title": "The First Title"},
            {"abstract": "Other abstract.", "title": "Another Paper"},
            {"abstract": "One  abstract.", "title": "The  First Title"},  # whitespace aside the same: no note
            {"abstract": "One abstract.", "title": "A Second Title"},
            {"abstract": "One abstract."},  # no reference title: nothing is dropped
        ],
    )
    db = tmp_path / "titlecraft.db"
    assert main(["import", str(path), "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert captured.err == (
        f'warning: {path}:line 4: the abstract repeats one stored with the reference title "The First Title"; '
        'kept that title, not "A Second Title"\n'
    )
    assert captured.out == (
        f"imported 2, already present 3, errors 0 (into {db}); 1 row repeated an abstract with a different "
        "reference title (the first title was kept)\n"
    )
    with Store(db, create=False) as store:
        assert store.abstract(store.find_abstract("One abstract.")).reference_title == "The First Title"


def test_an_import_gives_an_abstract_stored_without_details_the_ones_it_lacks(store, tmp_path):
    """Abstracts first stored bare (pasted in the app, or imported from plain text) kept none of the
    reference title, arXiv id, categories and date a later import had for them: the rows counted as
    already present and their details were dropped without a word. They now fill what is missing; what
    is stored stays, and importing the file again changes nothing."""
    pasted = store.add_abstract("A pasted abstract.", source="pasted")
    stored = store.add_abstract("A stored abstract.", reference_title="Kept Title", date="2024-01-02")
    path = write_jsonl(
        tmp_path / "papers.jsonl",
        [
            {"abstract": "A pasted  abstract.", "title": "The Real Title", "arxiv_id": "2401.00001",
             "categories": "cs.CL", "date": "2024-03-04", "source": "arxiv"},
            {"abstract": "A stored abstract.", "title": "Kept Title", "arxiv_id": "2401.00002", "date": "2025-01-01"},
        ],
    )
    summary = import_file(store, path)
    assert (summary.imported, summary.already_present, summary.problems) == (2, 0, [])
    filled, kept = store.abstract(pasted), store.abstract(stored)
    assert (filled.reference_title, filled.arxiv_id, filled.categories, filled.date, filled.source) == (
        "The Real Title", "2401.00001", "cs.CL", "2024-03-04", "pasted",
    )
    assert (kept.reference_title, kept.arxiv_id, kept.date) == ("Kept Title", "2401.00002", "2024-01-02")
    again = import_file(store, path)
    assert (again.imported, again.already_present) == (0, 2)


def test_csv_with_multiline_fields_reports_the_line_a_bad_row_starts_on(store, tmp_path):
    path = tmp_path / "papers.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["arxiv_id", "title", "abstract"])
        writer.writerow(["2401.1", "A Title", "An abstract\nthat spans\nthree lines."])
        writer.writerow(["2401.2", "Empty", ""])
        writer.writerow(["2401.3", "Quoted \"Title\"", "Another, with a comma."])
        writer.writerow(["2401.4", "Extra", "Too many fields.", "surplus"])
    summary = import_file(store, path)
    assert summary.imported == 2
    assert [str(p) for p in summary.problems] == [
        f"{path}:line 5: the abstract is empty",
        f"{path}:line 7: more fields than the header has columns",
    ]
    texts = [store.abstract(e.abstract_id).text for e in store.queue()]
    assert texts == ["An abstract that spans three lines.", "Another, with a comma."]
    assert store.abstract(store.queue()[1].abstract_id).reference_title == 'Quoted "Title"'


def test_csv_field_over_the_limit_is_one_row_problem_and_the_other_rows_land(store, tmp_path):
    path = tmp_path / "papers.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["title", "abstract"])
        writer.writerow(["Before", "Good before."])
        writer.writerow(["Huge", "word " * 20_000 + "\nand a second line " * 2_000])
        writer.writerow(["After", "Good after,\non two lines."])
    limit_before = csv.field_size_limit()
    summary = import_file(store, path)
    assert csv.field_size_limit() == limit_before
    assert summary.imported == 2
    assert [str(p) for p in summary.problems] == [
        f"{path}:line 3: a field holds 138,000 characters, more than the 131,072 a CSV field may hold"
    ]
    assert [store.abstract(e.abstract_id).text for e in store.queue()] == ["Good before.", "Good after, on two lines."]


def test_csv_with_an_unbalanced_quote_reports_its_row_and_swallows_nothing(store, tmp_path):
    path = tmp_path / "papers.csv"
    path.write_text(
        'abstract,title\n"Good before.",T1\n"Stray quote,T2\nAnother abstract,T3\n"Last",T4\n', encoding="utf-8"
    )
    summary = import_file(store, path)
    assert summary.imported == 1
    [problem] = summary.problems
    assert str(problem).startswith(f"{path}:line 3: malformed CSV in the row starting here")
    assert "the rest of the file was not read" in problem.reason
    assert [store.abstract(e.abstract_id).text for e in store.queue()] == ["Good before."]
    header = tmp_path / "header.csv"
    header.write_text('"abstract,title\nAn abstract,A title\n', encoding="utf-8")
    with pytest.raises(TitlecraftError, match="header.csv has a malformed CSV header"):
        import_file(store, header)


def test_csv_without_an_abstract_column_is_a_file_error(store, tmp_path):
    path = tmp_path / "titles.csv"
    path.write_text("title\nOnly titles\n", encoding="utf-8")
    with pytest.raises(TitlecraftError, match="no 'abstract' column"):
        import_file(store, path)


def test_parquet_in_the_shared_pair_format(store, tmp_path):
    path = tmp_path / "pairs.parquet"
    table = pa.table(
        {
            "arxiv_id": ["2401.00001", None, "2401.00003"],
            "title": ["Paper One", "Paper Two", "Paper Three"],
            "abstract": ["Abstract one.", "Abstract two.", None],
            "categories": ["cs.CL", "cs.LG", "cs.AI"],
            "date": [datetime.date(2024, 1, 2), datetime.date(2024, 1, 3), None],
            "source": ["arxiv", "arxiv", "arxiv"],
        }
    )
    pq.write_table(table, path)
    summary = import_file(store, path)
    assert summary.imported == 2
    assert [str(p) for p in summary.problems] == [f"{path}:row 3: missing 'abstract' (it must be text)"]
    first = store.abstract(store.queue()[0].abstract_id)
    assert (first.arxiv_id, first.reference_title, first.categories, first.date, first.source) == (
        "2401.00001", "Paper One", "cs.CL", "2024-01-02", "arxiv",
    )


def test_plain_text_abstracts_separated_by_blank_lines(store, tmp_path):
    path = tmp_path / "abstracts.txt"
    path.write_text("First abstract,\nwrapped.\n\n  \n[bold]Second[/bold] abstract.\n\n\nThird.", encoding="utf-8")
    summary = import_file(store, path)
    assert (summary.imported, summary.problems) == (3, [])
    texts = [store.abstract(e.abstract_id).text for e in store.queue()]
    assert texts == ["First abstract, wrapped.", "[bold]Second[/bold] abstract.", "Third."]


@pytest.mark.parametrize("name", ["papers.tsv", "export.sft", "abstracts"])
def test_unknown_suffixes_are_refused_with_the_supported_ones_listed(store, tmp_path, name):
    path = tmp_path / name
    path.write_text("abstract\ttitle\nAn abstract.\tA title\n", encoding="utf-8")
    with pytest.raises(TitlecraftError, match=f"cannot import {path}: .* is not supported") as refused:
        import_file(store, path)
    for suffix in (".jsonl", ".json", ".csv", ".parquet", ".txt"):
        assert suffix in str(refused.value)
    assert store.counts()["abstracts"] == 0


def test_sft_rows_become_own_title_decisions_and_conflicts_are_kept(store, tmp_path):
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {"prompt": completion_prompt("An abstract."), "completion": completion_target("Its Title")},
            {"prompt": "Not a titlecraft prompt", "completion": " X"},
            {"prompt": completion_prompt("Another abstract."), "completion": " \n"},
        ],
    )
    summary = import_file(store, path)
    assert summary.imported == 1
    assert [p.reason for p in summary.problems] == [
        "not a titlecraft completion prompt (it must end with '\\nTitle:')",
        "the completion (title) is empty",
    ]
    [pair] = store.curated_pairs()
    assert (pair.abstract, pair.title, pair.action) == ("An abstract.", "Its Title", "own_title")

    store.own_title(pair.abstract_id, "A Newer Title")
    again = import_file(store, path)
    assert again.imported == 0
    assert "already has a different curated title 'A Newer Title'; kept it" in again.problems[0].reason
    assert store.curated_title(pair.abstract_id) == "A Newer Title"


def test_an_sft_export_reimports_into_its_store_when_a_title_has_surrounding_whitespace(tmp_path, capsys):
    db = tmp_path / "titlecraft.db"
    with Store(db) as store:
        abstract_id = store.add_abstract("An abstract about graphs.")
        store.own_title(abstract_id, "  Graph  Networks for Molecules \n")
    sft = tmp_path / "sft.jsonl"
    assert main(["export", "--format", "sft", "--out", str(sft), "--db", str(db)]) == 0
    assert main(["import", str(sft), "--db", str(db)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "imported 0, already present 1, errors 0" in captured.out
    with Store(db, create=False) as store:
        assert store.curated_title(abstract_id) == "  Graph  Networks for Molecules \n"
        assert len(store.curated_pairs()) == 1


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (json.dumps([{"abstract": "First."}, {"abstract": "Second."}], indent=2), "a JSON array"),
        ('[\n{"abstract": "First."},\n{"abstract": "Second."}\n]\n', "a JSON array"),  # its last row parses alone
        (json.dumps({"abstract": "Only.", "title": "A Title"}, indent=2), "one JSON object spread over several lines"),
    ],
    ids=["indented array", "array of one-line objects", "indented object"],
)
def test_pretty_printed_json_is_refused_whole(store, tmp_path, text, shape):
    path = tmp_path / "papers.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TitlecraftError, match=f"papers.json is {shape}, which import does not support: use JSON Lines"):
        import_file(store, path)
    assert store.counts()["abstracts"] == 0


def test_lone_surrogates_are_row_problems_and_the_other_rows_land(store, tmp_path):
    bad_prompt = completion_prompt("Bad \ud800 prompt.")
    surrogate_at = bad_prompt.index("\ud800") + 1
    path = write_jsonl(
        tmp_path / "surrogates.jsonl",
        [
            {"abstract": "Good before."},
            {"abstract": "Bad \ud800 abstract."},
            {"abstract": "Bad title.", "title": "T\udfff"},
            {"prompt": completion_prompt("Bad completion."), "completion": " Title \udc80"},
            {"prompt": bad_prompt, "completion": " Title"},
            {"abstract": "Good after."},
        ],
    )
    summary = import_file(store, path)
    assert summary.imported == 2
    assert [str(p) for p in summary.problems] == [
        f"{path}:line 2: 'abstract' holds a lone surrogate '\\ud800' at character 5, which is not text",
        f"{path}:line 3: 'title' holds a lone surrogate '\\udfff' at character 2, which is not text",
        f"{path}:line 4: 'completion' holds a lone surrogate '\\udc80' at character 8, which is not text",
        f"{path}:line 5: 'prompt' holds a lone surrogate '\\ud800' at character {surrogate_at}, which is not text",
    ]
    assert [store.abstract(e.abstract_id).text for e in store.queue()] == ["Good before.", "Good after."]


@pytest.mark.parametrize("format_name", ["chat", "dpo"])
def test_a_chat_or_dpo_export_is_named_as_such_and_the_importable_exports_suggested(tmp_path, format_name):
    with Store(tmp_path / "original.db") as original:
        abstract_id = original.add_abstract("An arXiv abstract.")
        _, [chosen, rejected] = original.record_generation(
            abstract_id, "base", "base-id", {}, 1, "cpu", 1.0, 0.1, [{"text": "Good Title"}, {"text": "Bad Title"}]
        )
        original.accept(chosen)
        original.reject(rejected)
        path = export(original, format_name, tmp_path / f"{format_name}.jsonl").path
    with Store(tmp_path / "imported.db") as imported:
        with pytest.raises(TitlecraftError) as refused:
            import_file(imported, path)
        assert imported.queue() == []
    assert str(refused.value) == (
        f"{path}: its only row cannot be imported (line 1: this is a row of a {format_name} export, which import "
        "cannot read back: import the sft, csv or parquet export of the same store instead); nothing was imported"
    )


@pytest.mark.parametrize("format_name", ["csv", "parquet"])
def test_a_csv_or_parquet_export_reimports_with_its_curated_and_reference_titles(tmp_path, format_name):
    with Store(tmp_path / "original.db") as original:
        referenced = original.add_abstract("An arXiv abstract.", arxiv_id="2401.00001", reference_title="Paper Title")
        _, [candidate] = original.record_generation(
            referenced, "base", "base-id", {}, 1, "cpu", 1.0, 0.1, [{"text": "Model Title"}]
        )
        original.accept(candidate)
        original.own_title(original.add_abstract("A pasted abstract."), "My Title")
        export(original, format_name, tmp_path / f"pairs.{format_name}")
        expected = [(p.abstract, p.title, p.reference_title, p.arxiv_id) for p in original.curated_pairs()]
    with Store(tmp_path / "imported.db") as imported:
        summary = import_file(imported, tmp_path / f"pairs.{format_name}")
        assert (summary.imported, summary.problems) == (2, [])
        assert [(p.abstract, p.title, p.reference_title, p.arxiv_id) for p in imported.curated_pairs()] == expected
        assert import_file(imported, tmp_path / f"pairs.{format_name}").already_present == 2


def test_rows_commit_in_chunks(store, tmp_path, monkeypatch):
    monkeypatch.setattr(importer, "ROWS_PER_COMMIT", 2)
    lines = [{"abstract": f"Abstract {n}."} for n in range(5)]
    lines.insert(3, {"prompt": completion_prompt("Abstract 0."), "completion": " Title"})
    lines.insert(4, {"prompt": completion_prompt("Abstract 0."), "completion": " Different title"})
    summary = import_file(store, write_jsonl(tmp_path / "mixed.jsonl", lines))
    assert (summary.imported, summary.already_present, len(summary.problems)) == (6, 0, 1)
    assert store.counts()["decisions"]["own_title"] == 1
    assert len(store.queue()) == 5


def test_ctrl_c_says_how_many_rows_are_stored_and_that_the_same_command_finishes(tmp_path, monkeypatch, capsys):
    """An import stopped with ctrl+c printed a bare 'interrupted', though the chunks committed before it
    stay and a re-run imports the rest: it now says how many rows are stored and that re-running finishes."""
    monkeypatch.setattr(importer, "ROWS_PER_COMMIT", 2)
    db = tmp_path / "titlecraft.db"
    path = write_jsonl(tmp_path / "papers.jsonl", [{"abstract": f"Abstract {n}."} for n in range(5)])
    enqueue, calls, stop_at = Store.enqueue, [], [4]

    def ctrl_c_at_a_row(self, abstract_id):
        calls.append(abstract_id)
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        return enqueue(self, abstract_id)

    monkeypatch.setattr(Store, "enqueue", ctrl_c_at_a_row)  # the 4th row: the second chunk is rolled back
    assert main(["import", str(path), "--db", str(db)]) == 130
    assert capsys.readouterr().err == (
        f"interrupted: 2 rows of {path} are stored in {db}; run the same command again to finish the import\n"
    )
    calls.clear()
    stop_at[0] = 1
    assert main(["import", str(path), "--db", str(tmp_path / "other.db")]) == 130
    assert capsys.readouterr().err == "interrupted: no row was stored yet; the same command starts the import again\n"

    monkeypatch.setattr(Store, "enqueue", enqueue)
    assert main(["import", str(path), "--db", str(db)]) == 0
    assert "imported 3, already present 2, errors 0" in capsys.readouterr().out


def test_a_row_that_fails_halfway_leaves_nothing_behind(store, tmp_path, monkeypatch):
    def failing_own_title(abstract_id, text):
        raise TitlecraftError("simulated failure")

    monkeypatch.setattr(store, "own_title", failing_own_title)
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [
            {"abstract": "Kept abstract."},
            {"prompt": completion_prompt("Rolled back abstract."), "completion": " Title"},
        ],
    )
    summary = import_file(store, path)
    assert [str(p) for p in summary.problems] == [f"{path}:line 2: simulated failure"]
    assert store.find_abstract("Rolled back abstract.") is None
    assert [store.abstract(e.abstract_id).text for e in store.queue()] == ["Kept abstract."]


def test_missing_folder_and_empty_files_are_user_errors(store, tmp_path):
    with pytest.raises(TitlecraftError, match="no file"):
        import_file(store, tmp_path / "absent.jsonl")
    with pytest.raises(TitlecraftError, match="is a folder; name a file to import"):
        import_file(store, tmp_path)
    for name, text in (("empty.jsonl", ""), ("header-only.csv", "abstract,title\n"), ("blank.txt", "\n\n  \n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(TitlecraftError, match=f"{name} holds no abstracts to import"):
            import_file(store, tmp_path / name)


def test_import_command_prints_a_summary_and_errors(tmp_path, capsys):
    db = tmp_path / "titlecraft.db"
    path = write_jsonl(tmp_path / "papers.jsonl", [{"abstract": "Good one."}, "oops", {"abstract": "Good two."}])
    assert main(["import", str(path), "--db", str(db)]) == 1
    captured = capsys.readouterr()
    assert f"imported 2, already present 0, errors 1 (into {db})" in captured.out
    assert f"error: {path}:line 2: invalid JSON" in captured.err
    assert main(["import", str(path), "--db", str(db)]) == 1
    assert "imported 0, already present 2, errors 1" in capsys.readouterr().out


def test_a_file_that_cannot_be_imported_leaves_no_new_store_behind(tmp_path, capsys):
    # A file with no rows, a CSV without an abstract column and an unreadable parquet file were refused
    # only after the new store was created, leaving an empty database at a mistyped --db.
    db = tmp_path / "new.db"
    (tmp_path / "papers.tsv").write_text("abstract\ttitle\n")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    (tmp_path / "header-only.csv").write_text("abstract,title\n")
    (tmp_path / "no-abstract.csv").write_text("summary,title\nWe study graphs.,Graphs\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "summaries.jsonl").write_text('{"summary": "We study graphs.", "title": "Graphs"}\n' * 3)
    files = ("nope.jsonl", "papers.tsv", ".", "blank.jsonl", "header-only.csv", "no-abstract.csv", "broken.parquet",
             "summaries.jsonl")
    for name in files:
        assert main(["import", str(tmp_path / name), "--db", str(db)]) == 2
        assert capsys.readouterr().err.startswith("error:"), name
    assert not db.exists()


def test_json_rows_that_all_lack_an_abstract_are_one_error_naming_the_fields_they_have(tmp_path, capsys):
    path = tmp_path / "summaries.jsonl"
    path.write_text('{"summary": "We study graphs.", "title": "Graphs"}\n' * 3)
    assert main(["import", str(path), "--db", str(tmp_path / "new.db")]) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: none of its 3 rows can be imported (line 1: missing 'abstract' (it must be text; the row "
        "has 'summary', 'title')); nothing was imported\n"
    )


def test_bad_rows_before_the_first_good_one_are_still_reported_and_the_rest_imported(tmp_path, capsys):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"summary": "We study graphs."}\n"not an object"\n{"abstract": "We study graphs."}\n')
    assert main(["import", str(path), "--db", str(tmp_path / "new.db")]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("error:") == 2 and "imported 1, already present 0, errors 2" in captured.out


def test_import_command_uses_the_environment_database(tmp_path, monkeypatch, capsys):
    db = tmp_path / "from-env.db"
    monkeypatch.setenv("TITLECRAFT_DB", str(db))
    path = tmp_path / "abstracts.txt"
    path.write_text("Only abstract.\n", encoding="utf-8")
    assert main(["import", str(path)]) == 0
    assert f"into {db}" in capsys.readouterr().out
    with Store(db) as store:
        assert store.counts()["abstracts"] == 1


def test_timestamps_are_stored_as_their_day(store, tmp_path):
    """Dates are YYYY-MM-DD in the pair format; pandas often writes them as timestamps, and JSON as ISO
    times. A date that is no date is kept as written."""
    path = tmp_path / "stamped.parquet"
    stamps = [datetime.datetime(2024, 1, 2), datetime.datetime(2024, 1, 3, 17, 30)]
    table = pa.table({"abstract": ["Abstract one.", "Abstract two."], "date": pa.array(stamps, pa.timestamp("us"))})
    pq.write_table(table, path)
    import_file(store, path)
    lines = [
        {"abstract": "Abstract three.", "date": "2024-01-04T09:00:00Z"},
        {"abstract": "Abstract four.", "date": "spring 2024"},
    ]
    import_file(store, write_jsonl(tmp_path / "stamped.jsonl", lines))
    dates = [store.abstract(entry.abstract_id).date for entry in store.queue()]
    assert dates == ["2024-01-02", "2024-01-03", "2024-01-04", "spring 2024"]


def test_csv_with_a_space_after_each_comma(store, tmp_path):
    """Hand-written CSV often puts a space after each comma; its columns and quoted fields still read."""
    path = tmp_path / "spaced.csv"
    path.write_text('abstract, title, arxiv_id\n"Sparse graphs, revisited.", "Graphs, Again", 2401.00001\n')
    summary = import_file(store, path)
    assert (summary.imported, summary.problems) == (1, [])
    stored = store.abstract(store.queue()[0].abstract_id)
    assert (stored.text, stored.reference_title, stored.arxiv_id) == (
        "Sparse graphs, revisited.", "Graphs, Again", "2401.00001",
    )


def test_a_curated_title_from_a_csv_export_is_trimmed_as_an_sft_completion_is(store, tmp_path):
    path = tmp_path / "edited.csv"
    path.write_text('abstract,title,reference_title\n"We study graphs.","  Graphs, Revisited\n",Graphs\n'
                    '"We study trees.","   ",Trees\n')
    summary = import_file(store, path)
    assert (summary.imported, summary.problems) == (2, [])
    assert [pair.title for pair in store.curated_pairs()] == ["Graphs, Revisited"]
