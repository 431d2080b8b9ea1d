"""The streaming generator: events, stops, cleaning, refills, cancellation, seeds, real tiny models, CLI."""

import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.commands.generate import LiveView, read_abstract
from core.decoding import EagerDecoder
from core.errors import TitlecraftError
from core.fastpath import StaticDecoder
from core.generate import (
    MAX_REFILL_PASSES,
    MIN_SAMPLING_TEMPERATURE,
    REFILL_TEMPERATURE_RISE,
    CandidateEvent,
    SamplingParams,
    TitleGenerator,
    default_decoder,
)
from core.models import load_model
from core.sampling import choose_tokens

ABSTRACT = (
    "We propose a simple method for learning sparse representations of graphs with neural networks. "
    "Experiments on three benchmarks show that the approach improves accuracy and reduces training time."
)


class ScriptedDecoder:
    """Plays back scripted texts instead of sampling: pass k, row r emits the tokens of
    ``passes[k][r]``, then end-of-sequence forever. Every token of row r has log-probability
    ``log_probs[r]``, so scores are known."""

    def __init__(self, tokenizer, passes, log_probs=None):
        self.tokenizer = tokenizer
        self.passes = list(passes)
        self.log_probs = log_probs
        self.rows_asked = []
        self.greedy_rows = []
        self.temperatures = []
        self.steps_taken = 0
        self.released = False

    def sample(self, prompt_ids, rows, max_new_tokens, sampler):
        texts = self.passes[len(self.rows_asked)]
        assert len(texts) == rows
        self.rows_asked.append(rows)
        self.greedy_rows.append(sampler.greedy_rows)
        self.temperatures.append(sampler.temperature)
        end = self.tokenizer.eos_token_id
        sequences = [self.tokenizer(text, add_special_tokens=False)["input_ids"] + [end] for text in texts]
        log_probs = self.log_probs or [-1.0] * rows
        for step in range(max_new_tokens):
            self.steps_taken += 1
            yield [seq[step] if step < len(seq) else end for seq in sequences], list(log_probs)

    def release(self):
        self.released = True


@pytest.fixture(scope="module")
def tiny_llama(tiny_llama_dir):
    return load_model(str(tiny_llama_dir), device="cpu")


@pytest.fixture(scope="module")
def tiny_gptneo(tiny_gptneo_dir):
    return load_model(str(tiny_gptneo_dir), device="cpu")


def scripted(tiny_llama, passes, log_probs=None, **kwargs):
    model, tokenizer, info = tiny_llama
    decoder = ScriptedDecoder(tokenizer, passes, log_probs)
    return TitleGenerator(model, tokenizer, info, decoder=decoder, **kwargs), decoder


def collect(generator, abstract=ABSTRACT, params=None, **kwargs):
    events = []
    result = generator.generate(abstract, params or SamplingParams(n=3, oversample=0), on_event=events.append, **kwargs)
    return events, result


def test_events_stream_each_candidate_until_its_own_stop(tiny_llama):
    texts = ["Sparse graphs\nand more text", "Graph Learning With Sparse Networks Today", "Short one"]
    generator, _ = scripted(tiny_llama, [texts])
    events, result = collect(generator)
    by_index = {index: [e for e in events if e.index == index] for index in range(3)}
    for index, own in by_index.items():
        assert [e.finished for e in own] == [False] * (len(own) - 1) + [True]
        partial = [e.text for e in own[:-1]]
        assert all(later.startswith(earlier) for earlier, later in zip(partial, partial[1:]))
    assert by_index[0][-1].text == "Sparse graphs"  # stopped at its newline
    assert by_index[1][-1].text == texts[1]  # stopped at end-of-sequence
    finish_order = [e.index for e in events if e.finished]
    assert finish_order == [2, 0, 1]  # the shortest candidate finishes first
    assert sorted(c.text for c in result.candidates) == sorted(["Sparse graphs", texts[1], "Short one"])


