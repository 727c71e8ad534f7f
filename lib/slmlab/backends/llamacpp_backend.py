"""The llama.cpp backend: a GGUF model (quantized as shipped) through llama-cpp-python's low-level API, on CPU.

Prompts are rendered and tokenized by the Hugging Face tokenizer (chat template included) and fed as ids;
several prompts decode together as separate sequences of one llama.cpp batch.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from slmlab.backends.base import LanguageModel
from slmlab.errors import BackendError
from slmlab.generation import DecodingConfig
from slmlab.gguf_lora import GGUF_MAGIC, GgufHeaderError, gguf_lora_for, read_gguf_header

INSTALL_HINT = (
    "The llamacpp backend needs llama-cpp-python: pip install 'slmlab[llamacpp]' (it builds llama.cpp from source, "
    "about 6-10 minutes, and needs cmake and a C++ compiler)."
)
# A probe with code, digits, spacing and non-ASCII text; chat-template markers are added around it.
TOKENIZER_PROBE = "Hello, wörld! def add(a, b):\n    return a + b  # 1234 ≥ 56.7 — naïve café 日本語"


def check_gguf_model(path: str | Path) -> dict:
    """Raise BackendError naming ``path`` unless it is a GGUF model file; return its scalar metadata."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"GGUF file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise BackendError(f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}).")
    try:
        header = read_gguf_header(path)
    except GgufHeaderError as exc:
        raise BackendError(f"{path} is a damaged GGUF file: {exc}.") from exc
    kind = header.metadata.get("general.type", "model")
    if kind != "model":
        hint = " (a LoRA adapter: pass it as adapter=... beside its base model)" if kind == "adapter" else ""
        raise BackendError(f"{path} is a GGUF file of type '{kind}'{hint}, not a model.")
    if not header.tensors:
        raise BackendError(f"{path} is a GGUF file without tensors (a vocabulary-only file?), not a model.")
    return header.metadata


def physical_cores() -> int:
    """Physical CPU cores (llama.cpp gains nothing from hyper-threads)."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@functools.lru_cache(maxsize=None)
def _llama_cpp():
    """llama_cpp's low-level module, with the backend initialised once and C logging limited to errors."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise BackendError(INSTALL_HINT) from exc
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # the logger its C log callback reports to
    llama_cpp.llama_backend_init()
    return llama_cpp


