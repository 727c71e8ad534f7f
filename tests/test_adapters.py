"""PEFT <-> mlx-lm LoRA adapter conversion, checked by loading every result with the stock libraries
(PeftModel.from_pretrained, mlx_lm.load) on the tiny Llama and comparing logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from slmlab.adapters import (
    AdapterFormatError,
    check_adapter_base,
    convert_adapter,
    detect_adapter_format,
    mlx_to_peft,
    peft_to_mlx,
)
from slmlab.testing import make_tiny_llama

PROMPT = "The capital of France is Paris. def add(a, b):"
ATOL = 1e-4


# --- helpers -------------------------------------------------------------------------------------


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def mlx_logits(model, ids: list[int]) -> np.ndarray:
    import mlx.core as mx

    return np.array(model(mx.array([ids]))[0].astype(mx.float32))


def load_torch(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def make_peft(model_dir: Path, out: Path, **lora: object) -> tuple[Path, np.ndarray]:
    """Save a stock PEFT LoRA (r=4, alpha=8, q/v) with random non-zero lora_B; return it and its logits."""
    from peft import LoraConfig, get_peft_model

    settings = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    model = get_peft_model(load_torch(model_dir), LoraConfig(**{**settings, **lora}))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    model.save_pretrained(out)
    return out, torch_logits(model.eval(), IDS[model_dir])


def peft_to_mlx_logits(model_dir: Path, adapter: Path) -> np.ndarray:
    import mlx_lm

    model, _ = mlx_lm.load(str(model_dir), adapter_path=str(adapter))
    return mlx_logits(model, IDS[model_dir])


def peft_logits(model_dir: Path, adapter: Path) -> np.ndarray:
    from peft import PeftModel

    return torch_logits(PeftModel.from_pretrained(load_torch(model_dir), adapter).eval(), IDS[model_dir])


def tensors(folder: Path, name: str = "adapter_model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(folder / name))


def read_config(folder: Path) -> dict:
    return json.loads((folder / "adapter_config.json").read_text())


def edit_config(folder: Path, **changes: object) -> None:
    (folder / "adapter_config.json").write_text(json.dumps({**read_config(folder), **changes}))


IDS: dict[Path, list[int]] = {}


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> Path:
    from transformers import AutoTokenizer

    IDS[tiny_model_dir] = AutoTokenizer.from_pretrained(tiny_model_dir)(PROMPT)["input_ids"]
    return tiny_model_dir


@pytest.fixture(scope="module")
def base_logits(tiny: Path) -> np.ndarray:
    return torch_logits(load_torch(tiny), IDS[tiny])


@pytest.fixture(scope="module")
def peft_adapter(tiny: Path, tmp_path_factory) -> tuple[Path, np.ndarray]:
    return make_peft(tiny, tmp_path_factory.mktemp("adapters") / "peft")


@pytest.fixture(scope="module")
def mlx_ready():
    from slmlab.backends import mlx_available

    if not mlx_available():
        pytest.skip("mlx / mlx-lm not importable here")


def make_mlx_adapter(tiny: Path, out: Path, num_layers: int) -> tuple[Path, np.ndarray]:
    """An mlx-lm LoRA made the way mlx_lm.lora makes one (rank 4, scale 2, all linear layers of the tail)."""
    import mlx.core as mx
    import mlx_lm
    from mlx.utils import tree_flatten
    from mlx_lm.lora import CONFIG_DEFAULTS
    from mlx_lm.tuner.lora import LoRALinear
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import save_config

    lora_parameters = {"rank": 4, "scale": 2.0, "dropout": 0.0}
    model, _ = mlx_lm.load(str(tiny))
    model.freeze()
    linear_to_lora_layers(model, num_layers, lora_parameters)
    mx.random.seed(2)
    for _, module in model.named_modules():
        if isinstance(module, LoRALinear):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.2
    model.eval()
    out.mkdir(parents=True)
    args = {
        **CONFIG_DEFAULTS,
        "model": str(tiny),
        "train": True,
        "data": "data",
        "adapter_path": str(out),
        "num_layers": num_layers,
        "lora_parameters": lora_parameters,
    }
    save_config(args, out / "adapter_config.json")
    mx.save_safetensors(str(out / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    return out, mlx_logits(model, IDS[tiny])


@pytest.fixture(scope="module")
def other_base(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("other-llama"), hidden_size=32, layers=3)


def relayered_base(tiny: Path, folder: Path, layers: int) -> Path:
    """The tiny model's weights under a config that claims a different layer count."""
    shutil.copytree(tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": layers}))
    return folder


# --- PEFT -> mlx-lm ------------------------------------------------------------------------------


@pytest.mark.mlx
def test_peft_to_mlx_loads_in_mlx_lm_with_the_same_logits(mlx_ready, tiny, peft_adapter, base_logits, tmp_path):
    peft_dir, expected = peft_adapter
    out = convert_adapter(peft_dir, tmp_path / "mlx", to="mlx")
    assert detect_adapter_format(out) == "mlx"
    config = read_config(out)
    assert config["fine_tune_type"] == "lora" and config["num_layers"] == 2
    assert config["lora_parameters"] == {
        "rank": 4,
        "scale": 2.0,
        "dropout": 0.0,
        "keys": ["self_attn.q_proj", "self_attn.v_proj"],
    }
    assert config["model"] == str(tiny) and config["slmlab"]["converted_from"] == "peft"
    assert tensors(out, "adapters.safetensors")["model.layers.1.self_attn.v_proj.lora_a"].shape == (64, 4)
    got = peft_to_mlx_logits(tiny, out)
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert np.abs(got - base_logits).max() > 100 * ATOL, "the adapter should change the logits"


@pytest.mark.mlx
def test_rslora_scale_is_alpha_over_sqrt_r(mlx_ready, tiny, tmp_path):
    peft_dir, expected = make_peft(tiny, tmp_path / "peft", use_rslora=True)
    out = peft_to_mlx(peft_dir, tmp_path / "mlx")
    assert read_config(out)["lora_parameters"]["scale"] == 4.0  # 8 / sqrt(4), not 8 / 4
    np.testing.assert_allclose(peft_to_mlx_logits(tiny, out), expected, atol=ATOL)
    back = read_config(mlx_to_peft(out, tmp_path / "back"))
    assert (back["use_rslora"], back["lora_alpha"], back["r"]) == (True, 8, 4)


@pytest.mark.mlx
def test_non_tail_layers_become_a_zero_padded_mlx_tail(mlx_ready, tiny, tmp_path):
    peft_dir, expected = make_peft(tiny, tmp_path / "peft", layers_to_transform=[0])
    out = peft_to_mlx(peft_dir, tmp_path / "mlx")
    assert read_config(out)["num_layers"] == 2  # mlx-lm can only say "the last N layers"
    weights = tensors(out, "adapters.safetensors")
    assert not weights["model.layers.1.self_attn.q_proj.lora_b"].any()
    assert weights["model.layers.0.self_attn.q_proj.lora_b"].any()
    np.testing.assert_allclose(peft_to_mlx_logits(tiny, out), expected, atol=ATOL)
    back = mlx_to_peft(out, tmp_path / "back")
    assert read_config(back)["layers_to_transform"] == [0]
    assert tensors(back).keys() == tensors(peft_dir).keys()


def test_partial_layers_need_a_known_base(tiny, tmp_path):
    peft_dir, _ = make_peft(tiny, tmp_path / "peft", layers_to_transform=[1])
    edit_config(peft_dir, base_model_name_or_path="someone/not-downloaded")
    with pytest.raises(AdapterFormatError, match="base_model_dir"):
        peft_to_mlx(peft_dir, tmp_path / "mlx")
    out = peft_to_mlx(peft_dir, tmp_path / "mlx", base_model_dir=tiny)
    assert read_config(out)["num_layers"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlx", "peft"]  # no temporary folders left


# --- mlx-lm -> PEFT ------------------------------------------------------------------------------


@pytest.mark.mlx
@pytest.mark.parametrize("num_layers", [2, 1])
def test_mlx_to_peft_loads_in_peft_with_the_same_logits(mlx_ready, tiny, base_logits, tmp_path, num_layers):
    mlx_dir, expected = make_mlx_adapter(tiny, tmp_path / "mlx", num_layers)
    assert detect_adapter_format(mlx_dir) == "mlx"
    out = convert_adapter(mlx_dir, tmp_path / "peft", to="peft")
    config = read_config(out)
    assert (config["peft_type"], config["r"], config["lora_alpha"], config["use_rslora"]) == ("LORA", 4, 8, False)
    assert config["layers_to_transform"] == (None if num_layers == 2 else [1])
    assert len(config["target_modules"]) == 7  # q, k, v, o, gate, up, down: mlx-lm's default keys
    assert json.loads((out / "slmlab_conversion.json").read_text())["slmlab"]["converted_from"] == "mlx"
    got = peft_logits(tiny, out)
    np.testing.assert_allclose(got, expected, atol=ATOL)
    assert np.abs(got - base_logits).max() > 100 * ATOL


# --- round trip ----------------------------------------------------------------------------------


def test_round_trip_peft_mlx_peft_is_exact(tiny, peft_adapter, tmp_path):
    peft_dir, _ = peft_adapter
    back = mlx_to_peft(peft_to_mlx(peft_dir, tmp_path / "mlx"), tmp_path / "back")
    before, after = tensors(peft_dir), tensors(back)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    original, config = read_config(peft_dir), read_config(back)
    for key in ("r", "lora_alpha", "lora_dropout", "use_rslora", "layers_to_transform", "base_model_name_or_path"):
        assert config[key] == original[key], key
    assert {m.rsplit(".", 1)[-1] for m in config["target_modules"]} == set(original["target_modules"])


def test_output_replaces_an_existing_folder(peft_adapter, tmp_path):
    out = tmp_path / "mlx"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    peft_to_mlx(peft_adapter[0], out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlx"]
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "adapters.safetensors"]


# --- base model checks ---------------------------------------------------------------------------


def test_adapter_fits_its_own_base(tiny, peft_adapter, tmp_path):
    check_adapter_base(peft_adapter[0], tiny)
    check_adapter_base(peft_to_mlx(peft_adapter[0], tmp_path / "mlx"), tiny)


def test_adapter_for_a_different_base_is_rejected(peft_adapter, other_base, tmp_path):
    with pytest.raises(AdapterFormatError, match=r"different base model") as caught:
        check_adapter_base(peft_adapter[0], other_base)
    assert "q_proj.weight is [32, 32]" in str(caught.value) and "this base model has 3" in str(caught.value)
    with pytest.raises(AdapterFormatError, match="different base model"):
        peft_to_mlx(peft_adapter[0], tmp_path / "mlx", base_model_dir=other_base)
    assert not (tmp_path / "mlx").exists()


def test_layer_count_mismatch_is_rejected(tiny, peft_adapter, tmp_path):
    with pytest.raises(AdapterFormatError, match="layer 1 but the base model has 1 layers"):
        check_adapter_base(peft_adapter[0], relayered_base(tiny, tmp_path / "one", 1))
    mlx_dir = peft_to_mlx(peft_adapter[0], tmp_path / "mlx")
    edit_config(mlx_dir, num_layers=1)  # as if trained on the last layer only, then shown a 3-layer model
    with pytest.raises(AdapterFormatError, match="would put its 1 LoRA layers on layers 2..2"):
        check_adapter_base(mlx_dir, relayered_base(tiny, tmp_path / "three", 3))


# --- refusals and broken folders -----------------------------------------------------------------


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_missing_and_broken_files_name_the_file(peft_adapter, tmp_path):
    with pytest.raises(AdapterFormatError, match="not found"):
        detect_adapter_format(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterFormatError, match="adapter_config.json"):
        detect_adapter_format(tmp_path / "empty")
    no_weights = copy_adapter(peft_adapter[0], tmp_path / "no-weights")
    (no_weights / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterFormatError, match="PEFT adapter but has no adapter_model.safetensors"):
        detect_adapter_format(no_weights)
    mlx_no_weights = tmp_path / "mlx-no-weights"
    mlx_no_weights.mkdir()
    (mlx_no_weights / "adapter_config.json").write_text(json.dumps({"fine_tune_type": "lora", "num_layers": 2}))
    with pytest.raises(AdapterFormatError, match="mlx-lm adapter but has no adapters.safetensors"):
        convert_adapter(mlx_no_weights, tmp_path / "out", to="peft")
    bad_json = copy_adapter(peft_adapter[0], tmp_path / "bad-json")
    (bad_json / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterFormatError, match=r"adapter_config.json is not valid JSON"):
        detect_adapter_format(bad_json)
    unknown = copy_adapter(peft_adapter[0], tmp_path / "unknown")
    (unknown / "adapter_config.json").write_text(json.dumps({"r": 4}))
    with pytest.raises(AdapterFormatError, match="neither 'peft_type'"):
        detect_adapter_format(unknown)
    corrupt = copy_adapter(peft_adapter[0], tmp_path / "corrupt")
    (corrupt / "adapter_model.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(AdapterFormatError, match="adapter_model.safetensors is not a readable safetensors"):
        peft_to_mlx(corrupt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "IA3"}, "PEFT IA3 adapter, not LoRA"),
        ({"rank_pattern": {"q_proj": 8}}, "per-module ranks"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ],
)
def test_peft_adapters_mlx_cannot_express_are_refused(peft_adapter, tmp_path, changes, message):
    folder = copy_adapter(peft_adapter[0], tmp_path / "peft")
    edit_config(folder, **changes)
    with pytest.raises(AdapterFormatError, match=message):
        peft_to_mlx(folder, tmp_path / "out")


def test_mlx_dora_and_full_are_refused(peft_adapter, tmp_path):
    mlx_dir = peft_to_mlx(peft_adapter[0], tmp_path / "mlx")
    for kind, message in (("dora", "DoRA"), ("full", "'full', not a LoRA adapter")):
        edit_config(mlx_dir, fine_tune_type=kind)
        with pytest.raises(AdapterFormatError, match=message):
            mlx_to_peft(mlx_dir, tmp_path / "out")


def test_convert_to_the_same_format_is_refused(peft_adapter, tmp_path):
    with pytest.raises(AdapterFormatError, match="already a peft adapter"):
        convert_adapter(peft_adapter[0], tmp_path / "out", to="peft")
    with pytest.raises(ValueError, match="'mlx' or 'peft'"):
        convert_adapter(peft_adapter[0], tmp_path / "out", to="gguf")  # type: ignore[arg-type]