def test_final_candidates_are_cleaned_scored_and_flagged(tiny_llama):
    texts = [
        'Title: "Sparse Graph Learning Works."',
        "Sparse",
        "A simple method for learning sparse representations of graphs with neural networks",
    ]
    generator, _ = scripted(tiny_llama, [texts], log_probs=[-0.5, -0.3, -0.2])
    events, result = collect(generator)
    assert [c.text for c in result.candidates] == ["Sparse Graph Learning Works", texts[2], "Sparse"]
    assert [c.flags for c in result.candidates] == [[], ["copies_abstract"], ["too_short"]]
    assert [c.rank for c in result.candidates] == [1, 2, 3]
    assert result.candidates[0].score == pytest.approx(-0.5)
    finished = {e.index: e.text for e in events if e.finished}
    assert finished[0] == "Sparse Graph Learning Works"


def test_repeats_are_replaced_by_a_refill_pass_into_the_same_slots(tiny_llama):
    first = ["Sparse Graph Learning", "sparse graph-learning.", "Dense Graph Learning"]
    generator, decoder = scripted(tiny_llama, [first, ["A Third Distinct Title"]])
    events, result = collect(generator, start_index=10)
    assert decoder.rows_asked == [3, 1]
    # Equal scores keep slot order: the refill sits where the repeat was.
    assert [c.text for c in result.candidates] == ["Sparse Graph Learning", "A Third Distinct Title", "Dense Graph Learning"]
    slot_11 = [e.text for e in events if e.index == 11 and e.finished]
    assert slot_11 == ["sparse graph-learning", "A Third Distinct Title"]
    assert {e.index for e in events} == {10, 11, 12}


def test_an_empty_candidate_is_refilled_not_counted(tiny_llama):
    generator, decoder = scripted(tiny_llama, [["Sparse Graph Learning", "", "Dense Graph Learning"], ["A Third Title"]])
    _, result = collect(generator, params=SamplingParams(n=3, oversample=0))
    assert decoder.rows_asked == [3, 1]
    assert [c.text for c in result.candidates] == ["Sparse Graph Learning", "A Third Title", "Dense Graph Learning"]


def test_refills_stop_after_the_bound(tiny_llama):
    passes = [["Same Old Title", "Same Old Title"]] + [["same old title"]] * MAX_REFILL_PASSES
    generator, decoder = scripted(tiny_llama, passes)
    _, result = collect(generator, params=SamplingParams(n=2, oversample=0))
    assert decoder.rows_asked == [2] + [1] * MAX_REFILL_PASSES
    rises = [0.8 + REFILL_TEMPERATURE_RISE * k for k in range(1 + MAX_REFILL_PASSES)]
    assert decoder.temperatures == pytest.approx(rises)  # each refill samples hotter
    assert [c.text for c in result.candidates] == ["Same Old Title"]


def test_only_the_first_pass_decodes_its_first_row_greedily(tiny_llama):
    first = ["Sparse Graph Learning", "sparse graph-learning.", "Dense Graph Learning"]
    generator, decoder = scripted(tiny_llama, [first, ["A Third Distinct Title"]] * 2)
    collect(generator)
    collect(generator, params=SamplingParams(n=3, greedy_first=False, oversample=0))
    assert decoder.greedy_rows == [1, 0, 0, 0]


def test_greedy_first_offers_the_greedy_title(tiny_llama):
    model, tokenizer, info = tiny_llama
    generator = TitleGenerator(model, tokenizer, info)
    greedy = generator.generate(ABSTRACT, SamplingParams(n=1, temperature=0, max_new_tokens=10)).candidates[0]
    sampled = generator.generate(ABSTRACT, SamplingParams(n=3, seed=4, max_new_tokens=10, oversample=0))
    assert greedy.text in [c.text for c in sampled.candidates]
    unpinned = generator.generate(ABSTRACT, SamplingParams(n=3, seed=4, max_new_tokens=10, greedy_first=False, oversample=0))
    assert greedy.text not in [c.text for c in unpinned.candidates]


def test_avoided_titles_count_as_repeats(tiny_llama):
    generator, decoder = scripted(tiny_llama, [["Shown Before Title", "New Title Here"], ["Another New Title"]])
    _, result = collect(generator, params=SamplingParams(n=2, oversample=0), avoid=["shown before title."])
    assert decoder.rows_asked == [2, 1]
    assert decoder.greedy_rows == [0, 0]  # "more titles": the greedy one was shown already
    assert {c.text for c in result.candidates} == {"New Title Here", "Another New Title"}


