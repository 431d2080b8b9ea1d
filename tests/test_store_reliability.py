"""The store under crashes, concurrent processes, unusable files, and arbitrary decision sequences."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.cli import main
from core.errors import StoreUnavailable, TitlecraftError
from core.export import export, training_title
from core.importer import import_file
from core.store import Store


REPOSITORY = Path(__file__).resolve().parents[1]


def spawn(script: str, *args: str) -> subprocess.Popen:
    """Run a Python script, importing this checkout's core, in a child whose stdout we read by line."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )


DECIDING_FOREVER = """
    import sys
    from core.store import Store

    store = Store(sys.argv[1])
    abstract_id = store.add_abstract("An abstract whose decisions must survive a crash.")
    _, candidate_ids = store.record_generation(
        abstract_id, "base", "base-id", {}, 0, "cpu", 0.0, 0.0, [{"text": f"Candidate {n}"} for n in range(3)]
    )
    print("ready", flush=True)
    step = 0
    while True:
        decision_id = store.reject(candidate_ids[step % 3], reason=f"reason {step}")
        print(decision_id, step, flush=True)
        step += 1
"""


def test_every_acknowledged_decision_survives_sigkill(tmp_path):
    path = tmp_path / "titlecraft.db"
    child = spawn(DECIDING_FOREVER, str(path))
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    acknowledged = [child.stdout.readline() for _ in range(300)]
    child.send_signal(signal.SIGKILL)  # mid-stream: the child is committing as fast as it can
    # Acknowledgements already printed count too; a line the kill cut short ("1234 1" of "1234 12") does not.
    acknowledged += [line for line in child.stdout.read().splitlines(keepends=True) if line.endswith("\n")]
    child.wait()
    assert child.returncode == -signal.SIGKILL
    acknowledged_reasons = {int(line.split()[0]): f"reason {line.split()[1]}" for line in acknowledged if line.strip()}
    with Store(path) as store:
        recorded = {decision.id: decision.reason for decision in store.history(1)}
    assert len(acknowledged_reasons) >= 300
    for decision_id, reason in acknowledged_reasons.items():
        assert recorded.get(decision_id) == reason


WRITING_VERSIONS = """
    import sys
    from core.store import Store

    store = Store(sys.argv[1])
    abstract_id = store.add_abstract("An abstract curated while it is being exported.")
    generation_id, [good] = store.record_generation(
        abstract_id, "base", "base-id", {}, 0, "cpu", 0.0, 0.0, [{"text": "draft"}]
    )
    print("ready", flush=True)
    # Committed states always satisfy: chosen version - highest rejected version is 0 or 1, and the
    # rejected versions are exactly 1..highest. A mixed read of two states would break that.
    for version in range(1, int(sys.argv[2]) + 1):
        store.edit(good, f"title v{version}")
        [bad] = store.append_candidates(generation_id, [{"text": f"rejected v{version}"}])
        store.reject(bad)
    print("done", flush=True)
"""


def test_exports_during_writes_are_consistent_snapshots_and_never_locked(tmp_path):
    path = tmp_path / "titlecraft.db"
    writer = spawn(WRITING_VERSIONS, str(path), "150")
    assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
    out = tmp_path / "preferences.jsonl"
    exports = 0
    with Store(path) as store:
        while writer.poll() is None or exports < 3:
            try:
                export(store, "dpo", out)
            except TitlecraftError as error:  # a snapshot before the first rejection: nothing to export
                assert "Nothing to export" in str(error) and not out.exists()
                continue
            records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
            chosen = {record["chosen"] for record in records}
            rejected = sorted(int(record["rejected"].rsplit("v", 1)[1]) for record in records)
            if records:
                [title] = chosen
                chosen_version = int(title.rsplit("v", 1)[1])
                assert rejected == list(range(1, len(rejected) + 1))
                assert chosen_version - len(rejected) in (0, 1)
            exports += 1
    assert writer.wait() == 0, writer.stderr.read()
    assert writer.stdout.read().strip() == "done"
    with Store(path) as store:
        assert store.curated_title(1) == "title v150"
        assert len(store.rejected_candidates()) == 150


