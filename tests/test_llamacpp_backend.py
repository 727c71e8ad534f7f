"""The llama.cpp backend on the packaged SmolLM2 GGUF, checked against the torch backend, and the PEFT -> GGUF LoRA
conversion; tests that need llama-cpp-python skip without it, the file checks and the conversion always run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import slmlab
from slmlab import backends
from slmlab.adapters import AdapterFormatError, convert_adapter
from slmlab.backends.llamacpp_backend import check_gguf_model
from slmlab.errors import BackendError, ModelUnavailableError
from slmlab.generation import DecodingConfig
from slmlab.gguf_lora import ADAPTER_GGUF, GgufHeaderError, gguf_lora_for, read_gguf_header
from slmlab.models import REGISTRY, resolve_gguf, resolve_model
from slmlab.models.packaged import packaged_gguf

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three colors.",
    "What is 2+2?",
    "Name a planet in our solar system.",
    "Translate 'cat' to French.",
    "Give me a synonym for happy.",
    "What is Python?",
]
GREEDY = DecodingConfig(max_new_tokens=32)
# One llama.cpp thread: on a small shared machine, after torch has run in the same process, llama.cpp's OpenMP
# spin barriers can slow each decode step a hundredfold; one thread has no barrier.
LLAMA = {"backend": "llamacpp", "n_threads": 1}
LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
LAYERS = 30  # SmolLM2-135M
HEADS, KV_HEADS = 9, 3


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    try:
        return packaged_gguf(REGISTRY[slmlab.DEFAULT_MODEL])
    except ModelUnavailableError as problem:
        pytest.skip(str(problem))


@pytest.fixture(scope="module")
def hf_dir(gguf_path: Path) -> Path:
    return resolve_model(slmlab.DEFAULT_MODEL)


def make_peft(model_dir: Path, out: Path, modules: list[str], spread: float, seed: int = 1) -> Path:
    """A stock PEFT LoRA (r=4, alpha=8) on ``modules`` with random lora_B of standard deviation ``spread``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=modules, lora_dropout=0.0, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * spread)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def peft_adapter(hf_dir: Path, tmp_path_factory) -> Path:
    return make_peft(hf_dir, tmp_path_factory.mktemp("lora") / "peft", LORA_MODULES, spread=0.05)


@pytest.fixture(scope="module")
def llama_cpp():
    return pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'slmlab[llamacpp]')")


@pytest.fixture(scope="module")
def llama(llama_cpp, gguf_path):
    return slmlab.load_model(slmlab.DEFAULT_MODEL, **LLAMA)


@pytest.fixture(scope="module")
def torch_replies(real_torch) -> list[str]:
    return real_torch.generate(PROMPTS, GREEDY)


@pytest.fixture(scope="module")
def llama_replies(llama) -> list[str]:
    return llama.generate(PROMPTS, GREEDY)


