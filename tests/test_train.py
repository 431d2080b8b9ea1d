"""Fine-tuning on tiny random models and real arXiv pairs: masking, padding, learning, resume, DDP, LoRA."""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from core.cli import main
from core.cli import run as cli_run
from core.errors import TitlecraftError
from core.generate import SamplingParams, TitleGenerator
from core.models import ADAPTER_WEIGHTS, file_sha256, load_model
from core.prompts import COMPLETION, build_prompt, completion_prompt, completion_target, normalise_whitespace
from core.distributed import Ranks
import core.train as core_train
from core.train import Progress, TitleLoss, TrainConfig, _replan_for_time_budget, decoder_layers, train
from core.train_data import IGNORE_INDEX, ExampleEncoder, collate, length_grouped_batches, read_pairs

REPO = Path(__file__).resolve().parents[1]
SHARED_PAIRS = REPO.parent / "shared" / "data" / "arxiv-ai" / "pairs.parquet"


@pytest.fixture(scope="module")
def real_pairs() -> pd.DataFrame:
    import pyarrow.parquet as pq

    frame = pq.read_table(SHARED_PAIRS, columns=["abstract", "title", "date"]).slice(150_000, 96).to_pandas()
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def split_files(tmp_path_factory, real_pairs) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pairs")
    real_pairs.iloc[:80].to_parquet(folder / "train.parquet")
    real_pairs.iloc[80:].to_parquet(folder / "validation.parquet")
    return folder / "train.parquet", folder / "validation.parquet"


