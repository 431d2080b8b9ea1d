"""Comparison of evaluation runs: the table, the chart, and warnings when runs scored other abstracts."""

from __future__ import annotations

import json

import pytest

from core.cli import main
from core.compare import bar_labels, compare, comparison_figure, comparison_rows
from core.errors import TitlecraftError, TitlecraftWarning

TOP1 = {"top1.rouge1": 40.0, "top1.rouge2": 20.0, "top1.rougeL": 35.0, "top1.bleu": 10.0, "top1.length_ratio": 0.9}
SET = {"best_of_n.rougeL": 50.0, "usable_rate": 99.0, "copy_rate": 1.0, "distinct2": 70.0,
       "distinct_candidates": 4.8, "seconds_per_abstract": 2.5}
CONFIG = {"data": "test.parquet", "limit": 300, "seed": 0, "n": 5, "selection": "abc", "abstracts": 300}


def write_run(folder, model: str, mode: str, rankings: list[str], **overrides):
    metrics = {**TOP1, **SET, **CONFIG, "model": model, "mode": mode, "rankings": rankings}
    if len(rankings) > 1:
        metrics.update({f"{r}.{k}": v + index for index, r in enumerate(rankings) for k, v in TOP1.items()})
    metrics.update(overrides)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_a_row_per_run_and_ranking_with_its_own_top_candidate_metrics(tmp_path):
    base = write_run(tmp_path / "base", "embedded-base", "zero-shot", ["score"])
    tuned = write_run(tmp_path / "tuned", "embedded", "finetuned", ["score", "consensus"])
    table, chart, problems = compare([base, tuned], tmp_path / "out" / "compare.md")
    assert problems == [] and chart == tmp_path / "out" / "compare.png"
    assert chart.read_bytes().startswith(b"\x89PNG")
    text = table.read_text()
    assert "All runs scored the same 300 abstracts" in text and "![comparison chart](<compare.png>)" in text
    assert "| base | embedded-base | zero-shot | score | 40.0 | 20.0 | 35.0 | 10.0 | 50.0 |" in text
    assert "| tuned | embedded | finetuned | consensus | 41.0 | 21.0 | 36.0 | 11.0 | 50.0 |" in text
    rows = comparison_rows({"tuned": json.loads((tuned / "metrics.json").read_text())})
    assert [(row.ranking, row.values["top1.rougeL"]) for row in rows] == [("score", 35.0), ("consensus", 36.0)]


def test_the_same_data_named_by_another_path_is_not_warned_about(tmp_path, recwarn):
    first = write_run(tmp_path / "a", "embedded", "finetuned", ["score"], data="data/prepared/test.parquet")
    second = write_run(tmp_path / "b", "embedded-base", "zero-shot", ["score"], data="../titlecraft/data/prepared/test.parquet")
    _, _, problems = compare([first, second], tmp_path / "compare.md")
    assert problems == [] and not recwarn.list
    third = write_run(tmp_path / "c", "embedded", "zero-shot", ["score"], data="other.parquet", selection="other")
    _, _, problems = compare([first, third], tmp_path / "compare.md")
    assert [problem.split(" (")[0] for problem in problems] == ["the runs differ in data", "the runs differ in selection"]


def test_names_are_shown_literally_and_the_chart_link_survives_spaces(tmp_path):
    run = write_run(tmp_path / "a|b *new*", "m|odel_x", "zero-shot", ["score"])
    table, chart, _ = compare([run], tmp_path / "my compare.md")
    text = table.read_text()
    assert "| a\\|b \\*new\\* | m\\|odel\\_x | zero-shot | score | 40.0 |" in text
    assert "![comparison chart](<my compare.png>)" in text and chart.is_file()