def test_read_only_database_is_refused_for_writing_read_for_stats_and_export_and_never_modified(tmp_path, capsys):
    path = tmp_path / "titlecraft.db"
    with Store(path) as store:
        store.own_title(store.add_abstract("An abstract."), "A title")
    path.chmod(0o444)
    before = path.read_bytes()
    try:
        with pytest.raises(StoreUnavailable, match=f"{path}.*read-only"):  # the app retries it later
            Store(path)
        # stats and export only read: they were refused, saying titlecraft records every decision in it
        assert main(["stats", "--db", str(path)]) == 0
        assert "own_title 1" in capsys.readouterr().out
        out = tmp_path / "out" / "pairs.jsonl"
        assert main(["export", "--format", "sft", "--out", str(out), "--db", str(path)]) == 0
        assert len(out.read_text().splitlines()) == 1
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "titlecraft.db"]
        with Store(path, reads_only=True) as store, pytest.raises(StoreUnavailable, match="read-only"):
            store.add_abstract("Another abstract.")
    finally:
        path.chmod(0o644)


def test_a_database_in_a_read_only_folder_is_refused_with_the_folder_named(tmp_path, capsys):
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "titlecraft.db"
    with Store(path) as store:
        store.add_abstract("An abstract.")
    for leftover in folder.glob("titlecraft.db-*"):
        leftover.unlink()
    before = path.read_bytes()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailable, match=f"the folder {folder} of the database is read-only"):
            Store(path)
        assert main(["stats", "--db", str(path)]) == 0
        assert "abstracts      1" in capsys.readouterr().out
        assert path.read_bytes() == before
        assert [p.name for p in folder.iterdir()] == ["titlecraft.db"]
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    "content",
    [b"arxiv_id,title\n1234,Not a database\n" * 50, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text file", "corrupt header"],
)
def test_corrupt_file_is_refused_and_never_modified(tmp_path, capsys, content):
    path = tmp_path / "titlecraft.db"
    path.write_bytes(content)
    with pytest.raises(TitlecraftError, match=f"{path} is not a SQLite database") as refused:
        Store(path)
    assert not isinstance(refused.value, StoreUnavailable)
    abstracts = tmp_path / "abstracts.txt"
    abstracts.write_text("An abstract to import into the broken store.\n")
    assert main(["import", str(abstracts), "--db", str(path)]) == 2
    assert "not a SQLite database" in capsys.readouterr().err
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abstracts.txt", "titlecraft.db"]


def another_programs_database(path, user_version: int):
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE bookmarks (url TEXT, added TEXT)")
        connection.execute("INSERT INTO bookmarks VALUES ('https://arxiv.org', '2025-01-01')")
        connection.execute(f"PRAGMA user_version = {user_version}")
    connection.close()


@pytest.mark.parametrize(
    ("user_version", "message"),
    [(0, "is not a titlecraft database .*bookmarks"), (1, "claims titlecraft schema version 1 but lacks its tables")],
)
def test_another_programs_database_is_refused_and_never_modified(tmp_path, capsys, user_version, message):
    path = tmp_path / "other.sqlite"
    another_programs_database(path, user_version)
    before = path.read_bytes()
    with pytest.raises(TitlecraftError, match=message):
        Store(path)
    assert main(["stats", "--db", str(path)]) == 2
    assert "titlecraft left it untouched" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["other.sqlite"]


def test_lock_held_past_the_busy_timeout_is_a_clear_error(tmp_path):
    path = tmp_path / "titlecraft.db"
    with Store(path) as store:
        abstract_id = store.add_abstract("An abstract.")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with Store(path, busy_timeout=0.2) as store:
            with pytest.raises(StoreUnavailable, match=f"{path} is locked by another process.*0.2 s"):
                store.own_title(abstract_id, "Blocked")
            other.execute("ROLLBACK")
            store.own_title(abstract_id, "Now it lands")
            assert store.curated_title(abstract_id) == "Now it lands"
    finally:
        other.close()


