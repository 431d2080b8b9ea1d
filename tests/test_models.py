"""Model loading: the real embedded GGUF (cold de-quantise, warm cache), checkpoints, and every failure mode."""

from __future__ import annotations

import json
import shutil
import socket
import warnings

import pytest
import torch

from core.errors import TitlecraftError, TitlecraftWarning
from core.models import (
    ADAPTER_WEIGHTS,
    CHECKPOINT_META,
    EMBEDDED_BASE,
    SHIPPED_ADAPTER_DIR,
    _cached,
    _write_cache,
    cache_root,
    default_dtype,
    hub_reachable,
    load_model,
    load_tokenizer,
    resolve_device,
)

PROBE = "Abstract: We study sparse graph representations.\nTitle:"


def _logits(model, tokenizer) -> torch.Tensor:
    ids = torch.tensor([tokenizer(PROBE, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


def _cache_folder(cache_dir):
    (folder,) = [p for p in (cache_dir / "embedded").iterdir() if not p.name.startswith(".")]
    return folder


@pytest.fixture(scope="module")
def cold_cache(tmp_path_factory):
    """A cache built by one cold load of the embedded base model, and that load's logits."""
    cache_dir = tmp_path_factory.mktemp("cache")
    model, tokenizer, info = load_model(EMBEDDED_BASE, cache_dir=cache_dir)
    return cache_dir, _logits(model, tokenizer), info


@pytest.mark.slow
def test_cold_load_caches_and_warm_load_gives_the_same_logits(cold_cache):
    cache_dir, cold_logits, info = cold_cache
    folder = _cache_folder(cache_dir)
    assert {"model.safetensors", "manifest.json", "tokenizer.json", "config.json"} <= {p.name for p in folder.iterdir()}
    assert info.kind == EMBEDDED_BASE and info.template == "chat" and info.device == "cpu" and info.dtype == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TitlecraftWarning)
        model, tokenizer, _ = load_model(EMBEDDED_BASE, cache_dir=cache_dir)
    assert torch.equal(_logits(model, tokenizer), cold_logits)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.slow
def test_a_corrupt_cache_is_rebuilt_with_a_warning(cold_cache, tmp_path):
    cache_dir, cold_logits, _ = cold_cache
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    weights = _cache_folder(copy) / "model.safetensors"
    whole_size = weights.stat().st_size
    with open(weights, "r+b") as handle:
        handle.truncate(whole_size // 2)
    with pytest.warns(TitlecraftWarning, match="corrupt; rebuilding"):
        model, tokenizer, _ = load_model(EMBEDDED_BASE, cache_dir=copy)
    assert torch.equal(_logits(model, tokenizer), cold_logits)
    assert (_cache_folder(copy) / "model.safetensors").stat().st_size == whole_size
    with warnings.catch_warnings():
        warnings.simplefilter("error", TitlecraftWarning)
        load_model(EMBEDDED_BASE, cache_dir=copy)  # the rebuilt cache is whole again


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["config.json gone", "tokenizer.json cut short", "config.json zeroed"])
def test_a_cache_missing_or_cutting_short_a_small_file_is_rebuilt(cold_cache, tmp_path, damage):
    """Not only the weights: a cache that lost its config or has half a tokenizer failed every later
    load with 'neither embedded, embedded-base, a local checkpoint directory, nor a hub id'. So did a
    config of the right size that is no JSON (the NUL bytes a crash leaves in a file not yet flushed)."""
    cache_dir, cold_logits, _ = cold_cache
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    name = damage.split()[0]
    damaged = _cache_folder(copy) / name
    if damage.endswith("gone"):
        damaged.unlink()
    elif damage.endswith("zeroed"):
        damaged.write_bytes(bytes(damaged.stat().st_size))
    else:
        damaged.write_bytes(damaged.read_bytes()[:1000])
    with pytest.warns(TitlecraftWarning, match="corrupt; rebuilding"):
        model, tokenizer, _ = load_model(EMBEDDED_BASE, cache_dir=copy)
    assert torch.equal(_logits(model, tokenizer), cold_logits)
    assert (_cache_folder(copy) / name).stat().st_size == (_cache_folder(cache_dir) / name).stat().st_size


def test_a_cache_another_run_published_meanwhile_is_kept_not_replaced(tmp_path, tiny_llama_dir):
    """Runs started together on a cold cache all build the model; the last to finish deleted the whole
    cache the first had published, under any run loading from it, and put its own in its place."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "cache" / "model"

    def build():
        return AutoModelForCausalLM.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(tiny_llama_dir)

    published = {}

    def build_while_another_run_publishes():
        _write_cache(*build(), folder, {"run": "other"})
        published.update({path.name: path.stat().st_ino for path in folder.iterdir()})
        return build()

    with warnings.catch_warnings():
        warnings.simplefilter("error", TitlecraftWarning)
        cached, model, _ = _cached(folder, build_while_another_run_publishes, {"run": "this"})
    assert cached == folder and model is not None
    assert {path.name: path.stat().st_ino for path in folder.iterdir()} == published
    assert json.loads((folder / "manifest.json").read_text())["run"] == "other"
    assert list(folder.parent.iterdir()) == [folder]  # no staging folder left behind


@pytest.mark.slow
def test_an_unwritable_cache_dir_still_loads_with_a_warning(cold_cache, tmp_path):
    _, cold_logits, _ = cold_cache
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory should be")
    with pytest.warns(TitlecraftWarning, match="could not write the model cache"):
        model, tokenizer, _ = load_model(EMBEDDED_BASE, cache_dir=blocker / "titlecraft")
    assert torch.equal(_logits(model, tokenizer), cold_logits)
    assert blocker.read_text().startswith("a file")


@pytest.mark.slow
def test_the_default_model_is_the_base_with_the_shipped_adapter_merged():
    tuned, tokenizer, info = load_model("embedded")
    base, _, _ = load_model(EMBEDDED_BASE)
    assert info.adapter and info.template == "completion" and "LoRA" in info.name
    assert info.meta["lora"]["r"] > 0 and info.meta["base"] == EMBEDDED_BASE
    assert not torch.allclose(_logits(tuned, tokenizer), _logits(base, tokenizer))
    assert load_tokenizer("embedded").eos_token == "<|im_end|>"


def test_default_dtype_is_bf16_on_cuda_and_on_cpus_with_amx_fp32_elsewhere(monkeypatch):
    import core.models

    monkeypatch.delenv("TITLECRAFT_DTYPE")
    monkeypatch.setattr(core.models, "cpu_has_bf16_matrix_units", lambda: True)
    assert default_dtype("cuda") == default_dtype("cuda:1") == default_dtype("cpu") == torch.bfloat16
    assert default_dtype("mps") == torch.float32
    monkeypatch.setattr(core.models, "cpu_has_bf16_matrix_units", lambda: False)
    assert default_dtype("cpu") == torch.float32 and default_dtype("cuda") == torch.bfloat16
    monkeypatch.setenv("TITLECRAFT_DTYPE", "bfloat16")
    assert default_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv("TITLECRAFT_DTYPE", "float16")
    with pytest.raises(TitlecraftError, match="TITLECRAFT_DTYPE must be one of float32, bfloat16"):
        default_dtype("cpu")


def test_a_tiny_model_loads_in_the_dtype_the_environment_names(monkeypatch, tiny_llama_dir):
    monkeypatch.setenv("TITLECRAFT_DTYPE", "bfloat16")
    model, _, info = load_model(str(tiny_llama_dir))
    assert info.dtype == "bfloat16" and next(model.parameters()).dtype == torch.bfloat16


def test_the_shipped_adapter_fits_the_package_and_matches_its_metadata():
    """Package data is capped at one 16 MB weights file; its rank must be the one titlecraft.json names."""
    import json

    from safetensors import safe_open

    weights = SHIPPED_ADAPTER_DIR / ADAPTER_WEIGHTS
    assert weights.stat().st_size <= 16_000_000
    meta = json.loads((SHIPPED_ADAPTER_DIR / CHECKPOINT_META).read_text())
    with safe_open(str(weights), framework="pt") as tensors:
        ranks = {tensors.get_slice(name).get_shape()[0] for name in tensors.keys() if "lora_A" in name}
    assert ranks == {meta["lora"]["r"]}
    assert meta["steps"] == meta["best_step"] and meta["best_val_loss"] == min(
        h["val_loss"] for h in meta["history"] if "val_loss" in h
    )


@pytest.mark.parametrize("fixture,template", [("tiny_llama_dir", "chat"), ("tiny_gptneo_dir", "completion")])
def test_tiny_checkpoints_load_from_a_directory(request, fixture, template):
    folder = request.getfixturevalue(fixture)
    model, tokenizer, info = load_model(str(folder))
    assert info.kind == "checkpoint" and info.template == template and info.path == str(folder)
    assert info.dtype == "float32" and not model.training
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    assert _logits(model, tokenizer).shape[-1] == model.config.vocab_size


def test_unknown_spec_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TitlecraftError, match="could not load model 'no such model!'"):
        load_model("no such model!")


def test_offline_hub_id_names_the_spec(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(TitlecraftError) as error:
        load_model("EleutherAI/gpt-neo-125m")
    message = str(error.value)
    assert "'EleutherAI/gpt-neo-125m'" in message
    assert "not in the Hugging Face cache, and HF_HUB_OFFLINE is set" in message
    assert "Traceback" not in message


def _closed_port_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_an_unreachable_hub_is_not_retried_and_a_cached_hub_model_still_loads(monkeypatch, tmp_path, tiny_llama_dir):
    # The hub client retries an unreachable host for most of a minute; titlecraft goes to the cache at once.
    from huggingface_hub import constants

    endpoint = _closed_port_endpoint()
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert not hub_reachable()
    with pytest.raises(TitlecraftError, match=f"not in the Hugging Face cache, and {endpoint} cannot be reached"):
        load_model("someorg/tiny-llama")
    revision = "0" * 40
    repo = tmp_path / "hub" / "models--someorg--tiny-llama"
    shutil.copytree(tiny_llama_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    _, _, info = load_model("someorg/tiny-llama", device="cpu")
    assert info.kind == "hub" and info.name == "someorg/tiny-llama"


def test_a_listening_hub_endpoint_counts_as_reachable(monkeypatch):
    from huggingface_hub import constants

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub_reachable()


def test_a_hub_behind_a_proxy_is_left_to_the_hub_client(monkeypatch):
    """Where only a proxy leads out ($HTTPS_PROXY, as on many clusters) the direct probe failed, and every
    hub id was refused as unreachable although the hub client goes through the proxy."""
    from huggingface_hub import constants

    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", _closed_port_endpoint())
    assert not hub_reachable()
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert hub_reachable()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # the proxy is not used for this host: the probe counts again
    assert not hub_reachable()


def test_a_checkpoint_with_broken_metadata_is_a_clear_error(tmp_path, tiny_gptneo_dir):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_gptneo_dir, folder)
    (folder / "titlecraft.json").write_text("{not json")
    with pytest.raises(TitlecraftError, match="titlecraft.json is not valid JSON"):
        load_model(str(folder))
    (folder / "titlecraft.json").write_text("[1, 2]")
    with pytest.raises(TitlecraftError, match="titlecraft.json must hold a JSON object .*, not list"):
        load_model(str(folder))
    (folder / "titlecraft.json").write_bytes(b"\xff\xfe{\x00}\x00")  # not text: a traceback from the CLI
    with pytest.raises(TitlecraftError, match="titlecraft.json is not valid JSON"):
        load_model(str(folder))


def test_a_folder_or_path_that_is_no_checkpoint_is_named_as_such(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(TitlecraftError, match="is a folder but not a model checkpoint: it holds neither config.json"):
        load_model(str(tmp_path))
    for missing in (tmp_path / "no-such-run", "./no-such-run", "~/no-such-run"):
        with pytest.raises(TitlecraftError, match="no checkpoint folder at .*no-such-run: the path does not exist"):
            load_model(str(missing))
    with pytest.raises(TitlecraftError, match="notes.txt: the path is a file, not a checkpoint folder"):
        load_model(str(tmp_path / "notes.txt"))


def test_devices_resolve_and_absent_cuda_is_refused():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda", "mps"}
    if not torch.cuda.is_available():
        with pytest.raises(TitlecraftError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("device", ["gpu", "", "cuda:x", "xla", "mps"])
def test_an_unknown_or_absent_device_is_a_clear_error(device):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    with pytest.raises(TitlecraftError, match=f"device {device!r}.*(auto, cpu, cuda|not available)"):
        resolve_device(device)


def test_the_generate_command_names_a_bad_device_instead_of_a_traceback(tiny_llama_dir, capsys, monkeypatch):
    import io

    from core.cli import main

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"We study sparse graph representations.")))
    assert main(["generate", "--model", str(tiny_llama_dir), "--device", "gpu", "-n", "1"]) == 2
    assert "error: device 'gpu' is not a device torch knows" in capsys.readouterr().err


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TITLECRAFT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "titlecraft"
    monkeypatch.setenv("TITLECRAFT_CACHE_DIR", str(tmp_path / "override"))
    assert cache_root() == tmp_path / "override"


def test_an_adapter_whose_metadata_names_no_base_is_a_clear_error(tmp_path):
    (tmp_path / ADAPTER_WEIGHTS).write_bytes(b"")
    (tmp_path / CHECKPOINT_META).write_text('{"name": "orphan"}')
    with pytest.raises(TitlecraftError, match="names no base model"):
        load_model(str(tmp_path))


def test_a_checkpoint_naming_a_template_it_cannot_use_is_a_clear_error(tmp_path, tiny_gptneo_dir):
    """Not "new tokens leave no room for the abstract" at the first generation: the template is named."""
    folder = tmp_path / "odd-template"
    shutil.copytree(tiny_gptneo_dir, folder)
    (folder / CHECKPOINT_META).write_text('{"template": "instruct"}')
    with pytest.raises(TitlecraftError, match="names the prompt template 'instruct'; expected one of chat, completion"):
        load_model(str(folder))
    (folder / CHECKPOINT_META).write_text('{"template": "chat"}')
    with pytest.raises(TitlecraftError, match="the chat template, but its tokenizer has no chat template"):
        load_model(str(folder))


@pytest.mark.parametrize("template", ["{% for %}", "{{ messages | nosuchfilter }}", "{{ raise_exception('no') }}"])
def test_a_checkpoint_whose_chat_template_cannot_render_is_a_clear_error(tmp_path, tiny_llama_dir, template):
    """It loaded, then every prompt (the editor's token count, each generation) failed with jinja's own
    error, a traceback from the CLI."""
    folder = tmp_path / "broken-chat-template"
    shutil.copytree(tiny_llama_dir, folder)
    (folder / "chat_template.jinja").write_text(template)
    with pytest.raises(TitlecraftError, match="its tokenizer's chat template cannot format a prompt"):
        load_model(str(folder))


@pytest.mark.parametrize(
    "damage", [lambda data: data[: len(data) // 2], lambda data: b"not safetensors"], ids=["cut short", "overwritten"]
)
def test_a_checkpoint_with_damaged_weights_is_a_clear_error(tmp_path, tiny_llama_dir, damage):
    """A copy cut short or overwritten names the checkpoint instead of raising safetensors' own error."""
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_llama_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(TitlecraftError, match="could not load the checkpoint .*damaged"):
        load_model(str(folder))


def test_a_checkpoint_whose_config_has_a_field_of_the_wrong_type_is_a_clear_error(tmp_path, tiny_llama_dir):
    """transformers 5 checks config.json's field types as it builds the config: "hidden_size": "x" was
    huggingface_hub's StrictDataclassFieldValidationError, a traceback from the CLI."""
    folder = tmp_path / "mistyped"
    shutil.copytree(tiny_llama_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": "x"}))
    with pytest.raises(TitlecraftError, match="could not load the checkpoint .*mistyped.*hidden_size"):
        load_model(str(folder))


@pytest.mark.parametrize("base", [None, 7, ["embedded"]])
def test_an_adapter_whose_base_is_not_a_model_spec_is_a_clear_error(tmp_path, base):
    (tmp_path / ADAPTER_WEIGHTS).write_bytes(b"")
    (tmp_path / CHECKPOINT_META).write_text(json.dumps({"base": base, "lora": {"r": 4}}))
    with pytest.raises(TitlecraftError, match="names no base model"):
        load_model(str(tmp_path))
    with pytest.raises(TitlecraftError, match="names no base model"):  # prepare --tokenizer: a TypeError traceback
        load_tokenizer(str(tmp_path))