def test_extra_candidates_stream_nothing_and_the_best_ranked_are_kept(tiny_llama):
    texts = ["Shown Weak Title", "Shown Poor Title", "Unseen Strong Title", "Unseen Weakest Title"]
    generator, decoder = scripted(tiny_llama, [texts], log_probs=[-1.0, -2.0, -0.5, -3.0])
    events, result = collect(generator, params=SamplingParams(n=2, oversample=2), start_index=4)
    assert decoder.rows_asked == [4]
    assert {e.index for e in events} == {4, 5}  # only the two shown slots stream
    assert [c.text for c in result.candidates] == ["Unseen Strong Title", "Shown Weak Title"]
    assert [c.rank for c in result.candidates] == [1, 2]


def test_the_kept_set_trades_a_near_variant_for_a_different_title(tiny_llama):
    texts = ["Graph Networks for Molecules", "Graph Networks for Molecule Design", "Protein Folding With Diffusion"]
    log_probs = [-0.5, -0.6, -0.9]
    generator, _ = scripted(tiny_llama, [texts], log_probs=log_probs)
    _, diverse = collect(generator, params=SamplingParams(n=2, oversample=1))
    assert [c.text for c in diverse.candidates] == ["Graph Networks for Molecules", "Protein Folding With Diffusion"]
    generator, _ = scripted(tiny_llama, [texts], log_probs=log_probs)
    _, best_ranked = collect(generator, params=SamplingParams(n=2, oversample=1, diversity=0))
    assert [c.text for c in best_ranked.candidates] == texts[:2]


def test_a_distinct_extra_candidate_saves_a_refill(tiny_llama):
    texts = ["Sparse Graph Learning", "sparse graph learning", "Dense Graph Learning"]
    generator, decoder = scripted(tiny_llama, [texts])
    events, result = collect(generator, params=SamplingParams(n=2, oversample=1))
    assert decoder.rows_asked == [3]
    assert [c.text for c in result.candidates] == ["Sparse Graph Learning", "Dense Graph Learning"]
    # The shown slot that streamed the repeat ends with the extra title: the rows are N different titles.
    assert [e.text for e in events if e.index == 1 and e.finished] == ["sparse graph learning", "Dense Graph Learning"]


def test_refills_go_to_shown_slots_and_only_for_what_is_missing(tiny_llama):
    first = ["Same Title Words", "same title words", "Same Title Words.", "Other Title Words"]
    generator, decoder = scripted(tiny_llama, [first, ["Third Title Words"]])
    events, result = collect(generator, params=SamplingParams(n=3, oversample=1))
    assert decoder.rows_asked == [4, 1]
    replaced = [(e.index, e.text) for e in events if e.finished][3:]
    assert replaced == [(1, "Other Title Words"), (2, "Third Title Words")]  # the extra, then a refill
    assert sorted(c.text for c in result.candidates) == ["Other Title Words", "Same Title Words", "Third Title Words"]


def test_a_candidate_cut_off_by_the_token_limit_is_flagged_too_long(tiny_llama):
    """A title that had not ended when max_new_tokens ran out ('... provides reliable know') was offered as
    usable, even ranked first; it is too long for the limit, and ranks after the titles that ended."""
    _, tokenizer, _ = tiny_llama
    ended, cut = "Dense Graph Learning", "Sparse Graph Learning For Molecules In Water And Beyond"
    limit = len(tokenizer(ended, add_special_tokens=False)["input_ids"]) + 1  # its end-of-sequence too
    generator, _ = scripted(tiny_llama, [[cut, ended]], log_probs=[-0.1, -2.0])
    _, result = collect(generator, params=SamplingParams(n=2, oversample=0, max_new_tokens=limit))
    assert [c.text for c in result.candidates] == [ended, tokenizer.decode(tokenizer(cut)["input_ids"][:limit])]
    assert [c.flags for c in result.candidates] == [[], ["too_long"]]


def test_greedy_decodes_a_single_row(tiny_llama):
    generator, decoder = scripted(tiny_llama, [["The Only Greedy Title"]])
    _, result = collect(generator, params=SamplingParams(n=5, temperature=0))
    assert decoder.rows_asked == [1]
    assert [c.text for c in result.candidates] == ["The Only Greedy Title"]


def cancelled_at_event(count: int):
    """A cancel flag, the list of events seen, and an event callback that sets the flag at the count-th."""
    cancel = threading.Event()
    seen = []

    def on_event(event):
        seen.append(event)
        if len(seen) == count:
            cancel.set()

    return cancel, seen, on_event


