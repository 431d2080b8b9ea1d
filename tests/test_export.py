"""Exports in every format: exact shapes, provenance, filters, atomic writes, and the CLI commands."""

from __future__ import annotations

import csv
import json
import re

import pyarrow.parquet as pq
import pytest

from core import export as export_module
from core.cli import main
from core.errors import TitlecraftError
from core.export import PAIR_COLUMNS, TABLE_COLUMNS, export, parse_since
from core.prompts import chat_messages, completion_prompt, completion_target
from core.store import Store

GRAPH_ABSTRACT = "We learn [bold]graphs[/bold] with message passing."
PROTEIN_ABSTRACT = "We fold proteins with a transformer; it's fast."


@pytest.fixture
def db(tmp_path):
    """A store with one accepted, one edited-after-rejections and one own-title abstract."""
    path = tmp_path / "titlecraft.db"
    with Store(path) as store:
        graph = store.add_abstract(GRAPH_ABSTRACT, source="pasted", arxiv_id="2401.00001")
        protein = store.add_abstract(PROTEIN_ABSTRACT, source="import:papers.jsonl")
        own = store.add_abstract("An abstract titled by hand.", date="2023-05-06", categories="cs.CL")
        _, [g1, g2] = store.record_generation(
            graph, "base", "base-id", {"temperature": 0.7}, 3, "cpu", 1.0, 0.1,
            [{"text": "Graph Learning", "score": -0.4}, {"text": "Graphs"}],
        )
        _, [p1, p2, p3] = store.record_generation(
            protein, "tuned", "tuned-id", {"temperature": 0.9}, 4, "cuda", 2.0, 0.2,
            [{"text": "Folding"}, {"text": "Protein Folding With Transformers", "score": -0.2}, {"text": "Proteins"}],
        )
        store.accept(g1)
        store.reject(g2, reason="too short")
        store.reject(p1)
        store.reject(p3)
        store.edit(p2, "Fast Protein Folding with Transformers")
        store.own_title(own, "Titled \"By Hand\"")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_sft_uses_the_trainers_completion_template(db, tmp_path):
    with Store(db) as store:
        result = export(store, "sft", tmp_path / "sft.jsonl")
    assert result.rows == 3
    assert read_jsonl(tmp_path / "sft.jsonl")[:2] == [
        {"prompt": completion_prompt(GRAPH_ABSTRACT), "completion": completion_target("Graph Learning")},
        {
            "prompt": completion_prompt(PROTEIN_ABSTRACT),
            "completion": completion_target("Fast Protein Folding with Transformers"),
        },
    ]


def test_chat_appends_the_title_as_the_assistant_turn(db, tmp_path):
    with Store(db) as store:
        export(store, "chat", tmp_path / "chat.jsonl")
    first = read_jsonl(tmp_path / "chat.jsonl")[0]
    assert first == {"messages": [*chat_messages(GRAPH_ABSTRACT), {"role": "assistant", "content": "Graph Learning"}]}


def test_dpo_pairs_the_curated_title_with_each_rejected_candidate(db, tmp_path):
    with Store(db) as store:
        result = export(store, "dpo", tmp_path / "dpo.jsonl")
    chosen = completion_target("Fast Protein Folding with Transformers")
    assert read_jsonl(tmp_path / "dpo.jsonl") == [
        {
            "prompt": completion_prompt(GRAPH_ABSTRACT),
            "chosen": completion_target("Graph Learning"),
            "rejected": completion_target("Graphs"),
        },
        {"prompt": completion_prompt(PROTEIN_ABSTRACT), "chosen": chosen, "rejected": completion_target("Folding")},
        {"prompt": completion_prompt(PROTEIN_ABSTRACT), "chosen": chosen, "rejected": completion_target("Proteins")},
    ]
    assert result.rows == 3


