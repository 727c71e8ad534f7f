"""Serve a macro-action controller over HTTP: ``POST /generate`` and ``GET /health`` (``slmlab serve``).

The server knows controllers only through the :class:`~slmlab.mcts.macro.Controller` protocol, so the
fixed-policy :class:`ScriptedController` here and the MCTS controller of chapter 06
(:class:`slmlab.mcts.controller.MCTSController`) are interchangeable.

Thought spans are hidden reasoning. They never leave a controller: a :class:`~slmlab.mcts.macro.ControllerResult`
carries the visible text only, and its trace shows each thought step with
:data:`~slmlab.mcts.macro.THOUGHT_PLACEHOLDER` instead of its text (trace steps are built with
:func:`~slmlab.mcts.macro.trace_step`; the server redacts thought steps once more on the way out).
Log lines carry lengths, counts and timings — never a prompt, a thought or a model context.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoint's annotations at run time, and
# the request model is a class built inside create_app (its budget limit is a parameter).

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from slmlab.errors import SlmLabError
from slmlab.generation import DecodingConfig
from slmlab.mcts.macro import Controller, ControllerResult, Macro, MacroState, Span, redact_trace, trace_step
from slmlab.mcts.spec import BUDGET, MAX_BUDGET, SPAN_TOKENS
from slmlab.mcts.spec import CONTROLLERS as CONTROLLER_NAMES

logger = logging.getLogger("slmlab.serve")

MAX_PROMPT_CHARS = 4000
DEFAULT_BUDGET = BUDGET  # a request's budget when it names none (or max_budget, when that is smaller)
THINK_CUE = "Let's think step by step."
ANSWER_CUE = "\n\nAnswer:"


class ControllerError(SlmLabError):
    """A controller that could not produce an answer (for example, the model ended every attempt at once)."""


# --- results ---------------------------------------------------------------------------------------------
def result_from_state(state: MacroState, trace: list[dict], total_ms: float) -> ControllerResult:
    """The shareable result of a finished episode (visible text stripped of surrounding space)."""
    thought = sum(len(span) for span in state.spans if span.thought)
    return ControllerResult(
        visible_text=state.visible_text.strip(),
        macro_trace=trace,
        tokens=state.tokens_used,
        thought_tokens=thought,
        total_ms=round(total_ms, 2),
    )


# --- a fixed-policy controller ----------------------------------------------------------------------------
class ScriptedController:
    """A fixed policy: THINK_BEGIN → CONTINUE (one short hidden thought) → THINK_END → CONTINUE … → STOP.

    The thought continues the assistant turn after :data:`THINK_CUE`; the visible answer follows the thought
    and :data:`ANSWER_CUE` in the same context (or the bare prompt when there is no thought), one span of
    ``span_tokens`` at a time, until the model ends its reply or the budget is spent. Every action goes
    through :class:`MacroState`, so the trace obeys the macro rules. It never resamples; it is the baseline
    the MCTS controller has to beat.
    """

    def __init__(
        self,
        model,
        span_tokens: int = SPAN_TOKENS,
        think_first: bool = True,
        thought_tokens: int | None = None,
        temperature: float = 0.7,
        retries: int = 3,
    ) -> None:
        if span_tokens < 1 or (thought_tokens is not None and thought_tokens < 1) or retries < 0 or temperature < 0:
            raise ValueError("span_tokens and thought_tokens must be >= 1, retries and temperature >= 0")
        self.model = model
        self.span_tokens = span_tokens
        self.think_first = think_first
        self.thought_tokens = thought_tokens or span_tokens
        self.temperature = temperature
        self.retries = retries

    def describe(self) -> dict:
        """Controller, model and settings, for ``GET /health``."""
        return {
            "controller": "scripted",
            "model": self.model.name,
            "backend": self.model.backend,
            "device": self.model.device,
            "span_tokens": self.span_tokens,
            "think_first": self.think_first,
        }

    def run(self, prompt: str, budget: int, seed: int) -> ControllerResult:
        start = time.perf_counter()
        episode = _Episode(MacroState(budget=budget), seed)
        rendered = self.model.render(prompt)
        if self.think_first and budget >= 2:  # a thought needs a token and must leave one for the answer
            self._think(episode, rendered + THINK_CUE, min(self.thought_tokens, budget - 1))
        thought_held = episode.state.tokens_used > 0  # only the thought has used tokens so far
        answer_context = rendered + THINK_CUE + episode.state.thought_text + ANSWER_CUE if thought_held else rendered
        while episode.state.tokens_left > 0:
            size = min(self.span_tokens, episode.state.tokens_left)
            draw = self._draw(episode, answer_context + episode.state.visible_text, size, thought=False)
            if draw.ids:
                episode.apply(Macro.CONTINUE, self._span(episode, draw, thought=False), draw.ms)
            if len(draw.ids) < size and episode.state.why_illegal(Macro.STOP) is None:
                break  # the model ended its reply
        episode.apply(Macro.STOP)
        return result_from_state(episode.state, episode.trace, (time.perf_counter() - start) * 1000)

    def _think(self, episode: "_Episode", base: str, size: int) -> None:
        draw = self._draw(episode, base, size, thought=True)
        if not draw.ids:  # the model would not think: answer without a thought (an empty thought cannot close)
            return
        episode.apply(Macro.THINK_BEGIN)
        episode.apply(Macro.CONTINUE, self._span(episode, draw, thought=True), draw.ms)
        episode.apply(Macro.THINK_END)

    def _draw(self, episode: "_Episode", context: str, size: int, thought: bool) -> "_Draw":
        """Up to ``size`` new ids for ``context``. When an answer comes back empty while there is no visible
        text yet, retry by sampling under other seeds (a greedy retry would end the same way); a thought
        that comes back empty is simply left out."""
        must_produce = not thought and episode.state.why_illegal(Macro.STOP) is not None
        start = time.perf_counter()
        for attempt in range(1 + (self.retries if must_produce else 0)):
            temperature = self.temperature if attempt == 0 else max(self.temperature, 1.0)
            seed = episode.next_seed()
            ids = self.model.generate_ids([context], _decoding(size, temperature, seed), chat=False)[0]
            if ids:
                break
        if not ids and must_produce:
            raise ControllerError(f"The model ended its reply at once {1 + self.retries} times: no answer to give.")
        return _Draw(list(ids), seed, temperature, (time.perf_counter() - start) * 1000)

    def _span(self, episode: "_Episode", draw: "_Draw", thought: bool) -> Span:
        before = [i for span in episode.state.spans if span.thought == thought for i in span.token_ids]
        text = _new_text(self.model.hf_tokenizer, before, draw.ids)
        return Span(text, tuple(draw.ids), thought=thought, seed=draw.seed, temperature=draw.temperature)


@dataclass(frozen=True)
class _Draw:
    """One generate call's new ids and how they were drawn."""

    ids: list[int]
    seed: int
    temperature: float
    ms: float