def test_runs_on_different_abstracts_are_warned_about(tmp_path):
    first = write_run(tmp_path / "a", "embedded", "finetuned", ["score"])
    second = write_run(tmp_path / "b", "embedded-base", "zero-shot", ["score"], limit=100, selection="other")
    with pytest.warns(TitlecraftWarning, match="the runs differ in"):
        table, _, problems = compare([first, second], tmp_path / "compare.md")
    assert len(problems) == 2
    assert "**Warning:** the runs differ in selection" in table.read_text()


def test_runs_generated_with_other_settings_say_which_and_how(tmp_path):
    """Rows show model and mode only: the same model sampled hotter, or in another dtype, looked like a
    rerun of the same thing."""
    settings = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 40, "dtype": "bfloat16", "k": 0}
    first = write_run(tmp_path / "a", "embedded", "finetuned", ["score"], **settings)
    hotter = write_run(tmp_path / "b", "embedded", "finetuned", ["score"], **{**settings, "temperature": 1.0, "dtype": "float32"})
    table, _, problems = compare([first, hotter], tmp_path / "compare.md")
    assert problems == []
    assert (
        "The runs generated their candidates with different settings: temperature (a: 0.8, b: 1.0); "
        "dtype (a: bfloat16, b: float32)." in table.read_text()
    )
    alike = write_run(tmp_path / "c", "embedded-base", "zero-shot", ["score"], **settings)
    table, _, _ = compare([first, alike], tmp_path / "compare.md")
    assert "different settings" not in table.read_text()


def test_missing_runs_are_user_errors(tmp_path, capsys):
    with pytest.raises(TitlecraftError, match="no metrics.json"):
        compare([tmp_path / "nothing"], tmp_path / "compare.md")
    assert main(["compare", str(tmp_path / "nothing"), "--out", str(tmp_path / "c.md")]) == 2
    assert "titlecraft eval" in capsys.readouterr().err
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "metrics.json").write_text('{"x": 1}')
    with pytest.raises(TitlecraftError, match="not the metrics of a titlecraft eval run \\(no model, abstracts"):
        compare([stranger], tmp_path / "compare.md")
    (stranger / "metrics.json").write_text("[1]")
    with pytest.raises(TitlecraftError, match="not the metrics of a titlecraft eval run"):
        compare([stranger], tmp_path / "compare.md")
    assert not (tmp_path / "compare.md").exists()
    run = write_run(tmp_path / "run", "embedded", "finetuned", ["score"])
    with pytest.raises(TitlecraftError, match="names the markdown table"):
        compare([run], tmp_path / "chart.PNG")
    assert not list(tmp_path.glob("chart.*"))


CORRUPT_METRICS = {
    "invalid json": (b'{"model": ', "is not valid JSON"),
    "not utf-8": (b'{"model": "caf\xe9"}', "is not valid JSON"),
    "a text metric": (json.dumps({**TOP1, **SET, **CONFIG, "model": "m", "top1.rouge1": "high"}).encode(), "top1.rouge1 is 'high', not a number"),
}