def test_training_exports_write_a_title_on_one_line_as_training_reads_it(tmp_path):
    """A curated title keeps the line break it was imported with (a wrapped spreadsheet cell, an sft
    completion): sft, chat and dpo wrote it into the completion, so a trainer reading them learned titles
    running over two lines, where titlecraft's own training collapses the whitespace and every candidate
    ends at its first newline. The table formats keep the title as stored."""
    wrapped = "Fast Protein Folding\n  with Transformers "
    with Store(tmp_path / "titlecraft.db") as store:
        abstract = store.add_abstract(PROTEIN_ABSTRACT)
        _, [candidate] = store.record_generation(
            abstract, "tuned", "tuned-id", {}, 4, "cpu", 1.0, 0.1, [{"text": "Folding\nProteins"}]
        )
        store.reject(candidate)
        store.own_title(abstract, wrapped)
        for format_name in ("sft", "chat", "dpo", "csv"):
            export(store, format_name, tmp_path / f"{format_name}.{'csv' if format_name == 'csv' else 'jsonl'}")
    one_line = "Fast Protein Folding with Transformers"
    assert read_jsonl(tmp_path / "sft.jsonl")[0]["completion"] == completion_target(one_line)
    assert read_jsonl(tmp_path / "chat.jsonl")[0]["messages"][-1]["content"] == one_line
    assert read_jsonl(tmp_path / "dpo.jsonl")[0] == {
        "prompt": completion_prompt(PROTEIN_ABSTRACT),
        "chosen": completion_target(one_line),
        "rejected": completion_target("Folding Proteins"),
    }
    with (tmp_path / "csv.csv").open(newline="", encoding="utf-8") as file:
        assert next(csv.DictReader(file))["title"] == wrapped


def test_parquet_and_csv_carry_the_pair_format_and_provenance(db, tmp_path):
    with Store(db) as store:
        export(store, "parquet", tmp_path / "pairs.parquet")
        export(store, "csv", tmp_path / "pairs.csv")
    table = pq.read_table(tmp_path / "pairs.parquet")
    assert tuple(table.column_names) == TABLE_COLUMNS and TABLE_COLUMNS[: len(PAIR_COLUMNS)] == PAIR_COLUMNS
    graph, protein, own = table.to_pylist()
    assert (graph["arxiv_id"], graph["title"], graph["action"], graph["model_spec"], graph["candidate_rank"]) == (
        "2401.00001", "Graph Learning", "accept", "base", 1,
    )
    assert (graph["candidate_score"], json.loads(graph["params"]), graph["seed"], graph["device"]) == (
        -0.4, {"temperature": 0.7}, 3, "cpu",
    )
    assert (protein["action"], protein["candidate_text"], protein["source"]) == (
        "edit", "Protein Folding With Transformers", "import:papers.jsonl",
    )
    assert protein["date"] == protein["decided_at"][:10]
    assert (own["title"], own["date"], own["categories"], own["model_spec"]) == (
        'Titled "By Hand"', "2023-05-06", "cs.CL", None,
    )
    with (tmp_path / "pairs.csv").open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert tuple(rows[0]) == TABLE_COLUMNS
    assert [row["title"] for row in rows] == [row["title"] for row in table.to_pylist()]
    assert rows[1]["abstract"] == PROTEIN_ABSTRACT


def test_hf_writes_a_datasets_folder(db, tmp_path):
    import datasets

    with Store(db) as store:
        export(store, "hf", tmp_path / "pairs")
        export(store, "hf", tmp_path / "pairs")  # replacing an earlier export
    loaded = datasets.load_from_disk(str(tmp_path / "pairs"))
    assert loaded.column_names == list(TABLE_COLUMNS)
    assert loaded["title"] == ["Graph Learning", "Fast Protein Folding with Transformers", 'Titled "By Hand"']
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs", "titlecraft.db"]