# A reference model of the curated view: per abstract, a stack of live decisions that undo pops.
ABSTRACTS = ("First abstract about graph learning.", "Second abstract about protein folding.")
CANDIDATES = ("Graph Title", "Protein Title", "Generic Title")
titles = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda text: text.strip() == text and bool(text)
)
operations = st.one_of(
    st.tuples(st.just("accept"), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("edit"), st.integers(0, 1), st.integers(0, 2), titles),
    st.tuples(st.just("reject"), st.integers(0, 1), st.integers(0, 2), st.none() | titles),
    st.tuples(st.just("own_title"), st.integers(0, 1), titles),
    st.tuples(st.just("undo"), st.integers(0, 1)),
)


def apply(store: Store, abstract_ids, candidate_ids, live: dict[int, list[tuple]], operation: tuple) -> None:
    action, which = operation[0], operation[1]
    abstract_id = abstract_ids[which]
    if action == "undo":
        if not live[which]:
            with pytest.raises(TitlecraftError):
                store.undo(abstract_id)
            return
        store.undo(abstract_id)
        live[which].pop()
    elif action == "own_title":
        store.own_title(abstract_id, operation[2])
        live[which].append(("own_title", None, operation[2]))
    else:
        candidate = operation[2]
        candidate_id = candidate_ids[which][candidate]
        if action == "accept":
            store.accept(candidate_id)
            live[which].append(("accept", candidate, CANDIDATES[candidate]))
        elif action == "edit":
            store.edit(candidate_id, operation[3])
            live[which].append(("edit", candidate, operation[3]))
        else:
            store.reject(candidate_id, reason=operation[3])
            live[which].append(("reject", candidate, CANDIDATES[candidate]))


def expected_curated(live: dict[int, list[tuple]]) -> dict[str, str]:
    """Each abstract's latest accepted, edited or own title whose candidate was not rejected since."""
    curated = {}
    for which, decisions in live.items():
        verdicts = {candidate: action for action, candidate, _ in decisions if candidate is not None}
        titled = [
            title for action, candidate, title in decisions
            if action != "reject" and (candidate is None or verdicts[candidate] != "reject")
        ]
        if titled:
            curated[ABSTRACTS[which]] = titled[-1]
    return curated


def expected_rejected(live: dict[int, list[tuple]]) -> set[tuple[str, str]]:
    rejected = set()
    for which, decisions in live.items():
        verdicts = {candidate: action for action, candidate, _ in decisions if candidate is not None}
        rejected |= {(ABSTRACTS[which], CANDIDATES[c]) for c, action in verdicts.items() if action == "reject"}
    return rejected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=14))
def test_any_decision_sequence_matches_the_reference_model_and_sft_round_trips(sequence):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with Store(folder / "curated.db") as store:
            abstract_ids = [store.add_abstract(text) for text in ABSTRACTS]
            candidates = [{"text": text} for text in CANDIDATES]
            candidate_ids = [
                store.record_generation(a, "base", "base-id", {}, 0, "cpu", 0.0, 0.0, candidates)[1]
                for a in abstract_ids
            ]
            live: dict[int, list[tuple]] = {0: [], 1: []}
            for operation in sequence:
                apply(store, abstract_ids, candidate_ids, live, operation)
            curated = {pair.abstract: pair.title for pair in store.curated_pairs()}
            assert curated == expected_curated(live)
            rejected = {(store.abstract(r.abstract_id).text, r.text) for r in store.rejected_candidates()}
            assert rejected == expected_rejected(live)
            if not curated:
                with pytest.raises(TitlecraftError, match="Nothing to export"):
                    export(store, "sft", folder / "sft.jsonl")
                return
            export(store, "sft", folder / "sft.jsonl")
        with Store(folder / "imported.db") as imported:
            summary = import_file(imported, folder / "sft.jsonl")
            assert summary.problems == [] and summary.imported == len(curated)
            # The training formats write a title on one line, whitespace collapsed, as training reads it
            assert {pair.abstract: pair.title for pair in imported.curated_pairs()} == {
                abstract: training_title(title) for abstract, title in curated.items()
            }
            assert import_file(imported, folder / "sft.jsonl").already_present == len(curated)
            assert len(imported.curated_pairs()) == len(curated)