def test_cancel_stops_within_one_step_and_keeps_what_exists(tiny_llama):
    long_text = "Sparse Graph Learning With Many Many More Words Than Needed Here"
    generator, decoder = scripted(tiny_llama, [[long_text, long_text + " Too"]])
    cancel, seen, on_event = cancelled_at_event(4)  # during the second step
    result = generator.generate(ABSTRACT, SamplingParams(n=2, oversample=0), on_event=on_event, cancel=cancel)
    assert result.cancelled
    assert decoder.steps_taken == 2
    assert len(seen) == 4 and not any(e.finished for e in seen)
    assert all(long_text.startswith(c.text) for c in result.candidates)


def test_a_stopped_generation_keeps_the_rows_on_screen_not_unseen_extras(tiny_llama):
    """Escape replaced the rows as far as they got by the unseen extra candidates' beginnings when those
    scored higher: texts never shown took the place of the ones the researcher was reading."""
    texts = ["Sparse Graph Learning For Molecules", "Dense Graph Learning For Proteins", "Unseen Strong Title", "Other Unseen Title"]
    generator, _ = scripted(tiny_llama, [texts], log_probs=[-1.0, -2.0, -0.5, -0.6])
    cancel, seen, on_event = cancelled_at_event(6)  # during the third step
    result = generator.generate(ABSTRACT, SamplingParams(n=2, oversample=2), on_event=on_event, cancel=cancel)
    assert result.cancelled and not any(event.finished for event in seen)
    on_screen = {seen[-2].text, seen[-1].text}
    assert {candidate.text for candidate in result.candidates} == on_screen


def test_empty_abstract_is_an_error(tiny_llama):
    generator, _ = scripted(tiny_llama, [])
    with pytest.raises(TitlecraftError, match="^The abstract is empty: paste an abstract first.$"):
        generator.generate(" \n\t ", SamplingParams())


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("temperature", [0.8, 0.0])
def test_a_model_whose_probabilities_are_nan_is_reported_not_a_crash_or_empty_titles(tiny_llama_dir, fast, temperature):
    """Sampling failed with 'index -1 is out of bounds' (on a GPU a device-side assert) and greedy
    decoding returned no candidates without a word."""
    model, tokenizer, info = load_model(str(tiny_llama_dir), device="cpu")
    with torch.no_grad():
        model.model.norm.weight.fill_(float("nan"))
    decoder = StaticDecoder(model, use_graphs=False) if fast else EagerDecoder(model)
    generator = TitleGenerator(model, tokenizer, info, decoder=decoder)
    with pytest.raises(TitlecraftError, match=r"not numbers \(NaN\).*TITLECRAFT_DTYPE=float32"):
        generator.generate(ABSTRACT, SamplingParams(n=3, seed=1, temperature=temperature, max_new_tokens=5))


def test_out_of_memory_becomes_advice_after_freeing_the_decoder(tiny_llama):
    class OutOfMemoryDecoder(ScriptedDecoder):
        def sample(self, *args):
            raise torch.OutOfMemoryError("CUDA out of memory")
            yield

    model, tokenizer, info = tiny_llama
    decoder = OutOfMemoryDecoder(tokenizer, [])
    generator = TitleGenerator(model, tokenizer, info, decoder=decoder)
    with pytest.raises(TitlecraftError, match="fewer candidates"):
        generator.generate(ABSTRACT, SamplingParams(n=16))
    assert decoder.released


def test_invalid_settings_are_reported_together():
    with pytest.raises(TitlecraftError, match="temperature.*top-p.*diversity"):
        SamplingParams(temperature=-1, top_p=0, diversity=-0.5)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_temperature_or_diversity_that_is_not_a_finite_number_is_refused(value):
    with pytest.raises(TitlecraftError, match="temperature must be a finite number"):
        SamplingParams(temperature=value)
    with pytest.raises(TitlecraftError, match="diversity weight must be a finite number"):
        SamplingParams(diversity=value)


def test_a_temperature_too_small_to_sample_with_is_refused_and_the_smallest_allowed_samples():
    """--temperature 1e-40 divided the logits to infinity and sampling ended in an index error."""
    with pytest.raises(TitlecraftError, match="temperature must be 0 \\(greedy\\) or at least 0.01"):
        SamplingParams(temperature=1e-40)
    logits = torch.tensor([[30.0, 29.995, -5.0]])
    tokens, _ = choose_tokens(logits, torch.tensor([0.99]), MIN_SAMPLING_TEMPERATURE, 0.95)
    assert tokens.tolist() == [1]  # still sampled: the runner-up is half a nat of tempered logit behind


