"""Compare evaluation runs (folders written by ``titlecraft eval``) in one table and one chart.

Numbers are only comparable on the same abstracts, so runs that scored different selections (another
data file, seed or limit) or a different N are named in a warning above the table; generation settings
in which the runs differ (temperature, dtype, ...) are named there too, as the rows show only model and mode.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import TitlecraftError, TitlecraftWarning
from core.evaluate import METRICS_FILE, markdown_cell
from core.paths import refuse_file_in_the_way, write_text_atomically

# (metric key, column header); keys starting with "top1." follow each row's ranking.
COLUMNS = (
    ("top1.rouge1", "R-1"),
    ("top1.rouge2", "R-2"),
    ("top1.rougeL", "R-L"),
    ("top1.bleu", "BLEU"),
    ("best_of_n.rougeL", "best-of-N R-L"),
    ("usable_rate", "usable %"),
    ("copy_rate", "copy %"),
    ("distinct2", "distinct-2 %"),
    ("distinct_candidates", "distinct of N"),
    ("top1.length_ratio", "length ratio"),
    ("seconds_per_abstract", "s / abstract"),
)
CHART_METRICS = (
    ("top1.rouge1", "top-1 ROUGE-1"),
    ("top1.rouge2", "top-1 ROUGE-2"),
    ("top1.rougeL", "top-1 ROUGE-L"),
    ("best_of_n.rougeL", "best-of-N ROUGE-L"),
)
# Settings that must agree for two runs to have scored the same abstracts the same way.
SHARED_SETTINGS = ("data", "limit", "seed", "n", "selection")
# Settings that only choose the abstracts: runs with the same selection fingerprint agree on them.
SETTLED_BY_SELECTION = ("data", "limit")
# How the candidates were generated, beyond the model and mode that the table shows (eval's metrics.json).
GENERATION_SETTINGS = (
    "temperature", "top_p", "max_new_tokens", "greedy_first", "oversample", "diversity", "k", "retrieval_pool", "dtype",
)
# What every metrics.json of `titlecraft eval` holds and the table cannot do without.
REQUIRED_METRICS = ("model", "abstracts", "top1.rougeL", "best_of_n.rougeL")


@dataclass(frozen=True)
class ComparedRow:
    """One run under one ranking."""

    label: str
    run: str
    model: str
    mode: str
    ranking: str
    values: dict[str, float]


def load_run(folder: str | os.PathLike) -> dict:
    """A run's metrics.json; anything unreadable, or a table metric that is not a number, is a one-line
    error (a metric that is null or missing is shown as "–")."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        raise TitlecraftError(f"{folder} holds no {METRICS_FILE}; run `titlecraft eval --out {folder}` first")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TitlecraftError(f"{path} is not valid JSON: {error}") from None
    missing = [key for key in REQUIRED_METRICS if not isinstance(metrics, dict) or key not in metrics]
    if missing:
        raise TitlecraftError(
            f"{path} is not the metrics of a titlecraft eval run (no {', '.join(missing)}); "
            f"run `titlecraft eval --out {folder}` to write one"
        )
    table_keys = {key for key, _ in COLUMNS}
    for key, value in metrics.items():
        shown = key in table_keys or key.partition(".")[2] in table_keys  # "consensus.top1.rouge1" too
        if shown and value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TitlecraftError(
                f"{path} is not valid metrics: {key} is {value!r}, not a number; "
                f"run `titlecraft eval --out {folder}` to write it again"
            )
    return metrics


def comparability_warnings(runs: dict[str, dict]) -> list[str]:
    """One message per setting on which the runs disagree. The data file and the limit count by the
    selection fingerprint (which abstracts were scored) where every run has one: one file can be named
    by many paths, another file may hold the same abstracts, and every limit past the end of the data
    scores all of it."""
    selections = {metrics.get("selection") for metrics in runs.values()}
    same_abstracts = len(selections) == 1 and None not in selections
    messages = []
    for setting in SHARED_SETTINGS:
        if setting in SETTLED_BY_SELECTION and same_abstracts:
            continue
        values = {name: metrics.get(setting) for name, metrics in runs.items()}
        if len(set(map(str, values.values()))) > 1:
            listed = ", ".join(f"{name}: {value}" for name, value in values.items())
            messages.append(f"the runs differ in {setting} ({listed}), so they did not score the same abstracts alike")
    return messages


def differing_generation_settings(runs: dict[str, dict]) -> list[str]:
    """Each generation setting on which the runs differ, with every run's value: the table's rows show the
    model and mode only, so two runs of one model at another temperature (or dtype) looked alike."""
    differing = []
    for setting in GENERATION_SETTINGS:
        values = {name: metrics.get(setting) for name, metrics in runs.items()}
        if len(set(map(str, values.values()))) > 1:
            differing.append(f"{setting} ({', '.join(f'{name}: {value}' for name, value in values.items())})")
    return differing


def comparison_rows(runs: dict[str, dict]) -> list[ComparedRow]:
    """A row per run and ranking: runs scored with ``--ranking both`` give a score and a consensus row."""
    rows = []
    for name, metrics in runs.items():
        rankings = metrics.get("rankings") or [metrics.get("ranking", "score")]
        for ranking in rankings:
            prefix = f"{ranking}." if len(rankings) > 1 else ""
            values = {key: metrics.get(prefix + key if key.startswith("top1.") else key) for key, _ in COLUMNS}
            values = {key: float("nan") if value is None else float(value) for key, value in values.items()}
            label = f"{name} ({ranking})" if len(rankings) > 1 else name
            rows.append(ComparedRow(label, name, metrics.get("model", "?"), metrics.get("mode", "?"), ranking, values))
    return rows