def peft_tensors(adapter: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    return {name: tensor.numpy() for name, tensor in load_file(str(adapter / "adapter_model.safetensors")).items()}


def rotary_order(rows: np.ndarray, heads: int) -> np.ndarray:
    """Row i of head h, half j (HF order) goes to row 2*i + j of head h (llama.cpp order), written out by index."""
    size = rows.shape[0] // heads // 2
    out = np.empty_like(rows)
    for head in range(heads):
        for half in range(2):
            for i in range(size):
                out[head * 2 * size + 2 * i + half] = rows[head * 2 * size + half * size + i]
    return out


def agreement(left: list[str], right: list[str]) -> tuple[int, float]:
    """(identical replies, mean fraction of the longer reply that is a common prefix)."""
    prefix = [len(_common_prefix(a, b)) / max(len(a), len(b), 1) for a, b in zip(left, right)]
    return sum(a == b for a, b in zip(left, right)), sum(prefix) / len(prefix)


def _common_prefix(a: str, b: str) -> str:
    size = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return a[:size]


# --- files that are not GGUF models (no llama.cpp needed) -----------------------------------------


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf at all")
    with pytest.raises(BackendError, match=r"weights\.gguf is not a GGUF file"):
        check_gguf_model(fake)
    with pytest.raises(BackendError, match="GGUF file not found"):
        check_gguf_model(tmp_path / "missing.gguf")


def test_a_gguf_without_tensors_or_of_another_type_is_refused(tmp_path, peft_adapter, gguf_path):
    import gguf

    empty = tmp_path / "empty.gguf"
    writer = gguf.GGUFWriter(empty, "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(BackendError, match=r"empty\.gguf is a GGUF file without tensors"):
        check_gguf_model(empty)
    with pytest.raises(BackendError, match=r"adapter\.gguf is a GGUF file of type 'adapter'"):
        check_gguf_model(gguf_lora_for(peft_adapter, gguf_path))


def test_header_reader_matches_gguf_reader(peft_adapter, gguf_path, tmp_path):
    import gguf

    path = gguf_lora_for(peft_adapter, gguf_path)
    header = read_gguf_header(path)
    reader = gguf.GGUFReader(path)
    assert header.tensors == {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    assert header.metadata == {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(GgufHeaderError):
        read_gguf_header(truncated)


def test_backend_listing_and_the_install_message(monkeypatch):
    assert backends.select_backend("auto") != "llamacpp"
    monkeypatch.setattr(backends, "llamacpp_available", lambda: False)
    assert "llamacpp" not in backends.available_backends()
    with pytest.raises(BackendError, match=r"pip install 'slmlab\[llamacpp\]'.*cmake and a C\+\+ compiler"):
        backends.select_backend("llamacpp")
    with pytest.raises(BackendError, match=r"slmlab\[llamacpp\]"):
        slmlab.load_model(slmlab.DEFAULT_MODEL, **LLAMA)


def test_gguf_paths_resolve_only_for_llamacpp(gguf_path, hf_dir, tmp_path):
    with pytest.raises(ModelUnavailableError, match="backend='llamacpp'"):
        resolve_model(str(gguf_path))
    assert resolve_gguf(str(gguf_path)) == (gguf_path.resolve(), None)
    assert resolve_gguf(slmlab.DEFAULT_MODEL) == (gguf_path, hf_dir)
    with pytest.raises(BackendError, match="loads a GGUF file"):
        resolve_gguf(str(tmp_path))
    with pytest.raises(ModelUnavailableError, match="GGUF file not found"):
        resolve_gguf(str(tmp_path / "nope.gguf"))
    with pytest.raises(BackendError, match="not a GGUF file.*smollm2-135m-instruct"):
        resolve_gguf("qwen2.5-0.5b-instruct")


# --- PEFT LoRA -> GGUF LoRA (no llama.cpp needed) --------------------------------------------------


def test_lora_conversion_writes_the_tensors_llama_cpp_expects(peft_adapter, gguf_path):
    import gguf

    path = gguf_lora_for(peft_adapter, gguf_path)
    assert path == peft_adapter / ADAPTER_GGUF
    reader = gguf.GGUFReader(path)
    fields = {key: field.contents() for key, field in reader.fields.items()}
    assert (fields["general.architecture"], fields["general.type"], fields["adapter.type"]) == ("llama", "adapter", "lora")
    assert fields["adapter.lora.alpha"] == 8.0
    names = {
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_down": "mlp.down_proj",
    }
    expected = {f"blk.{layer}.{name}.weight.lora_{half}" for layer in range(LAYERS) for name in names for half in "ab"}
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == expected
    peft = peft_tensors(peft_adapter)
    for layer in (0, 17):
        for name, module in names.items():
            a = peft[f"base_model.model.model.layers.{layer}.{module}.lora_A.weight"]
            b = peft[f"base_model.model.model.layers.{layer}.{module}.lora_B.weight"]
            if name in ("attn_q", "attn_k"):
                b = rotary_order(b, HEADS if name == "attn_q" else KV_HEADS)
            got_a, got_b = tensors[f"blk.{layer}.{name}.weight.lora_a"], tensors[f"blk.{layer}.{name}.weight.lora_b"]
            assert list(got_a.shape) == [a.shape[1], a.shape[0]] and list(got_b.shape) == [b.shape[1], b.shape[0]]
            np.testing.assert_array_equal(np.asarray(got_a.data).reshape(a.shape), a)
            np.testing.assert_array_equal(np.asarray(got_b.data).reshape(b.shape), b)


def test_converted_file_is_cached_and_rebuilt_when_the_adapter_changes(peft_adapter, gguf_path, tmp_path):
    adapter = shutil.copytree(peft_adapter, tmp_path / "copy")
    (adapter / ADAPTER_GGUF).unlink(missing_ok=True)
    first = gguf_lora_for(adapter, gguf_path)
    stamp = first.stat().st_mtime_ns
    assert gguf_lora_for(adapter, gguf_path).stat().st_mtime_ns == stamp
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": True}))
    rebuilt = gguf_lora_for(adapter, gguf_path)
    header = read_gguf_header(rebuilt)
    assert header.metadata["adapter.lora.alpha"] == 8.0  # rsLoRA: alpha/sqrt(r) is folded into lora_b
    import gguf

    b = next(t for t in gguf.GGUFReader(rebuilt).tensors if t.name == "blk.0.attn_v.weight.lora_b")
    original = peft_tensors(adapter)["base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"]
    np.testing.assert_allclose(np.asarray(b.data).reshape(original.shape), original * math.sqrt(4), rtol=1e-6)
    assert not list(adapter.glob(".adapter.gguf.*"))  # written atomically: no temporary file left


def test_conversion_refuses_what_llama_cpp_cannot_apply(peft_adapter, gguf_path, tiny_model_dir, tmp_path):
    mlx = convert_adapter(peft_adapter, tmp_path / "mlx", to="mlx", base_model_dir=resolve_model(slmlab.DEFAULT_MODEL))
    with pytest.raises(AdapterFormatError, match="mlx adapter.*slmlab adapter convert"):
        gguf_lora_for(mlx, gguf_path)
    dora = shutil.copytree(peft_adapter, tmp_path / "dora")
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(AdapterFormatError, match="DoRA"):
        gguf_lora_for(dora, gguf_path)
    other = make_peft(tiny_model_dir, tmp_path / "tiny", ["q_proj"], spread=0.1)
    with pytest.raises(AdapterFormatError, match="does not fit base model.*attn_q"):
        gguf_lora_for(other, gguf_path)


# --- generation (llama-cpp-python needed) ----------------------------------------------------------


def test_greedy_replies_agree_with_torch(llama, llama_replies, torch_replies):
    replies = llama_replies
    identical, prefix = agreement(replies, torch_replies)
    print(f"llama.cpp Q4_1 vs torch fp32 greedy: {identical}/{len(PROMPTS)} identical, mean common prefix {prefix:.2f}")
    assert all(replies)
    assert identical >= 2 and prefix >= 0.25  # Q4_1 with 8-bit activations vs fp32 flips some near-ties
    assert "Paris" in llama.chat("What is the capital of France? Answer in one word.")


def test_chat_template_is_the_one_torch_renders(llama, real_torch):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert llama.render(messages) == real_torch.render(messages)
    assert llama.render("Hi", system="Be brief.") == real_torch.render("Hi", system="Be brief.")
    assert llama.render("plain", chat=False) == "plain"


def test_batched_prompts_equal_one_at_a_time_in_order(llama, gguf_path):
    single = slmlab.load_model(slmlab.DEFAULT_MODEL, parallel=1, **LLAMA)
    config = DecodingConfig(max_new_tokens=16)
    batched = llama.generate(PROMPTS[:6], config)
    assert batched == single.generate(PROMPTS[:6], config)
    assert llama.generate(PROMPTS[:6][::-1], config) == batched[::-1]
    stats = llama.last_generation_stats
    assert stats["prompts"] == 6 and 0 < stats["new_tokens"] <= stats["token_slots"] <= 6 * 16 and stats["seconds"] > 0


def test_sampling_is_seeded_and_filters_apply(llama):
    sample = DecodingConfig(strategy="sample", temperature=1.0, top_k=40, top_p=0.9, max_new_tokens=16, seed=3)
    first = llama.generate(PROMPTS[:3], sample)
    assert first == llama.generate(PROMPTS[:3], sample)
    assert first != llama.generate(PROMPTS[:3], sample.with_(seed=4))
    greedy = llama.generate(PROMPTS[:2], DecodingConfig(max_new_tokens=16))
    assert llama.generate(PROMPTS[:2], sample.with_(top_k=1)) == greedy
    assert llama.generate(PROMPTS[:2], sample.with_(top_k=0, top_p=1e-6)) == greedy


def test_model_facts(llama):
    assert llama.backend == "llamacpp" and llama.device == "cpu"
    assert llama.context_length() == 2048
    assert 130e6 < llama.num_parameters() < 140e6
    reply = llama.generate_ids(["Count from one to twenty."], DecodingConfig(max_new_tokens=5))[0]
    assert len(reply) == 5 and llama.hf_tokenizer.eos_token_id not in reply


def test_any_gguf_by_path_with_its_own_tokenizer(llama, gguf_path):
    by_path = slmlab.load_model(str(gguf_path), **LLAMA)
    assert by_path.render("Hi") == llama.render("Hi")
    config = DecodingConfig(max_new_tokens=16)
    assert by_path.generate(PROMPTS[:2], config) == llama.generate(PROMPTS[:2], config)


def test_adapter_end_to_end_agrees_with_torch(llama_replies, peft_adapter, torch_replies):
    adapted = slmlab.load_model(slmlab.DEFAULT_MODEL, adapter=str(peft_adapter), **LLAMA)
    assert adapted.adapter_file == peft_adapter / ADAPTER_GGUF
    adapted_torch = slmlab.load_model(slmlab.DEFAULT_MODEL, backend="torch", adapter=str(peft_adapter))
    replies, reference = adapted.generate(PROMPTS, GREEDY), adapted_torch.generate(PROMPTS, GREEDY)
    identical, prefix = agreement(replies, reference)
    changed = sum(a != b for a, b in zip(reference, torch_replies))
    print(
        f"with the adapter: {identical}/{len(PROMPTS)} identical, mean common prefix {prefix:.2f}; "
        f"the adapter changes {changed} torch replies"
    )
    assert changed >= 2 and all(replies)
    assert identical >= 2 and prefix >= 0.25
    assert replies != llama_replies


def test_bad_model_files_through_load_model(llama_cpp, tmp_path, peft_adapter, gguf_path):
    fake = tmp_path / "fake.gguf"
    fake.write_text("hello")
    with pytest.raises(BackendError, match=r"fake\.gguf is not a GGUF file"):
        slmlab.load_model(str(fake), **LLAMA)
    lora = gguf_lora_for(peft_adapter, gguf_path)
    with pytest.raises(BackendError, match="type 'adapter'"):
        slmlab.load_model(str(lora), **LLAMA, tokenizer_dir=resolve_model(slmlab.DEFAULT_MODEL))


def test_a_tokenizer_that_does_not_match_the_gguf_is_refused(llama_cpp, gguf_path, hf_dir, tiny_model_dir, tmp_path):
    with pytest.raises(BackendError, match="vocabulary sizes differ"):
        slmlab.load_model(str(gguf_path), **LLAMA, tokenizer_dir=tiny_model_dir)
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for file in hf_dir.iterdir():
        if file.is_file() and file.suffix != ".safetensors":
            shutil.copy(file, swapped / file.name)
    spec = json.loads((swapped / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["Hello"], vocab["def"] = vocab["def"], vocab["Hello"]  # same size, two ids exchanged
    (swapped / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(BackendError, match="probe text gets different token ids"):
        slmlab.load_model(str(gguf_path), **LLAMA, tokenizer_dir=swapped)