@dataclass(repr=False)
class LlamaCppModel(LanguageModel):
    """A llama.cpp model and context, with the Hugging Face tokenizer that renders and tokenizes prompts.

    Batching: up to ``parallel`` prompts decode at once as separate sequence ids of one ``llama_batch`` (each
    prompt is prefilled into its own sequence, then every step feeds one token per unfinished sequence), with
    one KV-cache stream per sequence, so a reply is the same as when its prompt runs alone. Each sequence holds
    up to ``n_ctx`` tokens. Greedy is the argmax of llama.cpp's logits; sampling (temperature, then top-k, then
    top-p, as in transformers; no min-p, no repeat penalty) uses a NumPy generator seeded from ``config.seed``.
    """

    n_ctx: int = 0
    parallel: int = 1
    n_batch: int = 512
    adapter_file: Path | None = None
    context: object = field(default=None, repr=False)
    rng: np.random.Generator = field(default_factory=np.random.default_rng, repr=False)
    last_generation_stats: dict = field(default_factory=lambda: _empty_stats(), repr=False)

    @classmethod
    def load(
        cls,
        path: Path,
        label: str | None = None,
        device: str | None = None,
        tokenizer_dir: str | Path | None = None,
        adapter: str | Path | None = None,
        n_ctx: int = 2048,
        parallel: int = 4,
        n_threads: int | None = None,
        extra_buffers: bool = False,
    ) -> LlamaCppModel:
        """Load the GGUF model ``path``; the tokenizer comes from ``tokenizer_dir`` or else from the GGUF itself.

        ``adapter``: a PEFT LoRA folder (converted once to ``adapter.gguf`` inside it) or a GGUF LoRA file.
        ``n_ctx``: tokens per prompt and reply (capped at the model's training context); ``parallel``: prompts
        decoded together; ``n_threads``: default the physical core count. ``extra_buffers`` lets llama.cpp
        repack weights into CPU-specific layouts (AMX, interleaved Q4_0); off because a native build then runs AMX
        tile instructions that fault inside virtual machines which report AMX but do not enable it.
        """
        llama_cpp = _llama_cpp()
        if device not in (None, "cpu", "gpu"):
            raise BackendError(f"The llamacpp backend runs on 'cpu' or 'gpu', not '{device}'.")
        if device == "gpu" and not llama_cpp.llama_supports_gpu_offload():
            raise BackendError("This llama-cpp-python build has no GPU support; use device='cpu'.")
        start = time.perf_counter()
        path = Path(path)
        metadata = check_gguf_model(path)
        tokenizer = _hf_tokenizer(path, tokenizer_dir)
        model = _load_llama_model(llama_cpp, path, gpu=device == "gpu", extra_buffers=extra_buffers)
        n_ctx = min(n_ctx, int(metadata.get(f"{metadata.get('general.architecture')}.context_length", n_ctx)))
        context = _new_context(llama_cpp, model, n_ctx, parallel, n_threads or physical_cores())
        instance = cls(
            name=label or path.stem,
            path=path,
            backend="llamacpp",
            device=device or "cpu",
            model=model,
            tokenizer=tokenizer,
            n_ctx=n_ctx,
            parallel=parallel,
            n_batch=llama_cpp.llama_n_batch(context),
            context=context,
        )
        weakref.finalize(instance, _free, llama_cpp, context, model)
        _check_tokenizer(instance, tokenizer_dir or path)
        if adapter is not None:
            instance.adapter_file = _apply_adapter(instance, Path(adapter))
        instance.load_seconds = time.perf_counter() - start
        return instance

    # --- LanguageModel ------------------------------------------------------------------------
    def num_parameters(self) -> int:
        return int(_llama_cpp().llama_model_n_params(self.model))

    def _seed(self, seed: int) -> None:
        """Called once at the start of every generate call: seed the sampler and start fresh statistics."""
        self.rng = np.random.default_rng(seed)
        self.last_generation_stats = _empty_stats()

    def context_length(self) -> int:
        return self.n_ctx

    def _generate_ids(self, texts: list[str], config: DecodingConfig) -> list[list[int]]:
        start = time.perf_counter()
        prompts = [self.hf_tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        replies: list[list[int]] = []
        for first in range(0, len(prompts), self.parallel):
            replies += self._decode_together(prompts[first : first + self.parallel], config)
        stats = self.last_generation_stats
        stats["new_tokens"] += sum(len(reply) for reply in replies)
        stats["prompts"] += len(prompts)
        stats["seconds"] += time.perf_counter() - start
        return replies

    # --- decoding -----------------------------------------------------------------------------
    @property
    def eos_token_id(self) -> int:
        eos = self.hf_tokenizer.eos_token_id
        return int(eos) if eos is not None else int(_llama_cpp().llama_vocab_eos(self.vocab))

    @property
    def vocab(self):
        return _llama_cpp().llama_model_get_vocab(self.model)

    def _decode_together(self, prompts: list[list[int]], config: DecodingConfig) -> list[list[int]]:
        """Generate for up to ``parallel`` tokenized prompts, one sequence id each, sharing every decode step."""
        llama_cpp = _llama_cpp()
        for ids in prompts:
            if not ids:
                raise BackendError("An empty prompt has no token to continue from; the llamacpp backend needs one.")
            if len(ids) + config.max_new_tokens > self.n_ctx:
                raise BackendError(
                    f"A prompt of {len(ids)} tokens plus max_new_tokens={config.max_new_tokens} does not fit the "
                    f"llamacpp context of {self.n_ctx} tokens; load the model with a larger n_ctx."
                )
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.context), True)
        logits = {seq: self._prefill(seq, ids) for seq, ids in enumerate(prompts)}
        positions = {seq: len(ids) for seq, ids in enumerate(prompts)}
        replies: list[list[int]] = [[] for _ in prompts]
        eos = self.eos_token_id
        slots = 0
        while logits:
            slots += len(logits)
            step: dict[int, int] = {}
            for seq, row in logits.items():
                token = self._pick(row, config)
                if token == eos:
                    continue
                replies[seq].append(token)
                if len(replies[seq]) < config.max_new_tokens:
                    step[seq] = token
            logits = self._step(step, positions) if step else {}
        self.last_generation_stats["token_slots"] += slots
        return replies

    def _prefill(self, seq: int, ids: list[int]) -> np.ndarray:
        """Feed a prompt into sequence ``seq`` in chunks of ``n_batch``; return the logits after its last token."""
        rows = [(token, position, seq, position == len(ids) - 1) for position, token in enumerate(ids)]
        for first in range(0, len(rows), self.n_batch):
            chunk = rows[first : first + self.n_batch]
            self._decode(chunk)
        return self._logits(len(chunk) - 1)

    def _step(self, tokens: dict[int, int], positions: dict[int, int]) -> dict[int, np.ndarray]:
        """One decode step: the next token of every sequence in ``tokens``; their new logits by sequence."""
        rows = [(token, positions[seq], seq, True) for seq, token in tokens.items()]
        self._decode(rows)
        for seq in tokens:
            positions[seq] += 1
        return {seq: self._logits(index) for index, seq in enumerate(tokens)}

    def _decode(self, rows: list[tuple[int, int, int, bool]]) -> None:
        """llama_decode one batch of ``(token, position, sequence id, wants logits)`` rows."""
        llama_cpp = _llama_cpp()
        batch = llama_cpp.llama_batch_init(len(rows), 0, 1)
        try:
            for i, (token, position, seq, wants_logits) in enumerate(rows):
                batch.token[i] = token
                batch.pos[i] = position
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = wants_logits
            batch.n_tokens = len(rows)
            status = llama_cpp.llama_decode(self.context, batch)
        finally:
            llama_cpp.llama_batch_free(batch)
        if status != 0:
            raise BackendError(f"llama.cpp could not decode a batch of {len(rows)} tokens (llama_decode returned {status}).")

    def _logits(self, index: int) -> np.ndarray:
        llama_cpp = _llama_cpp()
        pointer = llama_cpp.llama_get_logits_ith(self.context, index)
        return np.ctypeslib.as_array(pointer, shape=(llama_cpp.llama_vocab_n_tokens(self.vocab),)).copy()

    def _pick(self, logits: np.ndarray, config: DecodingConfig) -> int:
        """Greedy argmax, or a sample after temperature, top-k (0 = off) and top-p (1 = off), as in transformers."""
        if config.strategy == "greedy":
            return int(np.argmax(logits))
        scores = logits.astype(np.float64) / config.temperature
        if 0 < config.top_k < scores.size:
            scores[scores < np.partition(scores, -config.top_k)[-config.top_k]] = -np.inf
        probs = np.exp(scores - scores.max())
        probs /= probs.sum()
        if config.top_p < 1:
            order = np.argsort(-probs, kind="stable")
            before = np.cumsum(probs[order]) - probs[order]  # mass of the more likely tokens
            probs[order[before >= config.top_p]] = 0.0  # the most likely token always stays (before = 0)
            probs /= probs.sum()
        cumulative = np.cumsum(probs)
        return int(min(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"), probs.size - 1))


# --- loading helpers ---------------------------------------------------------------------------------


def _empty_stats() -> dict:
    """``last_generation_stats`` before any batch: generated ids, rows x steps computed, prompts, seconds."""
    return {"new_tokens": 0, "token_slots": 0, "prompts": 0, "seconds": 0.0}


def _hf_tokenizer(path: Path, tokenizer_dir: str | Path | None):
    from transformers import AutoTokenizer

    if tokenizer_dir is not None:
        return AutoTokenizer.from_pretrained(tokenizer_dir)
    try:
        return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as exc:  # transformers raises ValueError/KeyError/NotImplementedError for GGUFs it cannot read
        raise BackendError(
            f"transformers cannot build a tokenizer from {path} ({exc}); pass tokenizer_dir= a Hugging Face folder "
            "with the model's tokenizer."
        ) from exc


def _load_llama_model(llama_cpp, path: Path, gpu: bool, extra_buffers: bool):
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = -1 if gpu else 0
    params.use_extra_bufts = extra_buffers
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise BackendError(f"llama.cpp could not load {path} (an architecture this llama.cpp build does not know?).")
    return model


def _new_context(llama_cpp, model, n_ctx: int, parallel: int, n_threads: int):
    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = parallel
    params.n_ctx = n_ctx * parallel
    params.kv_unified = False  # one KV stream per sequence: batched replies equal one-at-a-time replies
    params.n_batch = params.n_ubatch = min(512, n_ctx)
    params.n_threads = params.n_threads_batch = n_threads
    context = llama_cpp.llama_init_from_model(model, params)
    if not context:
        llama_cpp.llama_model_free(model)
        raise BackendError(f"llama.cpp could not create a context of {parallel} x {n_ctx} tokens (out of memory?).")
    return context


def _free(llama_cpp, context, model) -> None:
    llama_cpp.llama_free(context)
    llama_cpp.llama_model_free(model)


def _llama_ids(model: LlamaCppModel, text: str) -> list[int]:
    """llama.cpp's own tokenization of ``text`` (special tokens parsed, none added)."""
    llama_cpp = _llama_cpp()
    data = text.encode()
    capacity = len(data) + 16
    tokens = (llama_cpp.llama_token * capacity)()
    count = llama_cpp.llama_tokenize(model.vocab, data, len(data), tokens, capacity, False, True)
    return list(tokens[:count])


def _check_tokenizer(model: LlamaCppModel, source: str | Path) -> None:
    """Raise BackendError unless the HF tokenizer has the GGUF's vocabulary size and splits a probe text the same."""
    gguf_size = int(_llama_cpp().llama_vocab_n_tokens(model.vocab))
    hf_size = len(model.hf_tokenizer)
    if hf_size != gguf_size:
        raise BackendError(
            f"The tokenizer from {source} does not match {model.path}: vocabulary sizes differ "
            f"({hf_size} in the tokenizer, {gguf_size} in the GGUF)."
        )
    probe = model.render(TOKENIZER_PROBE) if getattr(model.hf_tokenizer, "chat_template", None) else TOKENIZER_PROBE
    hf_ids = model.hf_tokenizer(probe, add_special_tokens=False)["input_ids"]
    gguf_ids = _llama_ids(model, probe)
    if hf_ids != gguf_ids:
        at = next((i for i, (a, b) in enumerate(zip(hf_ids, gguf_ids)) if a != b), min(len(hf_ids), len(gguf_ids)))
        raise BackendError(
            f"The tokenizer from {source} does not match {model.path}: a probe text gets different token ids "
            f"(first difference at position {at}: {hf_ids[at : at + 4]} vs llama.cpp's {gguf_ids[at : at + 4]})."
        )


def _apply_adapter(model: LlamaCppModel, adapter: Path) -> Path:
    """Attach a LoRA adapter: a PEFT folder (converted once to ``adapter.gguf`` beside it) or a GGUF LoRA file."""
    llama_cpp = _llama_cpp()
    lora_file = adapter if adapter.is_file() else gguf_lora_for(adapter, model.path)
    handle = llama_cpp.llama_adapter_lora_init(model.model, str(lora_file).encode())
    if not handle:
        raise BackendError(f"llama.cpp could not load the LoRA file {lora_file} for {model.path}.")
    if hasattr(llama_cpp, "llama_set_adapters_lora"):
        status = llama_cpp.llama_set_adapters_lora(
            model.context, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle), 1, (ctypes.c_float * 1)(1.0)
        )
    else:  # llama-cpp-python before the plural API
        status = llama_cpp.llama_set_adapter_lora(model.context, handle, 1.0)
    if status != 0:
        raise BackendError(f"llama.cpp could not apply the LoRA file {lora_file} to {model.path}.")
    return lora_file