def test_cli_refuses_a_nan_temperature_with_a_message(tiny_llama_dir, tmp_path, capsys):
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    args = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "--file", str(abstract_file)]
    assert main([*args, "--temperature", "nan"]) == 2
    assert "temperature must be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [str(2**64), "-1"])
def test_cli_refuses_a_seed_the_sampler_cannot_take(tiny_llama_dir, tmp_path, capsys, seed):
    """--seed 2**64 ended in torch's 'Overflow when unpacking long long' traceback; a seed from 0 to
    2**63 - 1 is what the store's INTEGER column can record for the app, and what sampling draws."""
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    args = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "--file", str(abstract_file)]
    assert main([*args, "--seed", seed]) == 2
    error = capsys.readouterr().err
    assert "Invalid sampling settings: the seed must be a whole number from 0 to 2**63 - 1" in error
    assert "Traceback" not in error


def test_cli_names_max_new_tokens_when_they_leave_no_room_for_the_abstract(tiny_llama_dir, tmp_path, capsys):
    """--max-new-tokens 5000 was refused as 'a prompt budget of -4488 tokens', naming neither the option
    nor the model's context it has to share."""
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    args = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "--file", str(abstract_file)]
    assert main([*args, "--max-new-tokens", "5000"]) == 2
    error = capsys.readouterr().err
    assert "5000 new tokens leave no room for the abstract in the model's context of 512 tokens" in error
    assert "-4488" not in error


def test_long_abstract_is_truncated_with_a_notice(tiny_llama):
    model, tokenizer, info = tiny_llama
    generator = TitleGenerator(model, tokenizer, info, max_prompt_tokens=200)
    abstract = " ".join([ABSTRACT] * 10)
    abstract_tokens, dropped = generator.count_tokens(abstract)
    assert dropped > 0 and abstract_tokens > dropped
    assert generator.count_tokens(ABSTRACT)[1] == 0
    result = generator.generate(abstract, SamplingParams(n=2, seed=0, max_new_tokens=4))
    assert result.notice and f"last {dropped} of {abstract_tokens} tokens were dropped" in result.notice
    assert generator.generate(ABSTRACT, SamplingParams(n=1, seed=0, max_new_tokens=4)).notice is None


def test_same_seed_same_candidates(tiny_llama):
    model, tokenizer, info = tiny_llama
    generator = TitleGenerator(model, tokenizer, info)
    params = SamplingParams(n=3, seed=7, max_new_tokens=10)
    first, second = generator.generate(ABSTRACT, params), generator.generate(ABSTRACT, params)
    assert [(c.text, c.score) for c in first.candidates] == [(c.text, c.score) for c in second.candidates]
    assert first.params.seed == 7
    other = generator.generate(ABSTRACT, SamplingParams(n=3, seed=8, max_new_tokens=10))
    assert [c.text for c in other.candidates] != [c.text for c in first.candidates]
    unseeded = generator.generate(ABSTRACT, SamplingParams(n=1, max_new_tokens=2))
    assert isinstance(unseeded.params.seed, int)


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gptneo"])
def test_real_tiny_models_stream_through_the_same_path(which, request):
    model, tokenizer, info = request.getfixturevalue(which)
    generator = TitleGenerator(model, tokenizer, info)
    assert isinstance(generator.decoder, EagerDecoder)
    stream = generator.stream(ABSTRACT, SamplingParams(n=3, seed=1, max_new_tokens=8))
    events = list(stream)
    result = generator.last_result
    assert all(isinstance(e, CandidateEvent) and 0 <= e.index < 3 for e in events)
    assert {e.index for e in events if e.finished} == {0, 1, 2}
    assert 1 <= len(result.candidates) <= 3
    assert all(-100 < c.score < 0 for c in result.candidates)
    assert result.device == "cpu" and result.model == info.name and not result.cancelled
    assert 0 < result.first_token_seconds <= result.seconds
    assert 0 < result.new_tokens <= 3 * 8 * (1 + MAX_REFILL_PASSES)