@pytest.mark.parametrize("content, message", CORRUPT_METRICS.values(), ids=CORRUPT_METRICS.keys())
def test_corrupt_metrics_are_one_line_errors(tmp_path, capsys, content, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_bytes(content)
    assert main(["compare", str(run), "--out", str(tmp_path / "compare.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_null_metric_is_shown_as_a_dash(tmp_path):
    run = write_run(tmp_path / "run", "embedded", "finetuned", ["score"], **{"top1.bleu": None})
    table, _, _ = compare([run], tmp_path / "compare.md")
    assert "| run | embedded | finetuned | score | 40.0 | 20.0 | 35.0 | – | 50.0 |" in table.read_text()


def test_a_file_system_error_is_one_line_not_a_traceback(tmp_path, capsys):
    run = write_run(tmp_path / "run", "embedded", "finetuned", ["score"])
    (tmp_path / "notes.txt").write_text("kept")
    assert main(["compare", str(run), "--out", str(tmp_path / "notes.txt" / "compare.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "notes.txt" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("folder_name", ["reports", "compare.md", "compare.png"])
def test_an_out_path_that_is_a_folder_is_refused_before_anything_is_written(tmp_path, capsys, folder_name):
    run = write_run(tmp_path / "run", "embedded", "finetuned", ["score"])
    (tmp_path / folder_name).mkdir()
    out = tmp_path / ("reports" if folder_name == "reports" else "compare.md")
    before = sorted(path.name for path in tmp_path.iterdir())
    assert main(["compare", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{tmp_path / folder_name} is a folder" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_a_run_named_by_a_relative_path_is_labelled_by_its_folder(tmp_path, monkeypatch):
    write_run(tmp_path / "tuned", "embedded", "finetuned", ["score"])
    monkeypatch.chdir(tmp_path / "tuned")
    table, _, _ = compare(["."], tmp_path / "compare.md")
    assert "| tuned | embedded | finetuned | score |" in table.read_text()
    with pytest.raises(TitlecraftError, match=r"tuned is named twice \(\. and \.\./tuned\)"):
        compare([".", "../tuned"], tmp_path / "compare.md")


def test_runs_in_folders_of_the_same_name_are_labelled_by_their_parents(tmp_path):
    # They were refused ("must have different names") though they are different runs.
    runs = [write_run(tmp_path / parent / "tuned", "embedded", "finetuned", ["score"]) for parent in ("a", "b")]
    other = write_run(tmp_path / "base", "embedded-base", "zero-shot", ["score"])
    table, _, _ = compare([*runs, other], tmp_path / "compare.md")
    text = table.read_text()
    assert "| a/tuned | embedded |" in text and "| b/tuned | embedded |" in text and "| base | embedded-base |" in text


def test_compare_command(tmp_path, capsys):
    runs = [str(write_run(tmp_path / name, "embedded", "finetuned", ["score"])) for name in ("x", "y")]
    assert main(["compare", *runs, "--out", str(tmp_path / "compare.md")]) == 0
    assert "compare.png" in capsys.readouterr().out


def test_a_metric_a_run_lacks_is_a_dash_over_its_bar_not_nan():
    assert bar_labels([44.8, float("nan"), 54.06]) == ["45", "–", "54"]


def test_limits_past_the_end_of_the_same_data_are_not_warned_about(tmp_path, recwarn):
    # Both limits exceed the 12 rows of the data, so both runs scored the same 12 abstracts.
    first = write_run(tmp_path / "a", "embedded", "finetuned", ["score"], limit=20, abstracts=12)
    second = write_run(tmp_path / "b", "embedded-base", "zero-shot", ["score"], limit=500, abstracts=12)
    table, _, problems = compare([first, second], tmp_path / "compare.md")
    assert problems == [] and not recwarn.list
    assert "All runs scored the same 12 abstracts of `test.parquet` (seed 0, limit 20 / 500, selection abc)" in table.read_text()
    # Without a selection fingerprint to go by, a different limit is still a warning.
    third = write_run(tmp_path / "c", "embedded", "finetuned", ["score"], limit=20, selection=None)
    fourth = write_run(tmp_path / "d", "embedded", "finetuned", ["score"], limit=500, selection=None)
    with pytest.warns(TitlecraftWarning, match="differ in limit"):
        compare([third, fourth], tmp_path / "compare.md")


def test_every_run_has_its_legend_entry_even_one_named_with_a_leading_underscore(tmp_path):
    """matplotlib leaves out a bar's label starting with "_": the "_baseline" run had bars, no legend entry."""
    write_run(tmp_path / "_baseline", "embedded-base", "zero-shot", ["score"])
    write_run(tmp_path / "tuned", "embedded", "finetuned", ["score", "consensus"])
    rows = comparison_rows({name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("_baseline", "tuned")})
    figure = comparison_figure(rows)
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == [row.label for row in rows] and len(legend) == 3 and legend[0].startswith("_baseline")
