"""Every command that writes says plainly when a file sits where a folder of its output path is needed, and
every command that reads pair files when a folder is named where one of them belongs."""

from __future__ import annotations

import json
import shutil

import pytest
from shared_pairs import shared_pairs
from test_compare import write_run

from core.cli import main
from core.store import Store


class WordTokenizer:
    """One token per word, called like a Hugging Face tokenizer (prepare only measures lengths)."""

    name_or_path = "words"

    def __call__(self, texts, **_options):
        return {"input_ids": [text.split() for text in texts]}


@pytest.fixture
def inputs(tmp_path):
    """Real input files for every command: pairs, an import file, a store with a curated pair, an eval run."""
    pairs = tmp_path / "pairs.parquet"
    shared_pairs(4).to_parquet(pairs)
    abstracts = tmp_path / "abstracts.jsonl"
    row = shared_pairs(1).iloc[0]
    abstracts.write_text(json.dumps({"abstract": row["abstract"], "title": row["title"]}) + "\n")
    db = tmp_path / "titlecraft.db"
    with Store(db) as store:
        store.own_title(store.add_abstract(row["abstract"]), row["title"])
    run = write_run(tmp_path / "run", "embedded", "zero-shot", ["score"])
    return {"pairs": pairs, "abstracts": abstracts, "db": db, "run": run}


# Each command's arguments, given its inputs and the output path (--out, or --db for import).
COMMANDS = {
    "export": lambda i, out: ["export", "--format", "csv", "--db", str(i["db"]), "--out", out],
    "export-hf": lambda i, out: ["export", "--format", "hf", "--db", str(i["db"]), "--out", out],
    "import": lambda i, out: ["import", str(i["abstracts"]), "--db", out],
    "eval": lambda i, out: ["eval", "--model", i["model"], "--data", str(i["pairs"]), "--limit", "1", "-n", "1",
                            "--max-new-tokens", "2", "--device", "cpu", "--out", out],
    "compare": lambda i, out: ["compare", str(i["run"]), "--out", out],
    "prepare": lambda i, out: ["prepare", "--in", str(i["pairs"]), "--out", out, "--token-sample", "0"],
    "train": lambda i, out: ["train", "--base", i["model"], "--train", str(i["pairs"]), "--batch-size", "2",
                             "--device", "cpu", "--out", out],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_where_a_folder_is_needed_is_named_before_anything_is_written(
    command, inputs, tiny_gptneo_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    inputs["model"] = str(tiny_gptneo_dir)
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("kept")
    out = in_the_way / "sub" / "output"
    before = sorted(path.name for path in tmp_path.iterdir())
    assert main(COMMANDS[command](inputs, str(out))) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: cannot write {out}: {in_the_way} is a file, not a folder"]
    assert in_the_way.read_text() == "kept"
    assert sorted(path.name for path in tmp_path.iterdir()) == before


@pytest.mark.parametrize("command", ["prepare", "train"])
def test_a_file_given_as_an_output_folder_is_refused_before_any_work(
    command, inputs, tiny_gptneo_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    inputs["model"] = str(tiny_gptneo_dir)
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("kept")
    assert main(COMMANDS[command](inputs, str(in_the_way))) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: cannot write {in_the_way}: it is a file, not a folder"
    ]
    assert "training" not in err and "tokenise" not in err  # refused before the work, not after it
    assert in_the_way.read_text() == "kept"


EMPTY_OUT_COMMANDS = {
    **COMMANDS,
    "scrape": lambda i, out: ["scrape", "--category", "cs", "--oai-url", "http://127.0.0.1:9/oai2", "--out", out],
}


@pytest.mark.parametrize("command", EMPTY_OUT_COMMANDS)
def test_an_empty_output_path_is_refused_not_taken_for_the_current_folder(
    command, inputs, tiny_gptneo_dir, tmp_path, monkeypatch, capsys
):
    """`--out ""` (an unset shell variable) is Path("."): eval and prepare wrote into the current folder."""
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    inputs["model"] = str(tiny_gptneo_dir)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main(EMPTY_OUT_COMMANDS[command](inputs, "")) == 2
    option = "--db" if command == "import" else "--out"
    assert capsys.readouterr().err == f"error: {option} is empty: give a path to write to\n"
    assert not any(cwd.iterdir())


# Each command's arguments with the pair file it reads at one option replaced by ``folder``.
FOLDER_AS_DATA_FILE = {
    "prepare --in": lambda i, folder: ["prepare", "--in", folder, "--out", str(i["tmp"] / "split")],
    "eval --data": lambda i, folder: ["eval", "--model", i["model"], "--data", folder, "--out", str(i["tmp"] / "report")],
    "eval --retrieval-pool": lambda i, folder: [
        *COMMANDS["eval"](i, str(i["tmp"] / "report")), "--mode", "few-shot", "--retrieval-pool", folder
    ],
    "train --train": lambda i, folder: ["train", "--base", i["model"], "--train", folder, "--out", str(i["tmp"] / "ckpt")],
    "train --val": lambda i, folder: [*COMMANDS["train"](i, str(i["tmp"] / "ckpt")), "--val", folder],
    "train --extra": lambda i, folder: [*COMMANDS["train"](i, str(i["tmp"] / "ckpt")), "--extra", folder],
}


@pytest.mark.parametrize("option", FOLDER_AS_DATA_FILE)
def test_a_folder_named_where_a_pair_file_is_read_is_named_as_a_folder(
    option, inputs, tiny_gptneo_dir, tmp_path, monkeypatch, capsys
):
    """The prepared folder given for one of its splits was reported as "does not exist" (train), "no such
    retrieval pool; run `titlecraft prepare` first" (eval) or "unsupported file type ''" (prepare, eval)."""
    monkeypatch.setattr("core.commands.prepare.load_tokenizer", lambda spec: WordTokenizer())
    inputs.update(model=str(tiny_gptneo_dir), tmp=tmp_path)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for split in ("train", "validation", "test"):
        shutil.copy(inputs["pairs"], prepared / f"{split}.parquet")
    assert main(FOLDER_AS_DATA_FILE[option](inputs, str(prepared))) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {prepared} is a folder; name one of its pair files (test.parquet, train.parquet, validation.parquet)"]