@dataclass
class _Episode:
    """The state and trace of one run, and how many seeds it has handed out."""

    state: MacroState
    seed: int
    trace: list[dict] = field(default_factory=list)
    calls: int = 0

    def next_seed(self) -> int:
        # every generate call gets its own seed, so retries differ and a run is reproducible from its seed
        self.calls += 1
        return self.seed + self.calls - 1

    def apply(self, action: Macro, span: Span | None = None, ms: float = 0.0) -> None:
        self.state = self.state.apply(action, span)
        self.trace.append(trace_step(action, span, ms))


def _decoding(size: int, temperature: float, seed: int) -> DecodingConfig:
    if temperature == 0:
        return DecodingConfig(strategy="greedy", max_new_tokens=size, seed=seed, batch_size=1)
    return DecodingConfig(strategy="sample", max_new_tokens=size, temperature=temperature, seed=seed, batch_size=1)


def _new_text(tokenizer, before: Sequence[int], new: Sequence[int]) -> str:
    """The text ``new`` adds after ``before``. Decoding the ids together keeps the leading spaces and
    multi-byte characters that decoding a span on its own can lose."""
    head = tokenizer.decode(list(before), skip_special_tokens=True)
    whole = tokenizer.decode(list(before) + list(new), skip_special_tokens=True)
    return whole[len(head) :] if whole.startswith(head) else tokenizer.decode(list(new), skip_special_tokens=True)


def _mcts_controller(model, **options) -> Controller:
    from slmlab.mcts.controller import MCTSController  # lazy: it loads torch, which the scripted controller does without

    return MCTSController(model, **options)


CONTROLLERS: dict[str, Callable[..., Controller]] = dict(
    zip(CONTROLLER_NAMES, (ScriptedController, _mcts_controller), strict=True)
)
"""Controller name (:data:`slmlab.mcts.spec.CONTROLLERS`) → ``factory(model)``; ``slmlab serve --controller`` offers
these names."""