def test_hf_never_replaces_a_folder_of_other_files(db, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious", encoding="utf-8")
    with Store(db) as store, pytest.raises(TitlecraftError, match="other files in it"):
        export(store, "hf", folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    with Store(db) as store:
        assert export(store, "hf", empty).rows == 3


def test_filters_by_model_and_date(db, tmp_path):
    with Store(db) as store:
        assert export(store, "sft", tmp_path / "tuned.jsonl", model="tuned").rows == 1
        assert export(store, "sft", tmp_path / "recent.jsonl", since="2000-01-01T00:00:00+02:00").rows == 3


def test_a_checkpoint_folder_is_matched_however_its_path_was_spelled(tmp_path, monkeypatch):
    """The app records the --model it was started with as typed (a shell completes a folder with a
    trailing slash), so --model names a checkpoint by its folder, not by the exact spelling."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "mine").mkdir(parents=True)
    with Store(tmp_path / "titlecraft.db") as store:
        for number, spec in enumerate(("runs/mine/", "runs/other", "embedded")):
            abstract = store.add_abstract(f"Abstract number {number} about graphs.")
            _, [candidate] = store.record_generation(
                abstract, spec, "id", {}, 1, "cpu", 1.0, 0.1, [{"text": f"Title {number}"}]
            )
            store.accept(candidate)
        for spelling in ("runs/mine", "./runs/mine/", str(tmp_path / "runs" / "mine"), "runs/../runs/mine"):
            result = export(store, "sft", tmp_path / "mine.jsonl", model=spelling)
            assert result.rows == 1 and "Title 0" in (tmp_path / "mine.jsonl").read_text(), spelling
        assert export(store, "sft", tmp_path / "base.jsonl", model="embedded").rows == 1


@pytest.mark.parametrize("format_name", ["sft", "chat", "dpo", "parquet", "csv", "hf"])
def test_an_empty_selection_writes_nothing_and_keeps_an_earlier_export(db, tmp_path, format_name):
    out = tmp_path / "earlier"
    with Store(db) as store:
        export(store, format_name, out)
        before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_bytes()
        with pytest.raises(TitlecraftError, match=f"no curated pairs decided since 2999-01-01 in the store; {out}"):
            export(store, format_name, out, since="2999-01-01")
        with pytest.raises(TitlecraftError, match="no curated pairs titled by model 'other' in the store"):
            export(store, format_name, out, model="other")
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_bytes()) == before


@pytest.mark.parametrize("format_name,name,problem", [
    ("parquet", "pairs.jsonl", "named as a JSON Lines file, but the parquet format writes parquet: give a .parquet name, "
     "or choose the sft, chat or dpo format"),
    ("csv", "pairs.PARQUET", "named as a parquet file, but the csv format writes CSV: give a .csv name"),
    ("sft", "pairs.csv", "named as a CSV file, but the sft format writes JSON Lines: give a .jsonl name"),
    ("hf", "pairs.parquet", "but the hf format writes a datasets folder: give a folder name, or choose the parquet format"),
])
def test_an_out_named_for_another_format_is_refused(db, tmp_path, format_name, name, problem):
    """The app keeps a typed path when its format is switched: parquet bytes landed in pairs.jsonl, which
    train, import and prepare (each reading by suffix) then refused as unreadable."""
    out = tmp_path / name
    with Store(db) as store:
        with pytest.raises(TitlecraftError, match=re.escape(problem)):
            export(store, format_name, out)
        assert not out.exists()
        assert export(store, "sft", tmp_path / "pairs.ndjson").rows == export(store, "sft", tmp_path / "pairs.sft").rows == 3


def test_dpo_without_rejections_is_nothing_to_export(tmp_path):
    with Store(tmp_path / "titlecraft.db") as store:
        abstract = store.add_abstract("An abstract.")
        _, [candidate] = store.record_generation(abstract, "m", "m-id", {}, 1, "cpu", 1.0, 0.1, [{"text": "A Title"}])
        store.accept(candidate)
        with pytest.raises(TitlecraftError, match="no curated pair has a rejected candidate"):
            export(store, "dpo", tmp_path / "dpo.jsonl")
        assert export(store, "sft", tmp_path / "sft.jsonl").rows == 1
    assert not (tmp_path / "dpo.jsonl").exists()


def test_since_accepts_dates_and_iso_times_only():
    assert parse_since("2026-05-01") == "2026-05-01"
    assert parse_since("2026-05-01T12:00:00+02:00") == "2026-05-01T10:00:00.000+00:00"
    with pytest.raises(TitlecraftError, match="--since expects a date"):
        parse_since("last tuesday")


def test_a_failed_export_leaves_the_previous_file_and_no_partial_file(db, tmp_path, monkeypatch):
    out = tmp_path / "sft.jsonl"
    out.write_text("previous export\n", encoding="utf-8")
    real_dumps = json.dumps
    calls = []

    def dumps_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_dumps(*args, **kwargs)

    monkeypatch.setattr(export_module.json, "dumps", dumps_then_fail)
    with Store(db) as store, pytest.raises(OSError, match="disk full"):
        export(store, "sft", out)
    assert out.read_text(encoding="utf-8") == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft.jsonl", "titlecraft.db"]


def test_export_command_writes_and_reports(db, tmp_path, capsys):
    out = tmp_path / "exports" / "dpo.jsonl"
    assert main(["export", "--format", "dpo", "--out", str(out), "--model", "tuned", "--db", str(db)]) == 0
    assert f"wrote 2 dpo rows to {out}" in capsys.readouterr().out
    assert len(read_jsonl(out)) == 2


def test_export_command_counts_one_row_in_the_singular(db, tmp_path, capsys):
    """The app's store after one curated abstract with a rejection exported as 'wrote 1 dpo rows'."""
    out = tmp_path / "exports" / "dpo.jsonl"
    assert main(["export", "--format", "dpo", "--out", str(out), "--model", "base", "--db", str(db)]) == 0
    assert capsys.readouterr().out == f"wrote 1 dpo row to {out}\n"


@pytest.mark.parametrize("format_name", ["sft", "parquet", "csv", "hf"])
@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_export_refuses_to_overwrite_the_store_or_its_journal_files(db, tmp_path, format_name, suffix):
    target = db.with_name(db.name + suffix)
    with Store(db) as store:
        store.own_title(store.add_abstract("Kept while the store is open."), "Kept")  # the -wal file exists now
        before = target.read_bytes()
        with pytest.raises(TitlecraftError, match="exporting there would destroy the curation database"):
            export(store, format_name, tmp_path / "." / target.name)
        assert target.read_bytes() == before
    with Store(db) as store:
        assert len(store.curated_pairs()) == 4


def test_export_command_refuses_the_default_store_given_as_out(db, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TITLECRAFT_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    db.rename(tmp_path / "data" / "titlecraft.db")
    before = (tmp_path / "data" / "titlecraft.db").read_bytes()
    assert main(["export", "--format", "csv", "--out", "data/../data/titlecraft.db"]) == 2
    assert "is the store itself" in capsys.readouterr().err
    assert (tmp_path / "data" / "titlecraft.db").read_bytes() == before


def test_export_command_needs_an_existing_database(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    assert main(["export", "--format", "sft", "--out", str(tmp_path / "x.jsonl"), "--db", str(missing)]) == 2
    assert f"no titlecraft database at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_stats_command_prints_counts_as_text_and_json(db, capsys):
    assert main(["stats", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "decisions      6 (accept 1, edit 1, reject 3, own_title 1, undo 0)" in text
    assert "curated pairs  3" in text
    assert main(["stats", "--json", "--db", str(db)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {key: stats[key] for key in ("abstracts", "generations", "candidates", "curated", "rejected")} == {
        "abstracts": 3, "generations": 2, "candidates": 5, "curated": 3, "rejected": 3,
    }
    assert stats["decisions"] == {"accept": 1, "edit": 1, "reject": 3, "own_title": 1, "undo": 0}
    tuned = next(model for model in stats["models"] if model["model_spec"] == "tuned")
    assert (tuned["decided"], tuned["edit_rate"], tuned["acceptance_rate"]) == (3, pytest.approx(1 / 3), 0.0)