@pytest.mark.parametrize("fast", [False, True])
def test_a_prefilled_prompt_is_not_run_again_by_the_generation(tiny_llama, fast, model_call_lengths):
    model, tokenizer, info = tiny_llama
    decoder = StaticDecoder(model, use_graphs=False) if fast else EagerDecoder(model)
    generator = TitleGenerator(model, tokenizer, info, decoder=decoder)
    params = SamplingParams(n=2, seed=3, max_new_tokens=6)
    cold = generator.generate(ABSTRACT, params)
    assert generator.prefill("Another abstract about sparse graphs.", params.max_new_tokens)
    with model_call_lengths(model) as prompt_runs:
        assert generator.prefill(ABSTRACT, params.max_new_tokens)
        runs_for_prefill = len(prompt_runs)
        warm = generator.generate(ABSTRACT, params)
    assert runs_for_prefill == 1 and prompt_runs[0] > 1
    assert all(length == 1 for length in prompt_runs[1:])  # the generation only decoded
    assert [(c.text, c.score) for c in warm.candidates] == [(c.text, c.score) for c in cold.candidates]
    assert not generator.prefill("   ")


def test_bf16_on_cpu_streams_reproducible_candidates_and_reuses_a_prefill(tiny_llama_dir, monkeypatch):
    """The dtype a CPU with AMX gets by default: same seed, same candidates; a prefill changes nothing."""
    monkeypatch.setenv("TITLECRAFT_DTYPE", "bfloat16")
    model, tokenizer, info = load_model(str(tiny_llama_dir), device="cpu")
    generator = TitleGenerator(model, tokenizer, info)
    params = SamplingParams(n=3, seed=5, max_new_tokens=8)
    events = list(generator.stream(ABSTRACT, params))
    first = generator.last_result
    assert info.dtype == "bfloat16" and events and len(first.candidates) == 3
    assert all(torch.isfinite(torch.tensor(c.score)) for c in first.candidates)
    assert generator.prefill(ABSTRACT, params.max_new_tokens)
    again = generator.generate(ABSTRACT, params)
    assert [(c.text, c.score) for c in again.candidates] == [(c.text, c.score) for c in first.candidates]


def test_default_decoder_on_cpu_is_the_eager_one(tiny_llama, monkeypatch):
    assert isinstance(default_decoder(tiny_llama[0]), EagerDecoder)
    monkeypatch.setenv("TITLECRAFT_COMPILE_STEP", "1")  # compiling is for the GPU fast path only
    assert isinstance(default_decoder(tiny_llama[0]), EagerDecoder)


def test_a_mistyped_compile_step_setting_is_named_before_any_generation(tiny_llama, monkeypatch):
    model, tokenizer, info = tiny_llama
    monkeypatch.setenv("TITLECRAFT_COMPILE_STEP", "yes")
    with pytest.raises(TitlecraftError, match=r"\$TITLECRAFT_COMPILE_STEP must be 0 or 1, not 'yes'"):
        TitleGenerator(model, tokenizer, info)


