"""The research scripts that docs/evaluation.md cites, run on small evaluation folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / name), *args], capture_output=True, text=True, timeout=120)


def sample(number: int) -> dict:
    candidates = [
        {"text": f"Graph Networks for Molecules Part {number}", "score": -0.5, "rank": 1, "flags": []},
        {"text": f"Learning Molecule Graphs {number}", "score": -0.9, "rank": 2, "flags": []},
    ]
    return {
        "id": f"id-{number}",
        "abstract": f"We study graph networks for molecules, case {number}.",
        "reference": f"Graph Networks for Molecules {number}",
        "candidates": candidates,
        "examples": [],
    }


def test_eval_findings_names_an_unfinished_evaluation_instead_of_a_traceback(tmp_path):
    """A report folder of an evaluation still running (or stopped) holds samples but no metrics.json yet:
    the script stopped with a FileNotFoundError traceback; it now says what is missing and how to finish it."""
    finished, unfinished = tmp_path / "finished", tmp_path / "unfinished"
    for folder in (finished, unfinished):
        folder.mkdir()
        (folder / "samples.jsonl").write_text("".join(json.dumps(sample(n)) + "\n" for n in range(3)))
    (finished / "metrics.json").write_text(json.dumps({"abstracts": 3}))

    done = run_script("eval_findings.py", str(finished))
    assert done.returncode == 0, done.stderr
    assert "finished: 3 abstracts" in done.stdout

    stopped = run_script("eval_findings.py", str(unfinished))
    assert stopped.returncode != 0
    assert "Traceback" not in stopped.stderr
    assert stopped.stderr.strip() == (
        f"{unfinished} has no metrics.json: its evaluation has not finished "
        "(run the same titlecraft eval command again to finish it)"
    )