def _tokenizer(checkpoint: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(checkpoint)


@pytest.mark.parametrize("fixture,template", [("tiny_gptneo_dir", "completion"), ("tiny_llama_dir", "chat")])
def test_encoder_matches_generation_prompt_and_masks_the_prompt(request, real_pairs, fixture, template):
    tokenizer = _tokenizer(request.getfixturevalue(fixture))
    encoder = ExampleEncoder(tokenizer, template, max_abstract_tokens=10_000)
    pairs = list(zip(real_pairs.abstract[:8], real_pairs.title[:8], strict=True))
    for (abstract, title), example in zip(pairs, encoder.encode(pairs), strict=True):
        prompt = build_prompt(tokenizer, template, abstract, max_prompt_tokens=100_000)
        assert example.input_ids[: example.prompt_length] == prompt.input_ids
        assert example.labels[: example.prompt_length] == [IGNORE_INDEX] * example.prompt_length
        assert example.labels[-1] == tokenizer.eos_token_id
        learned = tokenizer.decode(example.input_ids[example.prompt_length : -1])
        assert learned == (completion_target(title) if template == COMPLETION else title)


def test_encoder_cuts_long_abstracts_but_never_the_title(tiny_gptneo_dir, real_pairs):
    tokenizer = _tokenizer(tiny_gptneo_dir)
    short = ExampleEncoder(tokenizer, COMPLETION, max_abstract_tokens=20)
    example = short.encode([(real_pairs.abstract[0], real_pairs.title[0])])[0]
    title_ids = tokenizer(completion_target(real_pairs.title[0]), add_special_tokens=False)["input_ids"]
    assert example.input_ids[example.prompt_length :] == title_ids + [tokenizer.eos_token_id]
    abstract_ids = tokenizer(" " + normalise_whitespace(real_pairs.abstract[0]), add_special_tokens=False)["input_ids"]
    kept = tokenizer.decode(abstract_ids[:20]).strip()
    assert example.input_ids[: example.prompt_length] == tokenizer(completion_prompt(kept), add_special_tokens=False)["input_ids"]


# Llama 3's (and Qwen's) pre-tokenizer: punctuation takes the line breaks after it into one token (".\n").
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _tokenizer_of_another_family(family: str):
    """A tiny tokenizer built as Llama 3's (byte-level, its split pattern) or as sentencepiece's (a "▁"
    opening every text and word) are, or one that does not split at spaces (its merges run across them),
    trained on the fixtures' corpus and a few abstract endings."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from tiny_tokenizer import SPECIAL_TOKENS, TOKENIZER_CORPUS

    if family == "llama3":
        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        backend.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    elif family == "sentencepiece":
        backend = Tokenizer(models.BPE(byte_fallback=True))
        backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
        backend.decoder = decoders.Metaspace(prepend_scheme="first")
        alphabet = []
    else:
        backend = Tokenizer(models.BPE(byte_fallback=True))
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        alphabet = []
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet)
    backend.train_from_iterator([*TOKENIZER_CORPUS, "the results.\nTitle: A Study\n"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.mark.parametrize("family", ["llama3", "sentencepiece"])
def test_encoder_tokenises_prompt_and_title_as_generation_reads_them_in_other_tokenizer_families(real_pairs, family):
    """Tokenised in pieces, prompts differed from generation's at the seams (Llama 3's ".\n" split in two,
    sentencepiece's "▁" before the line break) and a sentencepiece title opened with a stray "▁"."""
    tokenizer = _tokenizer_of_another_family(family)
    encoder = ExampleEncoder(tokenizer, COMPLETION, max_abstract_tokens=10_000)
    pairs = list(zip(real_pairs.abstract[:8], real_pairs.title[:8], strict=True))
    for (abstract, title), example in zip(pairs, encoder.encode(pairs), strict=True):
        prompt = build_prompt(tokenizer, COMPLETION, abstract, max_prompt_tokens=100_000)
        assert example.input_ids[: example.prompt_length] == prompt.input_ids
        titled = tokenizer(prompt.text + completion_target(normalise_whitespace(title)), add_special_tokens=False)
        assert example.input_ids == titled["input_ids"] + [tokenizer.eos_token_id]


def test_a_title_whose_first_token_would_merge_with_the_prompts_end_is_learned_after_the_prompt(real_pairs):
    """Tokenised together, the prompt's last token (':') and the title's opening space merge into one
    (':▁'), which generation, continuing the prompt's own tokens, never reads: the prompt stays
    generation's, all of it masked, and the title's own tokens and the end marker are learned."""
    tokenizer = _tokenizer_of_another_family("merging")
    abstract, title = real_pairs.abstract[0], normalise_whitespace(real_pairs.title[0])
    prompt = build_prompt(tokenizer, COMPLETION, abstract, max_prompt_tokens=100_000)
    titled = tokenizer(prompt.text + completion_target(title), add_special_tokens=False)["input_ids"]
    assert titled[: len(prompt.input_ids)] != prompt.input_ids  # the seam merges
    example = ExampleEncoder(tokenizer, COMPLETION, max_abstract_tokens=10_000).encode([(abstract, title)])[0]
    assert example.input_ids[: example.prompt_length] == prompt.input_ids
    assert example.labels == [IGNORE_INDEX] * len(prompt.input_ids) + example.input_ids[example.prompt_length :]
    title_ids = tokenizer(completion_target(title), add_special_tokens=False)["input_ids"]
    assert example.input_ids[example.prompt_length :] == title_ids + [tokenizer.eos_token_id]


def test_collate_pads_to_the_longest_in_the_batch_and_points_at_title_tokens(tiny_gptneo_dir, real_pairs):
    tokenizer = _tokenizer(tiny_gptneo_dir)
    encoder = ExampleEncoder(tokenizer, COMPLETION, 384)
    examples = encoder.encode(list(zip(real_pairs.abstract[:4], real_pairs.title[:4], strict=True)))
    batch = collate(examples, tokenizer.pad_token_id)
    width = max(len(e.input_ids) for e in examples)
    assert batch["input_ids"].shape == (4, width)
    assert batch["attention_mask"].sum() == sum(len(e.input_ids) for e in examples)
    flat = batch["input_ids"].reshape(-1)
    # each gathered position is followed by exactly the title token it must predict
    assert torch.equal(flat[batch["target_positions"] + 1], batch["target_ids"])
    assert len(batch["target_ids"]) == sum(e.target_tokens for e in examples)
    rounded = collate(examples, tokenizer.pad_token_id, multiple=32)
    assert rounded["input_ids"].shape[1] == -(-width // 32) * 32
    assert torch.equal(rounded["target_ids"], batch["target_ids"])
    assert torch.equal(rounded["input_ids"].reshape(-1)[rounded["target_positions"] + 1], rounded["target_ids"])


def test_length_grouping_wastes_little_padding_and_covers_every_example():
    lengths = [(i * 7919) % 300 + 20 for i in range(2048)]
    batches = length_grouped_batches(lengths, batch_size=16, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(2048))

    def padding(groups):
        return 1 - sum(lengths[i] for b in groups for i in b) / sum(max(lengths[i] for i in b) * len(b) for b in groups)

    random_batches = [list(range(i, i + 16)) for i in range(0, 2048, 16)]
    assert padding(batches) < 0.05 < padding(random_batches)
    assert batches != length_grouped_batches(lengths, batch_size=16, seed=0, epoch=1)


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gptneo_dir"])
def test_title_loss_goes_down_on_a_repeated_batch(request, real_pairs, fixture):
    model, tokenizer, info = load_model(str(request.getfixturevalue(fixture)))
    model.train()
    encoder = ExampleEncoder(tokenizer, info.template, 64)
    batch = collate(encoder.encode(list(zip(real_pairs.abstract[:4], real_pairs.title[:4], strict=True))), tokenizer.pad_token_id)
    loss_model = TitleLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss_sum, count = loss_model(**batch)
        (loss_sum / count).backward()
        optimizer.step()
        losses.append(float(loss_sum.detach() / count))
    assert losses[-1] < 0.7 * losses[0]


def _assert_title_loss_is_the_models_loss(model, tokenizer, template: str, real_pairs) -> None:
    encoder = ExampleEncoder(tokenizer, template, 64)
    examples = encoder.encode(list(zip(real_pairs.abstract[:3], real_pairs.title[:3], strict=True)))
    batch = collate(examples, tokenizer.pad_token_id)
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    for row, example in enumerate(examples):
        labels[row, : len(example.input_ids)] = torch.tensor(example.labels)
    with torch.no_grad():
        reference = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
        loss_sum, count = TitleLoss(model)(**batch)
    assert torch.allclose(loss_sum / count, reference, atol=1e-5)


def test_title_loss_equals_the_model_loss_restricted_to_title_tokens(tiny_llama_dir, real_pairs):
    model, tokenizer, info = load_model(str(tiny_llama_dir))
    _assert_title_loss_is_the_models_loss(model, tokenizer, info.template, real_pairs)


def _model_transforming_its_logits(family: str, tokenizer):
    """A tiny random model of a family whose forward changes the output layer's logits: Granite divides
    them by ``logits_scaling``, Gemma 2 soft-caps them (a cap this low makes the change large)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM, GraniteConfig, GraniteForCausalLM

    shape = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, initializer_range=0.2, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    if family == "granite":
        return GraniteForCausalLM(GraniteConfig(**shape, logits_scaling=8.0)).eval()
    return Gemma2ForCausalLM(Gemma2Config(**shape, head_dim=8, final_logit_softcapping=0.5)).eval()


@pytest.mark.parametrize("family", ["granite", "gemma2"])
def test_title_loss_is_the_models_own_where_its_forward_transforms_the_output_layers_logits(real_pairs, family):
    """The title loss ran the output layer alone, skipping the model's own scaling or soft-capping of its
    logits, and so trained those models on other logits than they generate from."""
    from tiny_tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer(chat=False)
    _assert_title_loss_is_the_models_loss(_model_transforming_its_logits(family, tokenizer), tokenizer, COMPLETION, real_pairs)


def _config(tmp_path, base, train_file, val_file, **overrides) -> TrainConfig:
    settings = dict(
        train=str(train_file), val=str(val_file), out=str(tmp_path / "run"), base=str(base), batch_size=8,
        lr=3e-3, eval_every=3, seed=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_a_loss_that_is_not_a_number_stops_training_with_advice_not_a_nan_best_checkpoint(tmp_path, tiny_gptneo_dir, split_files):
    """A run whose loss went NaN trained on to its end, and its first NaN validation loss stayed "best"
    (NaN never compares lower), so the published checkpoint was the damaged one."""
    from transformers import GPTNeoForCausalLM

    damaged = tmp_path / "damaged"
    model = GPTNeoForCausalLM.from_pretrained(tiny_gptneo_dir)
    with torch.no_grad():
        model.transformer.ln_f.weight.fill_(float("nan"))
    model.save_pretrained(damaged)
    for name in os.listdir(tiny_gptneo_dir):
        if not (damaged / name).exists():
            (damaged / name).write_bytes((tiny_gptneo_dir / name).read_bytes())
    config = _config(tmp_path, damaged, *split_files, limit=48, lr=None)
    with pytest.raises(TitlecraftError, match=r"Training diverged at step 3: the loss is not a number \(train nan, validation nan\).*lower --lr"):
        train(config)
    assert not (tmp_path / "run" / "best").exists() and not (tmp_path / "run" / "titlecraft.json").exists()


def test_training_reads_a_parquet_file_storing_text_as_bytes_as_text(tmp_path):
    """Parquet written without the UTF-8 annotation (Hive, Impala, older Spark) holds bytes: training
    read its pairs as "b'...'" and learned to answer every abstract with a Python bytes literal."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "binary.parquet"
    pq.write_table(pa.table({"abstract": pa.array([b"An abstract about graphs."]), "title": pa.array(["Über Graphs".encode()])}), path)
    assert read_pairs(path) == [("An abstract about graphs.", "Über Graphs")]
    pq.write_table(pa.table({"abstract": pa.array([b"x"]), "title": pa.array([b"A \xff B"])}), path)
    with pytest.raises(TitlecraftError, match="its column 'title' holds bytes that are not UTF-8 text"):
        read_pairs(path)


def test_training_writes_a_checkpoint_that_generates(tmp_path, tiny_gptneo_dir, split_files):
    out = train(_config(tmp_path, tiny_gptneo_dir, *split_files, lr=None))
    meta = json.loads((out / "titlecraft.json").read_text())
    # The options as given, and what they resolved to (a full fine-tune's default rate, on this CPU)
    assert (meta["config"]["lr"], meta["config"]["device"]) == (None, "auto")
    assert meta["trained_with"] == {"lr": 1e-4, "device": "cpu", "precision": "fp32"}
    assert meta["template"] == "completion" and meta["base"] == str(tiny_gptneo_dir)
    assert meta["steps"] == 10 and meta["best_val_loss"] == min(h["val_loss"] for h in meta["history"])
    assert [d["sha256"] for d in meta["data"]][0] and (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["use_cache"] is True  # plain generate stays fast
    assert not (out / "last").exists()
    model, tokenizer, info = load_model(str(out))
    result = TitleGenerator(model, tokenizer, info).generate(
        "We study sparse graph representations learned by neural networks.", SamplingParams(n=2, max_new_tokens=6, seed=0)
    )
    assert len(result.candidates) == 2
    with pytest.raises(TitlecraftError, match="already holds a finished run"):
        train(_config(tmp_path, tiny_gptneo_dir, *split_files, lr=None))


def test_the_published_checkpoint_is_the_best_validation_step_not_the_last(tmp_path, tiny_llama_dir, split_files):
    """Eight pairs trained on for 40 epochs overfit: the validation loss falls, then rises. The run's
    result must be the weights of the lowest validation loss, not the last step's."""
    out = train(_config(tmp_path, tiny_llama_dir, *split_files, limit=8, epochs=40, lr=1e-2, eval_every=4,
                        max_abstract_tokens=64, device="cpu"))
    meta = json.loads((out / "titlecraft.json").read_text())
    losses = [record["val_loss"] for record in meta["history"]]
    assert meta["best_val_loss"] == min(losses) < losses[-1]  # the run did overfit
    assert meta["best_step"] == meta["steps"] < meta["planned_steps"]
    model, tokenizer, _ = load_model(str(out), device="cpu")
    examples = ExampleEncoder(tokenizer, COMPLETION, 64).encode(read_pairs(split_files[1]))
    published = core_train.validation_loss(TitleLoss(model), examples, tokenizer.pad_token_id, "cpu", 8, False)
    assert published == pytest.approx(meta["best_val_loss"], abs=1e-3)


def test_a_run_without_val_says_that_nothing_validates_it_and_the_last_step_is_published(tmp_path, tiny_gptneo_dir, split_files, capsys):
    """Without --val no validation loss was measured and the last step was published as the result,
    without a word, where an empty --val is refused for the same outcome."""
    out = train(_config(tmp_path, tiny_gptneo_dir, *split_files, val=None, limit=16, device="cpu"))
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["best_val_loss"] is None and meta["steps"] == meta["planned_steps"]
    assert "no --val: no validation loss is measured and the last step is published" in capsys.readouterr().out


def recorded_learning_rates(monkeypatch) -> list[float]:
    """The learning rate of every optimizer step the test then runs, in order (filled as they run)."""
    rates: list[float] = []
    adamw_step = torch.optim.AdamW.step

    def recording_step(optimizer, *args, **kwargs):
        rates.append(optimizer.param_groups[0]["lr"])
        return adamw_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    return rates


def test_the_history_records_the_learning_rate_each_step_trained_with(tmp_path, tiny_gptneo_dir, split_files, monkeypatch):
    """Each record's lr was the next step's (read after the scheduler moved on): the last record showed the
    schedule's floor, a rate no step used."""
    used = recorded_learning_rates(monkeypatch)
    out = train(_config(tmp_path, tiny_gptneo_dir, *split_files, eval_every=1, limit=32))
    history = json.loads((out / "titlecraft.json").read_text())["history"]
    assert [record["lr"] for record in history] == used and len(used) == 4


class Interrupted(Exception):
    pass


def test_ctrl_c_says_which_step_the_same_command_resumes_from(tmp_path, tiny_llama_dir, split_files, capsys):
    def ctrl_c_after_the_first_save(record):
        if record["step"] == 3:
            raise KeyboardInterrupt

    config = _config(tmp_path, tiny_llama_dir, *split_files)
    with pytest.raises(KeyboardInterrupt, match=f"step 3 is saved in {tmp_path / 'run' / 'last'}; the same command resumes"):
        train(config, on_progress=ctrl_c_after_the_first_save)
    nothing_saved = core_train._interrupted_advice(tmp_path / "fresh" / "last")  # ctrl+c before the first save
    assert nothing_saved == "no step was saved yet; the same command starts the run again"

    def interrupted_command(args):
        raise KeyboardInterrupt("step 3 is saved in run/last; the same command resumes from there")

    parser = argparse.ArgumentParser()
    capsys.readouterr()  # the training's progress bars
    assert cli_run(argparse.Namespace(func=interrupted_command), parser) == 130
    assert capsys.readouterr().err == "interrupted: step 3 is saved in run/last; the same command resumes from there\n"


def test_an_interrupted_run_resumes_and_ends_where_an_uninterrupted_one_does(tmp_path, tiny_llama_dir, split_files):
    straight = train(_config(tmp_path / "a", tiny_llama_dir, *split_files))

    def stop_after_first_save(record):
        if record["step"] == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(_config(tmp_path / "b", tiny_llama_dir, *split_files), on_progress=stop_after_first_save)
    saved = json.loads((tmp_path / "b" / "run" / "last" / "progress.json").read_text())
    assert saved["step"] == 3
    with pytest.raises(TitlecraftError, match="holds an interrupted run with other settings \\(lr\\)"):
        train(_config(tmp_path / "b", tiny_llama_dir, *split_files, lr=1e-3))
    other_data = tmp_path / "other.parquet"
    pd.read_parquet(split_files[0]).iloc[::-1].to_parquet(other_data)
    with pytest.raises(TitlecraftError, match="other settings \\(data files\\)"):
        train(_config(tmp_path / "b", tiny_llama_dir, other_data, split_files[1]))
    assert json.loads((tmp_path / "b" / "run" / "last" / "progress.json").read_text()) == saved
    last = tmp_path / "b" / "run" / "last"
    os.replace(last, last.with_name(".last.old"))  # killed between the two renames of a state save
    steps_seen = []
    resumed = train(_config(tmp_path / "b", tiny_llama_dir, *split_files), on_progress=lambda r: steps_seen.append(r["step"]))
    assert steps_seen == [6, 9, 10]
    first, second = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.allclose(first[name], second[name], atol=1e-6) for name in first)
    # The record of the examples trained on covers the steps before the interruption too.
    seen = [json.loads((run / "ranks" / "rank0.json").read_text())["examples"] for run in (straight, resumed)]
    assert seen[1] == seen[0] and sorted(seen[0]) == list(range(80))


def test_a_run_is_resumed_only_by_as_many_processes_as_saved_it(tmp_path, tiny_gptneo_dir, split_files):
    """A step takes a batch per data-parallel process, so resumed by another number of processes a run took
    other batches from the saved step on (batches trained again, others never) and stopped at the saved
    plan's step count."""
    config = _config(tmp_path, tiny_gptneo_dir, *split_files, limit=16, eval_every=1)

    def stop_after_first_save(record):
        raise Interrupted

    with pytest.raises(Interrupted):
        train(config, on_progress=stop_after_first_save)
    state, provenance = Path(config.out) / "last", core_train._provenance(config)
    core_train._require_same_run(state, core_train._run_identity(config, provenance, 1), Path(config.out))
    with pytest.raises(TitlecraftError, match="other settings \\(processes: 1, not 2\\)"):
        core_train._require_same_run(state, core_train._run_identity(config, provenance, 2), Path(config.out))


def test_a_run_killed_while_publishing_or_cleaning_up_finishes_on_a_re_run(tmp_path, tiny_gptneo_dir, split_files, monkeypatch):
    config = _config(tmp_path, tiny_gptneo_dir, *split_files, epochs=0.3)
    out, real_replace, real_rmtree = Path(config.out), os.replace, core_train.shutil.rmtree

    published = []

    def replace_then_die(source, target):  # dies after moving the first file of best/ into the run folder
        if Path(source).parent == out / "best" and Path(target).parent == out:
            if published:
                raise Interrupted
            published.append(source)
        return real_replace(source, target)

    monkeypatch.setattr(core_train.os, "replace", replace_then_die)
    with pytest.raises(Interrupted):
        train(config)
    monkeypatch.setattr(core_train.os, "replace", real_replace)
    assert (out / "best" / "titlecraft.json").is_file()  # the metadata moves last
    train(config)
    assert (out / "titlecraft.json").is_file() and not (out / "best").exists() and not (out / "last").exists()
    load_model(str(out))

    def rmtree_then_die(path, *args, **kwargs):  # dies while the finished run's state is deleted
        if Path(path).name == ".last.finished" and Path(path).exists():
            raise Interrupted
        return real_rmtree(path, *args, **kwargs)

    second = _config(tmp_path / "second", tiny_gptneo_dir, *split_files, epochs=0.3)
    monkeypatch.setattr(core_train.shutil, "rmtree", rmtree_then_die)
    with pytest.raises(Interrupted):
        train(second)
    monkeypatch.setattr(core_train.shutil, "rmtree", real_rmtree)
    with pytest.raises(TitlecraftError, match="already holds a finished run"):  # not trained again from scratch
        train(second)


def test_every_example_once_per_epoch_with_gradient_accumulation_and_a_relative_base(
    tmp_path, tiny_llama_dir, split_files, monkeypatch
):
    monkeypatch.chdir(tiny_llama_dir.parent)
    config = _config(tmp_path, tiny_llama_dir.name, *split_files, grad_accum=3, eval_every=100, lora=True, lora_r=4)
    out = train(config)  # 80 examples in 10 batches of 8: 4 steps, the last with one micro-batch
    seen = json.loads((out / "ranks" / "rank0.json").read_text())["examples"]
    assert sorted(seen) == list(range(80))
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["steps"] == 4 and meta["base"] == str(tiny_llama_dir.resolve())  # loads from any folder


def test_lora_checkpoint_holds_only_the_adapter_and_merges_at_load(tmp_path, tiny_llama_dir, split_files):
    out = train(_config(tmp_path, tiny_llama_dir, *split_files, lora=True, lora_r=4, lora_alpha=8, lr=1e-2))
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == [ADAPTER_WEIGHTS, "titlecraft.json"]
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["lora"]["r"] == 4 and "q_proj" in meta["lora"]["target_modules"]
    merged, tokenizer, info = load_model(str(out))
    base, _, _ = load_model(str(tiny_llama_dir))
    ids = torch.tensor([tokenizer("Abstract: graphs", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert not torch.allclose(merged(ids).logits, base(ids).logits)
    assert info.adapter == str(out) and info.template == "completion"


def test_extra_curated_pairs_are_mixed_in_with_their_weight(tmp_path, tiny_gptneo_dir, split_files):
    extra = tmp_path / "curated.jsonl"
    rows = [
        {"prompt": completion_prompt("A curated abstract about graph networks."), "completion": completion_target("Curated Title One")},
        {"prompt": completion_prompt("Another curated abstract about planning."), "completion": completion_target("Curated Title Two")},
    ]
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_pairs(extra) == [
        ("A curated abstract about graph networks.", "Curated Title One"),
        ("Another curated abstract about planning.", "Curated Title Two"),
    ]
    out = train(_config(tmp_path, tiny_gptneo_dir, *split_files, extra=[str(extra)], extra_weight=3.0))
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["examples"] == 82 and meta["data"][1]["path"] == str(extra)
    tokenizer = _tokenizer(tiny_gptneo_dir)
    examples = ExampleEncoder(tokenizer, COMPLETION, 384).encode(read_pairs(extra), weight=3.0)
    assert set(collate(examples, tokenizer.pad_token_id)["target_weights"].tolist()) == {3.0}


def test_impossible_settings_are_refused_before_anything_loads(capsys):
    with pytest.raises(TitlecraftError, match="--batch-size must be at least 1; --grad-accum must be at least 1"):
        TrainConfig(train="t.parquet", out="o", batch_size=0, grad_accum=0)
    with pytest.raises(TitlecraftError, match="--epochs must be more than 0; --lr must not be negative"):
        TrainConfig(train="t.parquet", out="o", epochs=0, lr=-1e-4)
    # LoRA scales its update by alpha / r: 0 trained an adapter that changes nothing, a negative one reversed it
    for alpha in (0, -4):
        with pytest.raises(TitlecraftError, match="--lora-alpha must be more than 0"):
            TrainConfig(train="t.parquet", out="o", lora=True, lora_alpha=alpha)
    assert main(["train", "--train", "missing.parquet", "--out", "o", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "error: Invalid training settings: --batch-size must be at least 1.\n"


@pytest.mark.parametrize("seed", [str(2**64), "-1"])
def test_a_seed_torch_cannot_take_is_refused_before_anything_loads(tmp_path, capsys, seed):
    """--seed 2**64 ended in torch's 'Overflow when unpacking long long' traceback after the data was read."""
    out = tmp_path / "run"
    assert main(["train", "--train", "missing.parquet", "--out", str(out), "--seed", seed]) == 2
    assert capsys.readouterr().err == (
        "error: Invalid training settings: --seed must be a whole number from 0 to 2**63 - 1.\n"
    )
    assert not out.exists()


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("option", ["--epochs", "--lr", "--extra-weight", "--max-minutes"])
def test_non_finite_settings_are_refused_before_anything_loads(option, value, tmp_path, capsys):
    # inf epochs overflowed the step count after the model had loaded; an inf learning rate or extra
    # weight trained to a NaN loss and saved that checkpoint with exit status 0.
    out = tmp_path / "run"
    assert main(["train", "--train", "missing.parquet", "--out", str(out), f"{option}={value}"]) == 2
    assert capsys.readouterr().err == f"error: Invalid training settings: {option} must be a finite number.\n"
    assert not out.exists()


def test_bad_training_files_are_clear_errors(tmp_path):
    with pytest.raises(TitlecraftError, match="does not exist"):
        read_pairs(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "no template here", "completion": " x"}\n')
    with pytest.raises(TitlecraftError, match="bad.jsonl:1"):
        read_pairs(bad)


@pytest.mark.parametrize("name", ["train.PARQUET", "train.pq", "train.data"])
def test_a_parquet_split_is_read_whatever_its_suffix(tmp_path, name):
    """A parquet file not named *.parquet was read as an SFT export and refused as 'not UTF-8 text'
    (import takes .pq files, and a file copied from Windows may be spelled .PARQUET)."""
    path = tmp_path / name
    pd.DataFrame({"abstract": ["We study graphs."], "title": ["Graph Networks"]}).to_parquet(path)
    assert read_pairs(path) == [("We study graphs.", "Graph Networks")]


def test_a_bad_data_file_fails_before_the_model_loads(tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the data was read")

    monkeypatch.setattr("core.train.load_model", no_loading)
    pd.DataFrame({"abstract": [], "title": []}).to_parquet(tmp_path / "empty.parquet")
    pd.DataFrame({"abstract": ["We study graphs."], "title": ["On Graphs"]}).to_parquet(tmp_path / "one.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    out = str(tmp_path / "run")
    with pytest.raises(TitlecraftError, match="no training examples"):
        train(TrainConfig(train=str(tmp_path / "empty.parquet"), out=out))
    with pytest.raises(TitlecraftError, match="bad.parquet is not a parquet file"):
        train(TrainConfig(train=str(tmp_path / "one.parquet"), val=str(tmp_path / "bad.parquet"), out=out))
    with pytest.raises(TitlecraftError, match="missing.jsonl does not exist"):
        train(TrainConfig(train=str(tmp_path / "one.parquet"), extra=[str(tmp_path / "missing.jsonl")], out=out))


def test_time_budget_shrinks_the_schedule(monkeypatch):
    progress = Progress(step=50, planned_steps=10_000)
    clock = iter([100.0])
    monkeypatch.setattr("core.train.time.perf_counter", lambda: next(clock))
    # 40 steps took 40 s (1 s/step); 100 s have passed of a 3-minute budget -> about 71 more steps
    _replan_for_time_budget(progress, TrainConfig(train="x", out="y", max_minutes=3), 0.0, 60.0, 40, Ranks(), "cpu")
    assert progress.planned_steps == 50 + int(0.95 * 3 * 60 - 100)


def slow_steps(monkeypatch, seconds: float) -> None:
    """Make every forward pass of the models train loads take ``seconds`` longer: a CPU step of a larger
    model, which the time-budget tests need (the tiny one is too quick to budget)."""
    import time

    real_load_model = core_train.load_model

    def slow_model(*args, **kwargs):
        model, tokenizer, info = real_load_model(*args, **kwargs)
        model.get_decoder().register_forward_pre_hook(lambda *_: time.sleep(seconds))
        return model, tokenizer, info

    monkeypatch.setattr(core_train, "load_model", slow_model)


def test_a_time_budget_is_kept_when_the_run_has_few_slow_steps(tmp_path, tiny_llama_dir, split_files, monkeypatch):
    """The budget was planned only at step 50, from steps 10-50: a run of fewer steps (a CPU run of a few
    hundred pairs) never shrank, and one whose 50 steps outlasted the budget overran it."""
    slow_steps(monkeypatch, seconds=0.05)
    out = tmp_path / "run"
    # 80 steps of at least 0.05 s: about 4 s, in a budget of 1.2 s
    train(TrainConfig(train=str(split_files[0]), out=str(out), base=str(tiny_llama_dir), batch_size=1,
                      eval_every=1000, max_minutes=0.02, device="cpu"))
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["steps"] == meta["planned_steps"] <= 30


def test_a_schedule_shrunk_to_a_time_budget_warms_up_for_its_share_of_the_new_plan(
    tmp_path, tiny_llama_dir, split_files, monkeypatch
):
    """The warm-up stayed 3% of the steps planned before --max-minutes shrank the plan: a run of 2,400
    planned steps cut to 30 warmed up for 72 steps, so it never reached the peak rate nor decayed from it."""
    slow_steps(monkeypatch, seconds=0.1)
    rates = recorded_learning_rates(monkeypatch)
    out = tmp_path / "run"
    train(TrainConfig(train=str(split_files[0]), out=str(out), base=str(tiny_llama_dir), batch_size=1, epochs=30,
                      lr=1e-3, eval_every=1000, max_minutes=0.1, device="cpu"))
    assert json.loads((out / "titlecraft.json").read_text())["planned_steps"] == len(rates) < 60
    assert rates[-1] < rates[-2] and rates[-1] < 0.12e-3  # decayed to about the floor, a tenth of the peak


def test_a_time_budget_is_kept_when_the_first_steps_already_outlast_it(tmp_path, tiny_llama_dir, split_files, monkeypatch, capsys):
    """The clock started only after min(10, steps // 5) untimed steps: SmolLM2 on a loaded 2-core CPU took
    35 s a step, so `--max-minutes 2` had spent 3 minutes before it planned, and trained for 4 ("time
    budget: 3 of 27 steps fit", then 7 steps)."""
    slow_steps(monkeypatch, seconds=0.4)
    out = tmp_path / "run"
    # 80 planned steps of at least 0.4 s, in a budget of 3 s: the 10 untimed steps alone take 4 s
    train(TrainConfig(train=str(split_files[0]), out=str(out), base=str(tiny_llama_dir), batch_size=1,
                      eval_every=1000, max_minutes=0.05, device="cpu"))
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["steps"] == meta["planned_steps"] <= 7
    assert f"time budget: {meta['planned_steps']} of 80 steps fit in 0.05 min" in capsys.readouterr().out


LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"],
    # accelerate's multi-process launcher (its CPU-only mode needs MPI); the processes use gloo from --device cpu
    "accelerate": [
        "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29518",
    ],
}


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_two_process_data_parallel_run_splits_the_data_and_reports_once(tmp_path, tiny_gptneo_dir, split_files, launcher):
    """Two processes with a batch each per step train, and report their loss, as one process accumulating
    those two batches, also in the last step, where 9 batches leave the second process none of its own (it
    repeated the first batch of the epoch, training on it twice)."""
    train_file, val_file = split_files
    out = tmp_path / "ddp"
    command = [
        sys.executable, *LAUNCHERS[launcher],
        "-m", "core.cli", "train", "--base", str(tiny_gptneo_dir), "--train", str(train_file), "--val", str(val_file),
        "--out", str(out), "--batch-size", "8", "--eval-every", "2", "--device", "cpu", "--lr", "3e-3", "--limit", "72",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # The closing lines come from the main process only (every process printed them).
    assert finished.stdout.count(f"checkpoint: {out}\n") == 1 and finished.stdout.count('"steps": 5') == 1
    seen = [set(json.loads((out / "ranks" / f"rank{r}.json").read_text())["examples"]) for r in (0, 1)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(72))
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["steps"] == 5  # 9 batches of 8, two per step across the two processes
    alone = train(_config(tmp_path / "alone", tiny_gptneo_dir, train_file, val_file, grad_accum=2, eval_every=2, seed=0,
                          limit=72, device="cpu"))
    together, accumulated = load_file(str(out / "model.safetensors")), load_file(str(alone / "model.safetensors"))
    assert all(torch.allclose(together[name], accumulated[name], atol=1e-5) for name in accumulated)
    # The recorded training loss is the whole step's, not the main process's half of it.
    losses_alone = [record["train_loss"] for record in json.loads((alone / "titlecraft.json").read_text())["history"]]
    assert [record["train_loss"] for record in meta["history"]] == pytest.approx(losses_alone, abs=2e-4)
    load_model(str(out))


LATE_SECOND_PROCESS = """
import os, sys, time
import tqdm.auto
import core.train as core_train

real_load_model, real_tqdm = core_train.load_model, tqdm.auto.tqdm


def slow_model(*args, **kwargs):  # a CPU step of a larger model: the tiny one is too quick to budget
    model, tokenizer, info = real_load_model(*args, **kwargs)
    model.get_decoder().register_forward_pre_hook(lambda *_: time.sleep(0.05))
    return model, tokenizer, info


class LateBar(real_tqdm):  # the second process reaches the training loop a second after the first
    def __init__(self, *args, **kwargs):
        time.sleep(1.0)
        super().__init__(*args, **kwargs)


core_train.load_model = slow_model
if os.environ["RANK"] == "1":
    tqdm.auto.tqdm = LateBar
from core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_data_parallel_processes_shrink_a_time_budgeted_plan_to_the_same_step_count(tmp_path, tiny_gptneo_dir, split_files):
    """Each process planned the --max-minutes budget from its own clock, so processes that started their
    loop apart planned other step counts: the one with more steps left waited for the others in its next
    step's collective, hanging the job (gloo's timeout is 30 minutes)."""
    script = tmp_path / "late_second_process.py"
    script.write_text(LATE_SECOND_PROCESS)
    out = tmp_path / "ddp"
    command = [
        sys.executable, *LAUNCHERS["torchrun"], str(script), "train", "--base", str(tiny_gptneo_dir),
        "--train", str(split_files[0]), "--out", str(out), "--batch-size", "1", "--epochs", "30",
        "--eval-every", "1000", "--max-minutes", "0.1", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    job = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        _, stderr = job.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        job.terminate()  # torchrun ends its processes (each in a session of its own) when terminated
        job.communicate()
        pytest.fail("the processes planned other step counts and hung")
    assert job.returncode == 0, stderr[-3000:]
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["steps"] == meta["planned_steps"] < 1200


def test_training_can_continue_an_adapter_on_its_base(tmp_path, tiny_llama_dir, split_files):
    first = train(_config(tmp_path / "a", tiny_llama_dir, *split_files, lora=True, lora_r=4, lora_alpha=8, lr=1e-2))
    first_meta = json.loads((first / "titlecraft.json").read_text())
    # At learning rate 0 the continued adapter is the one it started from: its weights were loaded.
    unchanged = train(_config(tmp_path / "b", "embedded", *split_files, init_adapter=str(first), lr=0.0, limit=16))
    before, after = load_file(str(first / ADAPTER_WEIGHTS)), load_file(str(unchanged / ADAPTER_WEIGHTS))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name].float(), after[name].float()) for name in before)
    meta = json.loads((unchanged / "titlecraft.json").read_text())
    assert meta["base"] == str(tiny_llama_dir) and meta["lora"] == first_meta["lora"]
    assert meta["template"] == first_meta["template"]
    assert meta["init_adapter"]["sha256"] == file_sha256(first / ADAPTER_WEIGHTS)
    continued = train(_config(tmp_path / "c", tiny_llama_dir, *split_files, init_adapter=str(first), lr=1e-2))
    trained = load_file(str(continued / ADAPTER_WEIGHTS))
    assert not all(torch.equal(before[name].float(), trained[name].float()) for name in before)
    assert load_model(str(continued))[2].adapter == str(continued)


def test_continuing_an_adapter_rejects_another_base_or_a_full_checkpoint(tmp_path, tiny_gptneo_dir, tiny_llama_dir, split_files):
    adapter = train(_config(tmp_path / "a", tiny_llama_dir, *split_files, lora=True, lora_r=4, lora_alpha=8, limit=16))
    with pytest.raises(TitlecraftError, match="trained on"):
        train(_config(tmp_path / "b", tiny_gptneo_dir, *split_files, init_adapter=str(adapter)))
    with pytest.raises(TitlecraftError, match="holds no LoRA adapter"):
        train(_config(tmp_path / "c", tiny_llama_dir, *split_files, init_adapter=str(tiny_gptneo_dir)))


def test_a_compiled_run_learns_what_the_eager_one_does(tmp_path, tiny_llama_dir, split_files):
    settings = dict(limit=24, eval_every=2, val_limit=16)
    eager = train(_config(tmp_path / "eager", tiny_llama_dir, *split_files, **settings))
    compiled = train(_config(tmp_path / "compiled", tiny_llama_dir, *split_files, compile=True, **settings))
    eager_meta, compiled_meta = (json.loads((out / "titlecraft.json").read_text()) for out in (eager, compiled))
    assert compiled_meta["config"]["compile"] and compiled_meta["steps"] == eager_meta["steps"] == 3
    for ours, theirs in zip(compiled_meta["history"], eager_meta["history"], strict=True):
        assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-3)
    first, second = load_file(str(eager / "model.safetensors")), load_file(str(compiled / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.allclose(first[name], second[name], atol=1e-4) for name in first)


@pytest.mark.parametrize("fixture,stack", [("tiny_gptneo_dir", "h"), ("tiny_llama_dir", "layers")])
def test_compiling_targets_the_stack_of_decoder_layers(request, fixture, stack):
    model, _, _ = load_model(str(request.getfixturevalue(fixture)), device="cpu")
    backbone = TitleLoss(model).backbone
    assert decoder_layers(backbone) is getattr(backbone, stack)
    with pytest.raises(TitlecraftError, match="no stack of layers"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_a_failing_compile_falls_back_to_eager_training(tmp_path, tiny_llama_dir, split_files, monkeypatch, capsys):
    import torch._inductor.config as inductor_config

    torch.compiler.reset()  # graphs compiled by an earlier test would otherwise be reused
    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    monkeypatch.setattr(inductor_config, "force_disable_caches", True)
    out = train(_config(tmp_path, tiny_llama_dir, *split_files, compile=True, limit=16, eval_every=1, val_limit=8))
    assert "torch.compile failed, training continues uncompiled" in capsys.readouterr().out
    meta = json.loads((out / "titlecraft.json").read_text())
    assert meta["steps"] == 2 and all(math.isfinite(h["val_loss"]) for h in meta["history"])


def test_bf16_on_cpu_learns_what_fp32_does(tmp_path, tiny_llama_dir, split_files):
    settings = dict(limit=48, eval_every=2, val_limit=16, lora=True, lora_r=4, lora_alpha=8, lr=1e-2)
    runs = {}
    for precision in ("fp32", "bf16"):
        out = train(_config(tmp_path / precision, tiny_llama_dir, *split_files, precision=precision, **settings))
        runs[precision] = json.loads((out / "titlecraft.json").read_text())
    fp32, bf16 = ([h["val_loss"] for h in runs[p]["history"]] for p in ("fp32", "bf16"))
    assert bf16 != fp32  # autocast did run in bf16
    assert bf16 == pytest.approx(fp32, rel=0.01)
    assert bf16[-1] < bf16[0] and runs["bf16"]["config"]["precision"] == "bf16"
    with pytest.raises(TitlecraftError, match="the precision must be one of auto, bf16, fp32"):
        _config(tmp_path / "bad", tiny_llama_dir, *split_files, precision="fp8")


def test_running_out_of_gpu_memory_says_what_to_change_and_keeps_the_saved_state(tmp_path, tiny_llama_dir, split_files, monkeypatch):
    forward = TitleLoss.forward
    training_steps = []

    def out_of_memory_at_the_second_step(self, *args, **kwargs):
        if self.training:
            training_steps.append(1)
            if len(training_steps) == 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, *args, **kwargs)

    settings = dict(limit=24, eval_every=1, val_limit=8)
    monkeypatch.setattr(TitleLoss, "forward", out_of_memory_at_the_second_step)
    with pytest.raises(TitlecraftError) as refused:
        train(_config(tmp_path, tiny_llama_dir, *split_files, **settings))
    # The advice said the saved run "resumes when re-run", but a re-run with the advised settings is refused
    # (they shape its steps): the advice now names a new --out for them, and what the saved run resumes with.
    assert str(refused.value) == (
        "the GPU ran out of memory at batch size 8: re-run with --batch-size 4 --grad-accum 2 (the same examples "
        "per step) or a lower --max-abstract-tokens, into a new --out: the run saved at step 1 in "
        f"{tmp_path / 'run'} resumes only with its own settings"
    )
    with pytest.raises(TitlecraftError, match="holds an interrupted run with other settings \\(batch_size, grad_accum\\)"):
        train(_config(tmp_path, tiny_llama_dir, *split_files, **settings, batch_size=4, grad_accum=2))
    monkeypatch.setattr(TitleLoss, "forward", forward)
    steps_seen = []
    train(_config(tmp_path, tiny_llama_dir, *split_files, **settings), on_progress=lambda r: steps_seen.append(r["step"]))
    assert steps_seen == [2, 3]


def test_an_out_folder_holding_other_files_is_refused_and_left_as_it_was(tmp_path, tiny_gptneo_dir, split_files):
    # --out runs (a folder of earlier runs) replaced the earlier checkpoint runs/best with this run's best
    # and then moved it into runs/, deleting the user's checkpoint and mixing files into their folder.
    runs = tmp_path / "runs"
    earlier = train(_config(tmp_path, tiny_gptneo_dir, *split_files, out=str(runs / "best"), limit=8))
    (runs / "notes.txt").write_text("my notes")
    before = sorted((p.relative_to(runs), p.read_bytes()) for p in runs.rglob("*") if p.is_file())
    with pytest.raises(TitlecraftError, match=f"{runs} already holds other files \\(best, notes.txt\\)"):
        train(_config(tmp_path, tiny_gptneo_dir, *split_files, out=str(runs), limit=8))
    assert sorted((p.relative_to(runs), p.read_bytes()) for p in runs.rglob("*") if p.is_file()) == before
    load_model(str(earlier))
    killed = tmp_path / "killed"  # killed after its first best save, before the resume state was saved
    (killed / "best").mkdir(parents=True)
    (killed / "best" / "titlecraft.json").write_text(json.dumps({"config": {"out": str(killed)}}))
    (killed / ".last.staging").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (killed, empty):
        assert (train(_config(tmp_path, tiny_gptneo_dir, *split_files, out=str(out), limit=8)) / "model.safetensors").is_file()


@pytest.mark.parametrize("row,problem", [
    ('{"prompt": null, "completion": " X"}', "'prompt' and 'completion' must be text"),
    ('{"prompt": "Abstract: x\\nTitle:", "completion": 5}', "'prompt' and 'completion' must be text"),
    ('{"prompt": "Abstract: x\\nTitle:"}', "it has no 'completion'"),
    ('[1, 2]', "expected a JSON object"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "a row of a chat export"),
    ('{"prompt": "Abstract: x\\nTitle:", "chosen": " A", "rejected": " B"}', "a row of a dpo export"),
    ('{"prompt": "Abstract: x\\nTitle:", "completion": "  "}', "the completion holds no title"),
])
def test_a_bad_sft_row_is_named_in_words(tmp_path, capsys, row, problem):
    # Non-text fields crashed with an AttributeError traceback; chat and dpo exports were reported
    # with Python's repr of the missing key ("'prompt'").
    extra = tmp_path / "extra.jsonl"
    extra.write_text(row + "\n")
    assert main(["train", "--train", str(extra), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {extra}:1: ") and problem in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_an_sft_file_that_is_not_utf8_or_holds_no_pairs_is_refused(tmp_path, split_files, monkeypatch):
    monkeypatch.setattr("core.train.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"prompt": "Abstract: caf\xe9\\nTitle:", "completion": " X"}\n')
    with pytest.raises(TitlecraftError, match="latin1.jsonl is not UTF-8 text"):
        read_pairs(latin1)
    empty = tmp_path / "empty.jsonl"  # an empty --extra trained without the curated pairs, exit 0
    empty.write_text("\n")
    with pytest.raises(TitlecraftError, match=f"--extra {empty} holds no pairs"):
        train(TrainConfig(train=str(split_files[0]), extra=[str(empty)], out=str(tmp_path / "run")))


def test_an_out_folder_that_cannot_be_created_is_refused_before_the_model_loads(tmp_path, split_files, monkeypatch, capsys):
    """It failed only at the first save, after --eval-every steps of training that were then lost."""
    monkeypatch.setattr("core.train.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    out = Path("/proc") / f"titlecraft-{tmp_path.name}" / "run"  # procfs takes no new folder, even from root
    assert main(["train", "--train", str(split_files[0]), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: cannot create the checkpoint folder {out}: No such file or directory\n"


def test_a_second_job_on_the_same_out_is_refused_while_the_first_trains(tmp_path, tiny_gptneo_dir, split_files, capsys):
    """The same command started again meanwhile took the first job's saved state for an interrupted run's and
    trained beside it, both replacing best/ and last/: the published checkpoint mixed the two, exit status 0."""
    first_saved, second_refused = threading.Event(), threading.Event()

    def wait_for_the_second(record):
        first_saved.set()
        assert second_refused.wait(60)

    config = _config(tmp_path, tiny_gptneo_dir, *split_files, eval_every=1, limit=16)
    first = concurrent.futures.ThreadPoolExecutor(1).submit(train, config, wait_for_the_second)
    assert first_saved.wait(120), first.exception(timeout=0) if first.done() else "the first job never saved"
    # the same command: without the lock it resumed from the first job's saved state and trained beside it
    args = ["train", "--base", str(tiny_gptneo_dir), "--train", str(split_files[0]), "--val", str(split_files[1]),
            "--limit", "16", "--batch-size", "8", "--lr", "3e-3", "--eval-every", "1", "--seed", "1"]
    assert main([*args, "--out", config.out]) == 2
    second_refused.set()
    assert capsys.readouterr().err.endswith(
        f"error: another titlecraft train is writing into {config.out}; wait for it to finish, or choose another --out\n"
    )
    assert (first.result(timeout=120) / "model.safetensors").is_file()
    assert main([*args, "--out", config.out]) == 2  # the lock went with the first job: the run is finished
    assert capsys.readouterr().err.endswith(f"error: {config.out} already holds a finished run; choose another --out\n")


def test_every_file_of_a_repeated_extra_option_is_read(tmp_path, split_files, monkeypatch, capsys):
    """argparse kept only the last `--extra`: `--extra mine.jsonl --extra hers.jsonl` trained without mine."""
    monkeypatch.setattr("core.train.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    empty, curated = tmp_path / "empty.jsonl", tmp_path / "curated.jsonl"
    empty.write_text("\n")
    curated.write_text(json.dumps({"prompt": "Abstract: We study graphs.\nTitle:", "completion": " Graphs"}) + "\n")
    args = ["train", "--train", str(split_files[0]), "--extra", str(empty), "--extra", str(curated)]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"error: --extra {empty} holds no pairs; export them with titlecraft export --format sft\n"


def test_a_parquet_split_without_a_column_or_an_empty_validation_split_is_refused(tmp_path, split_files, monkeypatch, capsys):
    # A missing column was reported with pyarrow's multi-line schema dump; an empty --val trained with
    # no validation at all (best_val_loss null, exit 0).
    monkeypatch.setattr("core.train.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    no_title = tmp_path / "no-title.parquet"
    pd.DataFrame({"abstract": ["We study graphs."], "date": ["2020-01-01"]}).to_parquet(no_title)
    assert main(["train", "--train", str(no_title), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"error: {no_title} has no 'title' column (its columns: abstract, date)\n"
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"abstract": [], "title": []}).to_parquet(empty)
    with pytest.raises(TitlecraftError, match=f"--val {empty} holds no pairs"):
        train(TrainConfig(train=str(split_files[0]), val=str(empty), out=str(tmp_path / "run")))


def test_validation_pairs_that_are_trained_on_are_dropped_and_all_of_them_refused(
    tmp_path, tiny_llama_dir, real_pairs, monkeypatch, capsys
):
    # A --val that repeats the training split gave a loss that fell to the end, so "best" was the last step.
    train_file, val_file = tmp_path / "train.parquet", tmp_path / "val.parquet"
    real_pairs.iloc[:8].to_parquet(train_file)
    mixed = real_pairs.iloc[6:12].copy()
    mixed.loc[mixed.index[0], "abstract"] = "  " + mixed.abstract.iloc[0].replace(" ", "\n", 3)  # re-wrapped copy
    mixed.to_parquet(val_file)
    out = train(_config(tmp_path, tiny_llama_dir, train_file, val_file, eval_every=1))
    assert "--val: 2 of its pairs are training pairs too; validating on the others" in capsys.readouterr().out
    assert json.loads((out / "titlecraft.json").read_text())["best_val_loss"] is not None
    monkeypatch.setattr("core.train.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(TitlecraftError, match=f"--val {train_file}: all its 8 pairs are training pairs too"):
        train(_config(tmp_path, tiny_llama_dir, train_file, train_file, out=str(tmp_path / "again")))


def test_examples_longer_than_the_models_context_are_refused_with_a_limit_that_fits(
    tmp_path, tiny_gptneo_dir, split_files, real_pairs
):
    """A --max-abstract-tokens beyond the model's positions (2048 on GPT-Neo 125M) failed at the first step
    with 'IndexError: index out of range in self' from deep inside the position embedding."""
    import re

    with pytest.raises(TitlecraftError, match="longer than the model's context of 512 tokens") as refused:
        train(_config(tmp_path, tiny_gptneo_dir, *split_files, max_abstract_tokens=2000))
    assert not (tmp_path / "run" / "best").exists()
    fitting = int(re.search(r"lower --max-abstract-tokens \(now 2000\) to (\d+) or less", str(refused.value))[1])
    out = train(_config(tmp_path, tiny_gptneo_dir, *split_files, max_abstract_tokens=fitting, out=str(tmp_path / "fits")))
    assert json.loads((out / "titlecraft.json").read_text())["steps"] == 10
    swapped = tmp_path / "swapped.parquet"  # titles that alone fill the context: no abstract limit helps
    real_pairs.iloc[:8].rename(columns={"title": "abstract", "abstract": "title"}).to_parquet(swapped)
    with pytest.raises(TitlecraftError, match="their titles alone take up to \\d+ tokens"):
        train(_config(tmp_path, tiny_gptneo_dir, swapped, split_files[1], out=str(tmp_path / "swapped")))


@pytest.mark.parametrize("file_size_limit", [100_000, 300_000])  # the checkpoint's weights / the resume state's optimizer
def test_a_save_that_the_disk_refuses_is_one_line_saying_so(tmp_path, tiny_gptneo_dir, split_files, file_size_limit):
    """A full disk (here a file-size limit: each save writes a file larger than it) ended the run with a
    traceback: safetensors' 'SafetensorError: Error while serializing: I/O error' for the weights,
    torch.save's 'RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos' for the optimizer."""
    import resource
    import signal

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    out = tmp_path / "run"
    command = [sys.executable, "-m", "core.cli", "train", "--base", str(tiny_gptneo_dir), "--train", str(split_files[0]),
               "--val", str(split_files[1]), "--out", str(out), "--batch-size", "8", "--eval-every", "3", "--device", "cpu"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size)
    assert finished.returncode == 2 and "Traceback" not in finished.stderr
    assert (
        f"error: could not save step 3 in {out}: File too large; make room and re-run the same command "
        "(no step is saved yet: it starts again)"
    ) in finished.stderr.splitlines()


def test_parquet_rows_with_a_blank_title_or_abstract_are_no_pairs(tmp_path, split_files, monkeypatch, capsys):
    """An SFT row with a blank completion is refused, but a parquet row with a blank title (or abstract)
    was trained on: the model learned to end a title at once, and a split of such rows trained with exit 0."""
    rows = pd.DataFrame({"abstract": ["We study graphs.", "  ", "We learn to plan.", "We scale kernels."],
                         "title": ["Graph Study", "Orphan Title", "\n", "Kernel Scaling"]})
    mixed = tmp_path / "mixed.parquet"
    rows.to_parquet(mixed)
    assert read_pairs(mixed) == [("We study graphs.", "Graph Study"), ("We scale kernels.", "Kernel Scaling")]
    blank = tmp_path / "blank.parquet"
    rows.assign(title=" ").to_parquet(blank)
    monkeypatch.setattr("core.train.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    assert main(["train", "--train", str(blank), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == f"error: no training examples in {blank}\n"


def test_a_save_refused_for_another_reason_than_room_does_not_ask_to_make_room(tmp_path, tiny_gptneo_dir, split_files, monkeypatch):
    """Every OSError on a save was worded as a full disk: a folder made read-only under the run was told
    'Permission denied; make room and re-run', advice that cannot help."""

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(core_train, "save_checkpoint", refused)
    with pytest.raises(TitlecraftError) as stopped:
        train(_config(tmp_path, tiny_gptneo_dir, *split_files, limit=8, eval_every=1))
    assert str(stopped.value) == (
        f"could not save step 1 in {tmp_path / 'run'}: Permission denied; fix that and re-run the same command "
        "(no step is saved yet: it starts again)"
    )