def test_cli_json(tiny_llama_dir, tmp_path, capsys):
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    args = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "-n", "2", "--seed", "3"]
    assert main([*args, "--max-new-tokens", "6", "--file", str(abstract_file), "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert set(output) == {"candidates", "model", "device", "seconds", "first_token_seconds", "notice"}
    assert 1 <= len(output["candidates"]) <= 2
    assert set(output["candidates"][0]) == {"text", "score", "flags"}
    assert output["device"] == "cpu" and output["notice"] is None


def test_cli_plain_output_and_one_line_errors(tiny_llama_dir, tmp_path, capsys, monkeypatch):
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    args = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "-n", "2", "--max-new-tokens", "6"]
    assert main([*args, "--file", str(abstract_file)]) == 0
    out = capsys.readouterr().out
    assert "[1] " in out and "[2] " in out and " 1. " in out and "\x1b[" not in out
    abstract_file.write_text("   ")
    assert main([*args, "--file", str(abstract_file)]) == 2
    assert capsys.readouterr().err == "error: The abstract is empty: paste an abstract first.\n"


def test_cli_summary_counts_one_candidate_in_the_singular():
    """`generate -n 1` summed up as '1 candidates from ...'."""
    from core.commands.generate import print_ranked
    from core.generate import Candidate, GenerationResult, SamplingParams

    result = GenerationResult(
        candidates=[Candidate(text="Strided Sparse Attention", score=-0.5, rank=1)], notice=None, seconds=2.0,
        first_token_seconds=0.5, new_tokens=6, tokens_per_second=3.0, cancelled=False, device="cpu",
        model="tiny", params=SamplingParams(n=1),
    )
    out = io.StringIO()
    print_ranked(result, out)
    assert out.getvalue().startswith("\n1 candidate from tiny on cpu in 2.00 s")


def test_cli_says_greedy_decoding_gives_one_candidate_when_more_were_asked(tiny_llama_dir, tmp_path, capsys):
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    args = ["generate", "--model", str(tiny_llama_dir), "--device", "cpu", "--max-new-tokens", "6", "--json"]
    assert main([*args, "--temperature", "0", "-n", "3", "--file", str(abstract_file)]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["candidates"]) <= 1
    assert "note: --temperature 0 decodes greedily, which gives one candidate, not 3" in captured.err


def test_cli_output_piped_into_a_reader_that_stops_early_ends_quietly(tiny_llama_dir, tmp_path):
    """`titlecraft generate | head -1`: the closed pipe is not an error to report."""
    abstract_file = tmp_path / "abstract.txt"
    abstract_file.write_text(ABSTRACT)
    command = [sys.executable, "-m", "core.cli", "generate", "--model", str(tiny_llama_dir), "--device", "cpu",
               "-n", "2", "--max-new-tokens", "6", "--file", str(abstract_file)]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line is written
    _, err = process.communicate(timeout=300)
    assert process.returncode == 141
    assert b"error" not in err and b"Traceback" not in err


def test_cli_refuses_binary_input_before_loading_a_model(tmp_path, capsys, monkeypatch):
    binary = tmp_path / "figure.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xd0\xff")
    args = ["generate", "--model", str(tmp_path / "no-such-model"), "--device", "cpu"]
    assert main([*args, "--file", str(binary)]) == 2
    assert capsys.readouterr().err == (
        f"error: {binary} is not UTF-8 text (byte 0 cannot be decoded): give the abstract as plain text\n"
    )
    stdin = io.TextIOWrapper(io.BytesIO(b"Graphs \xd0\xff"))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(args) == 2
    assert "standard input is not UTF-8 text (byte 7" in capsys.readouterr().err