# --- the HTTP app ----------------------------------------------------------------------------------------
class GenerateResponse(BaseModel):
    text: str
    macro_trace: list[dict]
    tokens: int
    thought_tokens: int
    latency_ms: float


def _request_model(max_budget: int) -> type[BaseModel]:
    class GenerateRequest(BaseModel):
        """What ``POST /generate`` accepts; strict types and no unknown fields, so typos fail loudly."""

        model_config = ConfigDict(strict=True, extra="forbid")

        prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="the user's question")
        budget: int = Field(min(DEFAULT_BUDGET, max_budget), ge=1, le=max_budget, description="token budget")
        seed: int = Field(0, ge=0, lt=2**32)

        @field_validator("prompt")
        @classmethod
        def _not_blank(cls, prompt: str) -> str:
            if not prompt.strip():
                raise ValueError("the prompt is only whitespace")
            return prompt

    return GenerateRequest


class _Lazy:
    """Creates the controller once, on first use, and runs one episode at a time (one model, global seeds)."""

    def __init__(self, factory: Callable[[], Controller]) -> None:
        self._factory = factory
        self._controller: Controller | None = None
        self._create_lock = threading.Lock()
        self.run_lock = threading.Lock()

    def get(self) -> Controller:
        with self._create_lock:
            if self._controller is None:
                controller = self._factory()
                if not isinstance(controller, Controller):
                    raise TypeError(f"the controller factory returned {type(controller).__name__}, which has no run()")
                self._controller = controller
            return self._controller


def _field(loc: Sequence) -> str:
    """``('body', 'budget')`` → ``budget``; a body that is missing or not JSON → ``body``."""
    parts = loc[1:] if loc and loc[0] == "body" else loc
    return ".".join(str(part) for part in parts if isinstance(part, str)) or "body"


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field; the rejected input is not echoed back (it may be a 4000-character prompt)."""
    errors = [{"field": _field(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    logger.info("rejected %s: bad %s", request.url.path, ", ".join(sorted({e["field"] for e in errors})))
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return JSONResponse(status_code=422, content={"detail": detail, "errors": errors})


def create_app(controller_factory: Callable[[], Controller], max_budget: int = MAX_BUDGET) -> FastAPI:
    """The HTTP app. ``controller_factory`` is called once, on the first request, so building the app is cheap."""
    if max_budget < 1:
        raise ValueError(f"max_budget must be >= 1, got {max_budget}")
    GenerateRequest = _request_model(max_budget)
    holder = _Lazy(controller_factory)
    app = FastAPI(title="SLM Lab macro-action controller", version="0.1.0")
    app.add_exception_handler(RequestValidationError, _invalid_request)

    def _controller_or_503() -> Controller | JSONResponse:
        try:
            return holder.get()
        except SlmLabError as problem:
            logger.error("controller unavailable: %s", problem)
            return JSONResponse(status_code=503, content={"detail": f"controller unavailable: {problem}"})

    @app.post("/generate", response_model=GenerateResponse)
    def generate(request: GenerateRequest):  # sync: runs in the thread pool, off the event loop
        start = time.perf_counter()
        controller = _controller_or_503()
        if isinstance(controller, JSONResponse):
            return controller
        try:
            with holder.run_lock:
                result = controller.run(request.prompt, request.budget, request.seed)
        except SlmLabError as problem:
            logger.error(
                "generate failed: %s (prompt_chars=%d budget=%d)", type(problem).__name__, len(request.prompt), request.budget
            )
            return JSONResponse(status_code=500, content={"detail": f"generation failed: {problem}"})
        latency = (time.perf_counter() - start) * 1000
        logger.info(
            "generate prompt_chars=%d budget=%d seed=%d tokens=%d thought_tokens=%d steps=%d latency_ms=%.0f",
            len(request.prompt),
            request.budget,
            request.seed,
            result.tokens,
            result.thought_tokens,
            len(result.macro_trace),
            latency,
        )
        return GenerateResponse(
            text=result.visible_text,
            macro_trace=redact_trace(result.macro_trace),
            tokens=result.tokens,
            thought_tokens=result.thought_tokens,
            latency_ms=round(latency, 1),
        )

    @app.get("/health")
    def health():
        controller = _controller_or_503()
        if isinstance(controller, JSONResponse):
            return controller
        info = controller.describe() if callable(getattr(controller, "describe", None)) else {}
        return {"status": "ok", "controller": type(controller).__name__, **info, "max_budget": max_budget}

    return app