# Ratios and counts near 1-5 need two decimals; percentages read fine with one.
TWO_DECIMALS = {"distinct_candidates", "top1.length_ratio"}


def _format(key: str, value: float) -> str:
    if value != value:  # NaN: the run lacks this metric
        return "–"
    return f"{value:.2f}" if key in TWO_DECIMALS else f"{value:.1f}"


def render_markdown(rows: Sequence[ComparedRow], runs: dict[str, dict], problems: Sequence[str], chart: str) -> str:
    first = next(iter(runs.values()))
    lines = ["# Model comparison", ""]
    if problems:
        lines += [f"> **Warning:** {problem}." for problem in problems] + [""]
    else:
        limits = " / ".join(dict.fromkeys(str(metrics.get("limit")) for metrics in runs.values()))
        lines += [
            f"All runs scored the same {first.get('abstracts')} abstracts of `{first.get('data')}` "
            f"(seed {first.get('seed')}, limit {limits}, selection {first.get('selection')}) "
            f"with N = {first.get('n')} candidates.",
            "",
        ]
    differing = differing_generation_settings(runs)
    if differing:
        lines += [f"The runs generated their candidates with different settings: {'; '.join(differing)}.", ""]
    header = ["Run", "Model", "Mode", "Ranking", *(title for _, title in COLUMNS)]
    lines += ["| " + " | ".join(header) + " |", "|---|---|---|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        names = [markdown_cell(str(text)) for text in (row.run, row.model, row.mode, row.ranking)]
        cells = [*names, *(_format(key, row.values[key]) for key, _ in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "ROUGE F1, BLEU and rates are percentages; best-of-N is the candidate closest to the reference "
        "(an oracle: the most a researcher picking from the list could get).",
        "",
        f"![comparison chart](<{chart}>)",  # <...>: a file name with spaces stays one link
    ]
    return "\n".join(lines) + "\n"


def bar_labels(heights: Sequence[float]) -> list[str]:
    """Rounded values over the bars; a metric a run lacks is a dash, not "nan"."""
    return ["–" if math.isnan(height) else f"{height:.0f}" for height in heights]


def comparison_figure(rows: Sequence[ComparedRow]):
    """Grouped bars: the overlap metrics of every run and ranking side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    positions = np.arange(len(CHART_METRICS))
    width = 0.8 / max(len(rows), 1)
    figure, axes = plt.subplots(figsize=(max(7.0, 0.45 * len(CHART_METRICS) * len(rows)), 4.5))
    every_bars = []
    for index, row in enumerate(rows):
        heights = [row.values.get(key, float("nan")) for key, _ in CHART_METRICS]
        bars = axes.bar(positions + (index - (len(rows) - 1) / 2) * width, heights, width)
        axes.bar_label(bars, labels=bar_labels(heights), fontsize=7)
        every_bars.append(bars)
    axes.set_xticks(positions, [title for _, title in CHART_METRICS])
    axes.set_ylabel("F1 (%)")
    axes.set_title("Generated titles against the real ones")
    # Handles and labels given outright: matplotlib leaves out a bar's own label starting with "_", so a
    # run folder named "_baseline" had bars but no legend entry.
    axes.legend(every_bars, [row.label for row in rows], fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return figure


def plot_comparison(rows: Sequence[ComparedRow], path: Path) -> None:
    """The comparison chart, written as a PNG."""
    import matplotlib.pyplot as plt

    figure = comparison_figure(rows)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def _refuse_folders_in_the_way(out: Path) -> None:
    """Check both outputs before writing either: otherwise a folder at the table's path is found only
    after the chart was written beside it, leaving a chart without its table."""
    for path in (out, out.with_suffix(".png")):
        if path.is_dir():
            raise TitlecraftError(
                f"{path} is a folder, and compare writes the table to --out {out} and the chart beside it "
                f"(same name, .png): give a .md file name such as reports/compare.md"
            )


def run_labels(folders: Sequence[str | os.PathLike]) -> list[str]:
    """Each run's label: its folder's name ("." too, once resolved), with as many parent folders as it
    takes to tell apart folders of the same name (a/tuned, b/tuned). A folder named twice is refused."""
    paths = [Path(folder).resolve() for folder in folders]
    for path in paths:
        if paths.count(path) > 1:
            spellings = " and ".join(str(folder) for folder, same in zip(folders, paths, strict=True) if same == path)
            raise TitlecraftError(f"{path} is named twice ({spellings}); name each evaluation folder once")
    labels = [path.name for path in paths]
    depth = 1
    while len(set(labels)) < len(labels):
        depth += 1
        labels = [
            "/".join(path.parts[-depth:]) if labels.count(label) > 1 else label
            for path, label in zip(paths, labels, strict=True)
        ]
    return labels


def compare(folders: Sequence[str | os.PathLike], out: str | os.PathLike) -> tuple[Path, Path, list[str]]:
    """Write the comparison markdown to ``out`` and its chart beside it (same name, .png)."""
    if not folders:
        raise TitlecraftError("name at least one evaluation folder to compare")
    if Path(out).suffix.lower() == ".png":
        raise TitlecraftError(
            f"--out {out} names the markdown table, and the chart is written beside it as .png: "
            "give a .md name such as reports/compare.md"
        )
    refuse_file_in_the_way(out)
    _refuse_folders_in_the_way(Path(out))
    runs = {label: load_run(folder) for label, folder in zip(run_labels(folders), folders, strict=True)}
    problems = comparability_warnings(runs)
    for problem in problems:
        warnings.warn(problem, TitlecraftWarning, stacklevel=2)
    rows = comparison_rows(runs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    chart = out.with_suffix(".png")
    plot_comparison(rows, chart)
    write_text_atomically(out, render_markdown(rows, runs, problems, chart.name))
    return out, chart, problems