def test_a_utf8_byte_order_mark_is_not_part_of_the_abstract(tmp_path, capsys, monkeypatch):
    saved_by_notepad = tmp_path / "abstract.txt"
    saved_by_notepad.write_bytes(b"\xef\xbb\xbfGraphs\r\nare sparse.\r\n")
    assert read_abstract(saved_by_notepad) == "Graphs\r\nare sparse.\r\n"
    saved_by_notepad.write_bytes(b"\xef\xbb\xbfGraphs \xd0\xff")
    with pytest.raises(TitlecraftError, match="byte 10 cannot be decoded"):
        read_abstract(saved_by_notepad)
    # A mark and nothing else (or only whitespace) is an empty abstract, refused before a model loads.
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xef\xbb\xbf \r\n")))
    assert main(["generate", "--model", str(tmp_path / "no-such-model"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == "error: The abstract is empty: paste an abstract first.\n"


def test_a_budget_too_small_for_any_abstract_is_a_user_error(tiny_llama):
    model, tokenizer, info = tiny_llama
    with pytest.raises(TitlecraftError, match="no room for the abstract"):
        TitleGenerator(model, tokenizer, info, max_prompt_tokens=10).count_tokens(ABSTRACT)


class Terminal(io.StringIO):
    """Output that reports itself a terminal, where the live view redraws in place."""

    def isatty(self):
        return True


def test_live_view_redraws_in_place_on_a_terminal():
    out = Terminal()
    view = LiveView(out)
    view(CandidateEvent(0, "Sparse", False))
    view(CandidateEvent(1, "Dense \x1b[31mred", True))
    view(CandidateEvent(0, "Sparse Graphs", True))
    screen = out.getvalue()
    assert screen.count("\x1b[1F") == 1 and screen.count("\x1b[2F") == 1  # moved up over the drawn lines
    assert screen.endswith("\x1b[2K✓  1. Sparse Graphs\n\x1b[2K✓  2. Dense \ufffd[31mred\n")


def test_live_view_never_moves_up_past_the_top_of_a_short_terminal(monkeypatch):
    """-n 30 in a 24-line terminal moved the cursor up 30 lines, which stops at the top row: every
    redraw then scrolled a partial copy of the list into the terminal's history."""
    monkeypatch.setenv("LINES", "6")
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    view = LiveView(out)
    for index in range(8):
        view(CandidateEvent(index, f"Title {index + 1}", True))
    ups = [int(count) for count in re.findall(r"\x1b\[(\d+)F", out.getvalue())]
    assert ups and max(ups) <= 5
    last_draw = out.getvalue().split(f"\x1b[{ups[-1]}F")[-1]
    assert last_draw.count("\n") == 5 and "… and 4 more" in last_draw


def test_live_view_cuts_wide_characters_by_the_columns_they_take(monkeypatch):
    """A CJK title cut by its character count still took two rows in a narrow terminal, and the redraw,
    moving up one row per title, left a garbled copy behind."""
    monkeypatch.setenv("LINES", "24")
    monkeypatch.setenv("COLUMNS", "20")
    out = Terminal()
    view = LiveView(out)
    view(CandidateEvent(0, "稀疏注意力用于长文档的高效建模", True))
    view(CandidateEvent(1, "Cafe\u0301 Graphs", True))
    lines = out.getvalue().split("\x1b[2K")[-2:]
    assert lines[0] == "✓  1. 稀疏注意力用…\n"  # 6 + 6 x 2 + 1 = 19 columns of the 19 drawn; a 7th takes 21
    assert lines[1] == "✓  2. Cafe\u0301 Graphs\n"  # the combining accent takes no column: 17 columns, not cut


def test_a_character_cut_by_max_new_tokens_is_dropped_not_shown_as_a_replacement_mark(tiny_llama):
    """Byte-level tokenizers spell a CJK character with several tokens; a candidate stopped between them
    must not end in U+FFFD, nor may a streamed event show one while the character is still arriving."""
    _, tokenizer, _ = tiny_llama
    text = "Sparse Graph Learning for \u56fe\u795e\u7ecf\u7f51\u7edc"
    tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    generator, _ = scripted(tiny_llama, [[text]])
    events, result = collect(generator, params=SamplingParams(n=1, oversample=0, max_new_tokens=tokens - 1))
    assert [c.text for c in result.candidates] == ["Sparse Graph Learning for \u56fe\u795e\u7ecf\u7f51"]
    assert not any("\ufffd" in event.text for event in events)


def test_a_callback_that_raises_does_not_leave_the_generator_locked(tiny_llama):
    """A front end's worker keeps the error it caught, and with it the abandoned stream: that stream must
    not still hold the pass lock, or every later generation waits forever."""
    generator, _ = scripted(tiny_llama, [["Sparse Graph Learning"], ["Dense Graph Learning"]])

    def closing_window(event):
        raise RuntimeError("the app is closing")

    kept_errors = []
    try:
        generator.generate(ABSTRACT, SamplingParams(n=1, oversample=0), on_event=closing_window)
    except RuntimeError as error:
        kept_errors.append(error)
    finished = []
    later = threading.Thread(
        target=lambda: finished.append(generator.generate(ABSTRACT, SamplingParams(n=1, oversample=0))), daemon=True
    )
    later.start()
    later.join(timeout=10)
    assert kept_errors and [c.text for c in finished[0].candidates] == ["Dense Graph Learning"]


def test_a_label_on_its_own_line_does_not_end_the_candidate(tiny_llama):
    """Instruct models often answer "Title:" or "**Abstract:**" and the title on the next line: stopping at
    that first newline left an empty candidate (sampled again) instead of the title."""
    first = ["Title:\nSparse Graph Learning Works\nA second line", "**Abstract:**\n\nDense Graph Methods Revisited"]
    generator, decoder = scripted(tiny_llama, [first, ["Refill One", "Refill Two"]])
    events, result = collect(generator, params=SamplingParams(n=2, oversample=0))
    assert decoder.rows_asked == [2]
    assert [c.text for c in result.candidates] == ["Sparse Graph Learning Works", "Dense Graph Methods Revisited"]
    assert {e.index: e.text for e in events if e.finished} == {0: "Sparse Graph Learning Works", 1: "Dense Graph Methods Revisited"}
