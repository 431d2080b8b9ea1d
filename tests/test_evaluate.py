"""Evaluation: hand-checked metrics, the seeded selection, resumable samples and the written report."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_pairs import shared_pairs

from core.candidates import candidate_flags
from core.cli import main
from core.errors import TitlecraftError, TitlecraftWarning
from core.evaluate import (
    EvalConfig,
    check_resumable,
    default_mode,
    evaluate,
    model_identity,
    read_samples,
    render_report,
    run_description,
    select_rows,
)
from core.generate import TitleGenerator
from core.metrics import (
    best_of_n,
    corpus_bleu,
    distinct_n,
    length_ratio,
    ranked_top,
    rouge,
    score_samples,
    sentence_bleu,
)
from core.models import load_model
from core.retrieve import Retriever


def sample(reference: str, drafts: list[tuple[str, float]], abstract: str = "An unrelated abstract.") -> dict:
    candidates = [{"text": text, "score": score, "flags": candidate_flags(text, abstract)} for text, score in drafts]
    return {"id": reference, "abstract": abstract, "reference": reference, "candidates": candidates, "seconds": 2.0}


def test_rouge_exact_disjoint_and_a_hand_checked_partial_overlap():
    assert rouge("Graph Networks for Molecules", "graph networks for molecules") == pytest.approx(
        {"rouge1": 100, "rouge2": 100, "rougeL": 100}
    )
    assert rouge("Speech in noisy rooms", "graph networks for molecules") == {"rouge1": 0, "rouge2": 0, "rougeL": 0}
    # Shared: neural, networks, for (P 3/4, R 3/5); bigrams "neural networks", "networks for" (P 2/3, R 2/4).
    partial = rouge("neural networks for proteins", "graph neural networks for molecules")
    assert partial == pytest.approx({"rouge1": 200 / 3, "rouge2": 400 / 7, "rougeL": 200 / 3})
    # Stemming: plural and singular count as the same word.
    assert rouge("graph network", "graph networks")["rouge1"] == pytest.approx(100)


def test_bleu_distinct_and_length_ratio():
    title = "Sparse attention for long documents in legal retrieval"
    assert sentence_bleu(title, title) == pytest.approx(100)
    assert sentence_bleu("completely other words here", title) == 0
    assert corpus_bleu([title, "speech"], [title, "molecules"]) < 100
    assert corpus_bleu([title], [title]) == pytest.approx(100)
    assert distinct_n(["a b c", "a b d"]) == pytest.approx(75)  # bigrams ab, bc, ab, bd: 3 unique of 4
    assert distinct_n(["one", "two"]) is None
    assert length_ratio("three word title", "a six word reference title here") == 0.5


def test_length_ratio_counts_chinese_and_japanese_words_as_the_length_flags_do():
    """Split at spaces, a Chinese title is one word whatever its length: every ratio between two was 1."""
    assert length_ratio("基于图神经网络的稀疏表示学习方法", "稀疏图表示学习") == 2.0  # 16 and 7 characters: 8 and 4 words
    assert length_ratio("大規模言語モデルによる論文タイトル生成", "論文タイトル生成") == pytest.approx(10 / 4)  # 19 and 8
    assert length_ratio("GNN による稀疏表示", "Sparse graph representations") == pytest.approx(5 / 3)  # GNN + 7 characters


CANDIDATES = [
    ("Graph Networks for Molecules", -0.1),
    ("Neural Networks for Protein Design", -0.5),
    ("Neural Networks for Protein Folding", -0.6),
    ("Neural Networks for Protein Structure", -0.7),
]


def test_a_candidate_cut_off_by_the_token_limit_is_judged_as_the_generator_flagged_it():
    """Metrics re-flag stored candidates from their text, which does not show that one ran out of new
    tokens: the top-1 scored would be a title the app ranks last."""
    record = sample("Neural networks for protein design", CANDIDATES)
    record["candidates"][0]["cut_off"] = True
    assert ranked_top(record, "score").text == "Neural Networks for Protein Design"
    assert score_samples([record], n=4, rankings=("score",))["usable_rate"] == 75


def test_score_and_consensus_rankings_are_computed_from_the_same_candidates():
    record = sample("Neural networks for protein design", CANDIDATES)
    assert ranked_top(record, "score").text == "Graph Networks for Molecules"
    # The three protein titles agree with each other; the tie among them is broken by score.
    assert ranked_top(record, "consensus").text == "Neural Networks for Protein Design"
    assert best_of_n(record) == "Neural Networks for Protein Design"
    metrics = score_samples([record], n=4, rankings=("score", "consensus"))
    assert metrics["top1.rougeL"] == metrics["score.top1.rougeL"] == pytest.approx(400 / 9)  # LCS 2: P 2/4, R 2/5
    assert metrics["consensus.top1.rougeL"] == pytest.approx(100)
    assert metrics["best_of_n.rougeL"] == pytest.approx(100)
    assert metrics["distinct_candidates"] == 4 and metrics["full_set_rate"] == 100


def test_the_report_names_best_of_n_rouge_1_as_the_rouge_l_picks_not_the_highest():
    """Best of N picks one candidate per abstract by ROUGE-L; its ROUGE-1 was labelled "Best of N ROUGE-1",
    although another candidate can have a higher ROUGE-1 (here 100 against the pick's 75)."""
    record = sample("Graph Neural Networks for Molecules", [
        ("Graph Neural Networks", -0.1),  # ROUGE-1 and ROUGE-L 75
        ("Molecules for Networks Neural Graph", -0.2),  # every word (ROUGE-1 100), in reverse (ROUGE-L 20)
    ])
    record.update(top1="Graph Neural Networks", examples=[], model_name="tiny", device="cpu", threads=1)
    metrics = score_samples([record], 2, ["score"])
    assert metrics["best_of_n.rougeL"] == pytest.approx(75) and metrics["best_of_n.rouge1"] == pytest.approx(75)
    config = EvalConfig(model="tiny", data="pairs.parquet", n=2)
    report = render_report({**metrics, **run_description(config, [record])}, [record])
    assert "| Best of N ROUGE-L pick: its ROUGE-1 | 75.00 |" in report and "| Best of N ROUGE-1 |" not in report


def test_the_reports_top_candidates_are_the_ones_its_top_1_metrics_scored():
    """With consensus ranking the generator ranks its whole pool (N plus the extra samples) and keeps N;
    the metrics re-rank the N kept, so the report's "Top candidate" column, which showed the generator's
    first, showed another title than the one scored in 8 of 20 validation abstracts."""
    record = sample("Neural Networks for Protein Design", CANDIDATES)
    record.update(examples=[], model_name="tiny", device="cpu", threads=1)
    record["top1"] = "Neural Networks for Protein Structure"  # the generator's first, by consensus over its pool
    metrics = score_samples([record], 4, ["consensus"])
    scored = ranked_top(record, "consensus").text
    assert scored != record["top1"]
    assert metrics["top1.rougeL"] == pytest.approx(rouge(scored, record["reference"])["rougeL"])
    config = EvalConfig(model="tiny", data="pairs.parquet", n=4, ranking="consensus")
    report = render_report({**metrics, **run_description(config, [record])}, [record])
    assert f"| Neural Networks for Protein Design | {scored} |" in report


def test_usable_and_copy_rates_count_flagged_candidates():
    abstract = "We train graph networks for molecules at scale. It works."
    copied = sample("Molecular graphs", [("Train Graph Networks for Molecules at Scale", -0.1), ("Molecular Graph Learning", -0.9)], abstract)
    short = sample("Short titles", [("Short", -0.2), ("Short Titles Considered Harmful", -0.4)])
    short["candidates"][1]["flags"] = ["too_long"]  # a stale stored flag: samples are judged by today's rules
    metrics = score_samples([copied, short], n=2, rankings=("score",))
    assert metrics["usable_rate"] == 50
    assert metrics["copy_rate"] == 25
    # Flagged candidates rank after usable ones, so both top candidates are usable.
    assert metrics["top1.usable_rate"] == 100
    assert "score.top1.rougeL" not in metrics and metrics["seconds_per_abstract"] == 2.0


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "test.parquet"
    shared_pairs(12).to_parquet(path)
    return path


def test_selection_is_seeded_and_a_smaller_limit_is_a_prefix(pairs_file):
    five, ten = select_rows(pairs_file, 5, seed=0), select_rows(pairs_file, 10, seed=0)
    assert five == ten[:5]
    assert [row["id"] for row in select_rows(pairs_file, 5, seed=1)] != [row["id"] for row in five]
    assert {"id", "abstract", "reference"} <= set(five[0]) and five[0]["id"].count(".") == 1


def test_a_torn_last_sample_line_is_dropped_and_a_corrupt_middle_one_refused(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "cand')
    assert list(read_samples(path)) == ["a", "b"]
    assert path.read_text() == '{"id": "a"}\n{"id": "b"}\n'
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(TitlecraftError, match="line 2"):
        read_samples(path)


def _open_and_die_mid_write(self, mode="r", *args, **kwargs):
    handle = _real_path_open(self, mode, *args, **kwargs)
    if "w" in mode:
        def write_half(text):
            type(handle).write(handle, text[: len(text) // 2])
            handle.flush()
            raise KeyboardInterrupt

        handle.write = write_half
    return handle


_real_path_open = Path.open


@contextmanager
def killed_mid_write():
    """Within the block every file opened for writing gets half of what is written to it, then the
    process is 'killed' (a KeyboardInterrupt that must end the block)."""
    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(Path, "open", _open_and_die_mid_write)
        yield


def test_a_kill_while_dropping_a_torn_sample_line_loses_no_sample(tmp_path):
    """The torn line was dropped by rewriting samples.jsonl in place: killed then, every sample was lost."""
    path = tmp_path / "samples.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "cand')
    with killed_mid_write():
        read_samples(path)
    assert list(read_samples(path)) == ["a", "b"]
    assert [p.name for p in tmp_path.iterdir()] == ["samples.jsonl"]  # nothing left beside it


def test_a_kill_while_recording_the_run_settings_leaves_the_run_resumable(pairs_file, tmp_path):
    """run.json was rewritten in place on every run: killed then, it was torn and the resume a traceback."""
    config = EvalConfig(model="tiny", data=str(pairs_file), limit=1, n=1, max_new_tokens=2)
    (tmp_path / "samples.jsonl").write_text('{"id": "a"}\n')
    check_resumable(tmp_path, config)
    with killed_mid_write():
        check_resumable(tmp_path, config)
    check_resumable(tmp_path, config)
    with pytest.raises(TitlecraftError, match="different settings \\(n\\)"):
        check_resumable(tmp_path, replace(config, n=2))


def test_samples_holding_unicode_line_separators_are_read_back_whole(tmp_path):
    path = tmp_path / "samples.jsonl"
    lines = [json.dumps({"id": name, "abstract": f"first part{separator}second part"}, ensure_ascii=False)
             for name, separator in (("a", "\u2028"), ("b", "\x85"), ("c", "\u2029"))]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    samples = read_samples(path)
    assert list(samples) == ["a", "b", "c"] and samples["c"]["abstract"] == "first part\u2029second part"
    assert path.read_text(encoding="utf-8").count("\n") == 3  # nothing was dropped or rewritten


class CountingGenerator(TitleGenerator):
    calls = 0

    def generate(self, *args, **kwargs):
        CountingGenerator.calls += 1
        return super().generate(*args, **kwargs)


@pytest.fixture(scope="module")
def tiny_generator(tiny_llama_dir):
    return CountingGenerator(*load_model(str(tiny_llama_dir), device="cpu"))


def test_evaluation_writes_samples_metrics_and_report_and_resumes(tiny_generator, pairs_file, tmp_path):
    config = EvalConfig(model="tiny", data=str(pairs_file), limit=2, n=2, max_new_tokens=4, ranking="both")
    metrics = evaluate(config, tmp_path, generator=tiny_generator, progress=False)
    for key in ("top1.rouge1", "top1.rouge2", "top1.rougeL", "top1.bleu", "best_of_n.rougeL", "usable_rate",
                "copy_rate", "distinct2", "distinct_candidates", "length_ratio", "seconds_per_abstract",
                "score.top1.rougeL", "consensus.top1.rougeL"):
        assert 0 <= metrics[key] <= 100, key
    assert {k: metrics[k] for k in ("model", "mode", "limit", "n", "seed", "k")} == {
        "model": "tiny", "mode": "zero-shot", "limit": 2, "n": 2, "seed": 0, "k": 0}
    assert metrics["dtype"] == "float32"  # the dtype the model ran in, which changes the candidates
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and {"abstract", "reference", "candidates", "top1", "top1_consensus"} <= set(samples[0])
    assert {"text", "score", "flags"} <= set(samples[0]["candidates"][0])
    report = (tmp_path / "report.md").read_text()
    assert "| Top-1 ROUGE-L |" in report and "| score | consensus |" in report and ", float32 (torch threads" in report

    CountingGenerator.calls = 0
    grown = evaluate(replace(config, limit=3), tmp_path, generator=tiny_generator, progress=False)
    assert CountingGenerator.calls == 1 and grown["abstracts"] == 3
    again = evaluate(config, tmp_path, generator=tiny_generator, progress=False)
    assert CountingGenerator.calls == 1
    assert {k: v for k, v in again.items() if k != "created"} == {k: v for k, v in metrics.items() if k != "created"}
    with pytest.raises(TitlecraftError, match="different settings \\(n\\)"):
        evaluate(replace(config, n=3), tmp_path, generator=tiny_generator, progress=False)
    with pytest.raises(TitlecraftError, match="different settings \\(generation_ranking\\)"):
        evaluate(replace(config, ranking="consensus"), tmp_path, generator=tiny_generator, progress=False)
    evaluate(replace(config, ranking="score"), tmp_path, generator=tiny_generator, progress=False)  # same candidates


def test_a_resumed_runs_progress_bar_averages_every_abstract_scored_so_far(tiny_generator, pairs_file, tmp_path, capsys):
    """Resumed, the bar's running top-1 ROUGE-L averaged the newly generated abstracts only, so it
    showed another number than the uninterrupted run's bar and the metrics it ends in."""
    config = EvalConfig(model="tiny", data=str(pairs_file), limit=1, n=1, temperature=0, max_new_tokens=2)
    evaluate(config, tmp_path, generator=tiny_generator, progress=False)
    path = tmp_path / "samples.jsonl"
    [first] = read_samples(path).values()
    # As if the model had found the real title.
    first["candidates"] = [{"text": first["reference"], "score": -0.1, "flags": [], "rank": 1, "cut_off": False}]
    path.write_text(json.dumps(first) + "\n", encoding="utf-8")
    metrics = evaluate(replace(config, limit=2), tmp_path, generator=tiny_generator)
    assert metrics["top1.rougeL"] >= 50
    assert f"top-1 ROUGE-L {metrics['top1.rougeL']:.1f}," in capsys.readouterr().err


def test_a_resume_over_a_data_file_whose_rows_changed_is_refused(tiny_generator, pairs_file, tmp_path):
    """Resumed after the data was prepared again, a run kept its old samples under the same ids and
    scored them against the old titles while new abstracts met the new ones, without a word."""
    data = tmp_path / "test.parquet"
    shutil.copy(pairs_file, data)
    config = EvalConfig(model="tiny", data=str(data), limit=2, n=1, temperature=0, max_new_tokens=2)
    out = tmp_path / "report"
    evaluate(config, out, generator=tiny_generator, progress=False)
    before = (out / "samples.jsonl").read_bytes()
    frame = pd.read_parquet(data)
    changed_id = select_rows(data, 1, seed=0)[0]["id"]
    frame.loc[frame["arxiv_id"] == changed_id, "title"] = "A Title Corrected Since"
    frame.to_parquet(data)
    with pytest.raises(TitlecraftError, match=f"has changed since .*: 1 of its abstracts or titles differ \\(first: {changed_id}\\)"):
        evaluate(replace(config, limit=3), out, generator=tiny_generator, progress=False)
    assert (out / "samples.jsonl").read_bytes() == before


def test_a_greedy_report_says_one_candidate_was_decoded_and_none_sampled(tiny_generator, pairs_file, tmp_path):
    """Greedy decoding draws no extras, but the report said "3 extra candidates sampled and 1 kept"."""
    config = EvalConfig(model="tiny", data=str(pairs_file), limit=1, n=1, temperature=0, max_new_tokens=2)
    evaluate(config, tmp_path, generator=tiny_generator, progress=False)
    report = (tmp_path / "report.md").read_text()
    assert "greedy decoding (temperature 0), max new tokens 2: one candidate per abstract, none sampled." in report
    assert "extra candidates sampled" not in report and "top-p" not in report


def test_a_checkpoint_is_identified_by_its_full_path_and_its_metadata(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "titlecraft.json").write_text('{"steps": 10}')
    monkeypatch.chdir(tmp_path)
    first = model_identity("run")
    assert first == model_identity("./run") == model_identity(str(folder)) and first.startswith(str(folder) + "@")
    (folder / "titlecraft.json").write_text('{"steps": 20}')  # retrained in the same folder: another model
    assert model_identity("run") != first
    assert model_identity("EleutherAI/gpt-neo-125m") == "EleutherAI/gpt-neo-125m"
    assert model_identity("embedded").startswith("embedded@")


def test_few_shot_prompts_get_retrieved_examples_but_never_their_own_title(tiny_generator, tmp_path):
    rows = shared_pairs(8)
    rows["abstract"] = rows["abstract"].str.slice(0, 240)  # short enough for examples to fit the tiny context
    data = tmp_path / "data.parquet"
    rows.to_parquet(data)
    retriever = Retriever.from_file(data)  # the pool holds the evaluated pairs themselves
    config = EvalConfig(model="tiny", data=str(data), mode="few-shot", limit=4, n=2, k=2, max_new_tokens=3,
                        retrieval_pool=str(data))
    metrics = evaluate(config, tmp_path / "run", generator=tiny_generator, retriever=retriever, progress=False)
    assert metrics["k"] == 2 and metrics["examples_used"] >= 1
    for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["examples"] and record["reference"] not in record["examples"]


def test_bad_settings_are_user_errors():
    with pytest.raises(TitlecraftError, match="unknown mode"):
        EvalConfig(model="m", data="d", mode="two-shot")
    with pytest.raises(TitlecraftError, match="--limit"):
        EvalConfig(model="m", data="d", limit=0)
    with pytest.raises(TitlecraftError, match="--seed must be a whole number from 0"):  # numpy's traceback
        EvalConfig(model="m", data="d", seed=-1)
    # Greedy decoding draws one candidate: the report claimed "5 candidates for each" and a best of 5.
    with pytest.raises(TitlecraftError, match="--temperature 0 decodes one candidate per abstract: use -n 1"):
        EvalConfig(model="m", data="d", n=5, temperature=0)
    assert EvalConfig(model="m", data="d", n=1, temperature=0).n == 1


@pytest.mark.parametrize("option", [["-n", "0"], ["--top-p", "2"], ["--temperature", "nan"]])
def test_eval_refuses_bad_sampling_settings_before_creating_the_report_folder(pairs_file, tmp_path, capsys, option):
    out = tmp_path / "reports" / "X"
    code = main(["eval", "--data", str(pairs_file), "--limit", "1", *option, "--out", str(out)])
    assert code == 2
    assert "Invalid sampling settings" in capsys.readouterr().err
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_eval_refuses_a_thread_count_below_one(pairs_file, tmp_path, capsys, threads):
    """--threads -1 ended in torch's RuntimeError traceback, and --threads 0 was ignored without a word."""
    out = tmp_path / "reports" / "X"
    code = main(["eval", "--data", str(pairs_file), "--limit", "1", "--threads", threads, "--out", str(out)])
    assert code == 2
    assert capsys.readouterr().err == f"error: --threads must be at least 1, not {threads}\n"
    assert not (tmp_path / "reports").exists()


def test_eval_labels_fine_tuned_models_finetuned_unless_told_otherwise(tiny_llama_dir, tmp_path):
    """`eval --model embedded` (the shipped adapter) wrote a report headed 'embedded (zero-shot)', which
    compare then set beside the documented runs of it as another mode."""
    plain = tmp_path / "plain"
    plain.mkdir()
    assert default_mode("embedded") == "finetuned"
    assert default_mode(str(tiny_llama_dir)) == "finetuned"  # a checkpoint with its titlecraft.json
    assert default_mode("embedded-base") == "zero-shot"
    assert default_mode("EleutherAI/gpt-neo-125m") == "zero-shot"
    assert default_mode(str(plain)) == "zero-shot"


def test_a_report_labelled_zero_shot_before_the_finetuned_default_resumes_without_mode(tiny_llama_dir, pairs_file, tmp_path, capsys):
    """Folders evaluated before --mode defaulted to finetuned recorded zero-shot: the same command,
    re-run to resume or re-score them, was refused as a run with different settings (mode)."""
    out = tmp_path / "report"
    args = ["eval", "--model", str(tiny_llama_dir), "--data", str(pairs_file), "-n", "1", "--temperature", "0",
            "--max-new-tokens", "2", "--device", "cpu", "--out", str(out)]
    assert main([*args, "--limit", "1", "--mode", "zero-shot"]) == 0
    assert main([*args, "--limit", "2"]) == 0, capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["mode"] == "zero-shot"
    assert default_mode(str(tiny_llama_dir), tmp_path / "elsewhere") == "finetuned"


def test_eval_command_end_to_end(tiny_llama_dir, pairs_file, tmp_path, capsys):
    out = tmp_path / "reports" / "tiny"
    code = main(["eval", "--model", str(tiny_llama_dir), "--data", str(pairs_file), "--limit", "2", "-n", "2",
                 "--max-new-tokens", "3", "--ranking", "consensus", "--device", "cpu", "--out", str(out)])
    assert code == 0
    assert {path.name for path in out.iterdir()} == {"samples.jsonl", "metrics.json", "report.md", "run.json"}
    assert json.loads((out / "metrics.json").read_text())["rankings"] == ["consensus"]
    assert (out / "report.md").read_text().startswith(f"# Evaluation: {tiny_llama_dir} (finetuned)\n")
    assert "2 abstracts: top-1 ROUGE-1/2/L" in capsys.readouterr().out


def test_a_report_folder_that_cannot_be_written_is_a_user_error(tiny_generator, pairs_file, tmp_path):
    config = EvalConfig(model="tiny", data=str(pairs_file), limit=1, n=1, max_new_tokens=2)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    with pytest.raises(TitlecraftError, match="--out .*notes.txt is a file; give a folder"):
        evaluate(config, a_file, generator=tiny_generator, progress=False)
    with pytest.raises(TitlecraftError, match="cannot write .*notes.txt/run: .*notes.txt is a file, not a folder"):
        evaluate(config, a_file / "run", generator=tiny_generator, progress=False)
    assert a_file.read_text() == "kept"


def test_selection_reads_a_filtered_parquet(tmp_path):
    frame = shared_pairs(12)
    frame[frame.index >= 4].to_parquet(tmp_path / "filtered.parquet")
    rows = select_rows(tmp_path / "filtered.parquet", 8, seed=0)
    assert sorted(row["reference"] for row in rows) == sorted(frame["title"].iloc[4:])


def test_a_run_that_failed_before_its_first_sample_does_not_claim_the_report_folder(tiny_generator, tmp_path):
    rows = shared_pairs(4)
    rows["abstract"] = rows["abstract"].str.slice(0, 240)
    data = tmp_path / "data.parquet"
    rows.to_parquet(data)
    config = EvalConfig(model="tiny", data=str(data), mode="few-shot", limit=2, n=2, k=2, max_new_tokens=3,
                        retrieval_pool=str(tmp_path / "typo.parquet"))
    with pytest.raises(TitlecraftError, match="no such retrieval pool"):
        evaluate(config, tmp_path / "run", generator=tiny_generator, progress=False)
    assert not (tmp_path / "run" / "samples.jsonl").exists()
    # The corrected command writes into the same folder: it holds no samples of the failed run to mix in.
    fixed = evaluate(replace(config, retrieval_pool=str(data)), tmp_path / "run", generator=tiny_generator,
                     progress=False)
    assert fixed["abstracts"] == 2 and fixed["retrieval_pool"] == str(data)
    # Once samples exist, other settings are still refused.
    with pytest.raises(TitlecraftError, match="different settings \\(n\\)"):
        evaluate(replace(config, retrieval_pool=str(data), n=3), tmp_path / "run", generator=tiny_generator,
                 progress=False)


def test_rows_without_a_title_or_abstract_are_left_out_with_a_warning(tmp_path):
    data = tmp_path / "pairs.csv"
    data.write_text("title,abstract\nGraph Networks,We study graphs.\n,An abstract without its title.\n"
                    "A Title Alone,\n   ,Blank title.\nSpeech Models,We study speech.\n")
    with pytest.warns(TitlecraftWarning, match="3 of 5 rows .* have no title or no abstract"):
        rows = select_rows(data, 10, seed=0)
    assert sorted(row["reference"] for row in rows) == ["Graph Networks", "Speech Models"]
    assert all(row["id"].startswith("sha256:") for row in rows)
    data.write_text("title,abstract\n,Only untitled abstracts.\n")
    with pytest.warns(TitlecraftWarning), pytest.raises(TitlecraftError, match="no row with both a title and an abstract"):
        select_rows(data, 10, seed=0)


def test_a_file_without_missing_rows_keeps_its_selection(pairs_file):
    ids = [row["id"] for row in select_rows(pairs_file, 12, seed=0)]
    frame = shared_pairs(12)
    assert ids == [frame["arxiv_id"][i] for i in np.random.default_rng(0).permutation(12)]


def test_a_row_repeating_an_earlier_rows_id_is_left_out_not_scored_with_its_candidates(tiny_generator, tmp_path):
    """Samples are kept by id, so a second row with the same arXiv id (or the same abstract, lacking one)
    was scored with the first row's reference replaced by its own, and counted twice."""
    data = tmp_path / "pairs.csv"
    data.write_text("arxiv_id,title,abstract\n2601.00001,First Title,We study graphs.\n"
                    "2601.00001,Second Title,We study graphs again.\n,Speech Models,We study speech.\n"
                    ",Speech Models Again,We study speech.\n2601.00003,Vision Models,We study vision.\n")
    with pytest.warns(TitlecraftWarning, match="2 of 5 rows .* repeat the arXiv id or abstract of an earlier row"):
        rows = select_rows(data, 10, seed=0)
    assert sorted(row["reference"] for row in rows) == ["First Title", "Speech Models", "Vision Models"]
    config = EvalConfig(model="tiny", data=str(data), limit=10, n=2, max_new_tokens=3)
    with pytest.warns(TitlecraftWarning):
        metrics = evaluate(config, tmp_path / "run", generator=tiny_generator, progress=False)
    samples = read_samples(tmp_path / "run" / "samples.jsonl")
    assert metrics["abstracts"] == 3 and len(samples) == 3
    assert samples["2601.00001"]["reference"] == "First Title"


def test_a_resumed_run_in_another_dtype_is_refused_not_mixed_into_the_report(tiny_generator, tiny_llama_dir, pairs_file,
                                                                            tmp_path):
    """The dtype changes the candidates, and the report names the last sample's: a run resumed in
    bfloat16 after float32 samples reported bfloat16 for samples half of which were not."""
    import torch

    config = EvalConfig(model="tiny", data=str(pairs_file), limit=1, n=2, max_new_tokens=3)
    evaluate(config, tmp_path, generator=tiny_generator, progress=False)
    bf16 = TitleGenerator(*load_model(str(tiny_llama_dir), device="cpu", dtype=torch.bfloat16))
    with pytest.raises(TitlecraftError, match="float32.*bfloat16.*TITLECRAFT_DTYPE=float32"):
        evaluate(replace(config, limit=2), tmp_path, generator=bf16, progress=False)
    assert len(read_samples(tmp_path / "samples.jsonl")) == 1
    assert evaluate(replace(config, limit=2), tmp_path, generator=tiny_generator, progress=False)["abstracts"] == 2
