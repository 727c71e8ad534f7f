"""Chapter 06 serving: a real uvicorn server on localhost, the scripted controller on the tiny random model,
fake controllers whose thoughts carry a secret marker that must never reach a response or a log record."""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from slmlab import DEFAULT_MODEL
from slmlab.errors import ModelUnavailableError
from slmlab.mcts.cli import CONTROLLER_NAMES, add_mcts_commands
from slmlab.mcts.macro import THOUGHT_PLACEHOLDER, ControllerResult, Macro, MacroState, Span, trace_step
from slmlab.mcts.serve import CONTROLLERS, ControllerError, ScriptedController, create_app

SECRET = "SECRET-THOUGHT-q7Zk"
VISIBLE = "VISIBLE-ANSWER-x3Pw"
PROMPT_MARKER = "PROMPT-MARKER-m9Jd"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "slmlab", "httpx", "httpcore")


# --- fixtures: log capture, a real server, controllers ---------------------------------------------------
class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        """Every record formatted, tracebacks included: what any log handler could have written."""
        return "\n".join(self.format(record) for record in self.records)


@pytest.fixture(scope="module")
def logs():
    """Every log record of the module (servers and client), from every level."""
    handler, root = Records(), logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in (*LOGGERS, "")}
    root.addHandler(handler)
    for name in (*LOGGERS, ""):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def serving(app):
    """Run ``app`` under uvicorn on a free localhost port in a thread; yield an httpx client for it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the server takes the bound socket: no race for the port
    config = uvicorn.Config(app, log_config=None, log_level="debug", lifespan="on")  # propagate to our handler
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        host, port = sock.getsockname()
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


class SpyModel:
    """The tiny model, recording every prompt and reply of generate_ids (to find the hidden thought)."""

    def __init__(self, model) -> None:
        self._model = model
        self.calls: list[tuple[str, list[int]]] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def generate_ids(self, prompts, config=None, **options):
        replies = self._model.generate_ids(prompts, config, **options)
        self.calls.append((prompts[0], replies[0]))
        return replies


class FakeController:
    """Thinks the secret, answers VISIBLE, and hands back its trace *unredacted* (a careless controller)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.runs = 0

    def run(self, prompt: str, budget: int, seed: int) -> ControllerResult:
        self.runs += 1
        if self.fail:
            raise ControllerError("the model ended its reply at once")
        thought = Span(f"I secretly think {SECRET}", (1, 2), thought=True)
        answer = Span(f"{VISIBLE} seed={seed}", (3,))
        state = MacroState(budget=budget).apply(Macro.THINK_BEGIN).apply(Macro.CONTINUE, thought)
        state = state.apply(Macro.THINK_END).apply(Macro.CONTINUE, answer).apply(Macro.STOP)
        trace = [
            {"action": "think_begin", "tokens": 0, "ms": 0.0},
            {"action": "continue", "tokens": 2, "ms": 1.0, "thought": True, "text": thought.text},
            {"action": "think_end", "tokens": 0, "ms": 0.0},
            {"action": "continue", "tokens": 1, "ms": 1.0, "thought": False, "text": answer.text},
            {"action": "stop", "tokens": 0, "ms": 0.0},
        ]
        return ControllerResult(state.visible_text, trace, state.tokens_used, 2, 2.0)


@pytest.fixture(scope="module")
def spy(tiny_torch):
    return SpyModel(tiny_torch)


@pytest.fixture(scope="module")
def scripted(logs, spy):
    app = create_app(lambda: ScriptedController(spy, span_tokens=4, thought_tokens=6), max_budget=32)
    with serving(app) as client:
        yield client


@pytest.fixture(scope="module")
def fake(logs):
    controller = FakeController()
    with serving(create_app(lambda: controller, max_budget=100)) as client:
        client.controller = controller
        yield client


def replay(trace: list[dict], budget: int) -> MacroState:
    """Apply the trace's actions to a fresh state (spans of the traced sizes): raises on any illegal step."""
    state = MacroState(budget=budget)
    for step in trace:
        span = Span("x", (0,) * step["tokens"], thought=step["thought"]) if "text" in step else None
        state = state.apply(step["action"], span)
    return state


# --- the scripted controller behind the server -----------------------------------------------------------
def test_generate_thinks_then_answers_by_the_macro_rules(scripted):
    response = scripted.post("/generate", json={"prompt": "What is the capital of France?", "budget": 14, "seed": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"text", "macro_trace", "tokens", "thought_tokens", "latency_ms"}
    trace = body["macro_trace"]
    assert [step["action"] for step in trace[:3]] == ["think_begin", "continue", "think_end"]
    assert trace[1]["thought"] is True and trace[1]["text"] == THOUGHT_PLACEHOLDER and trace[1]["tokens"] == 6
    assert trace[-1]["action"] == "stop" and all(step["action"] == "continue" for step in trace[3:-1])
    state = replay(trace, budget=14)
    assert state.is_final and body["tokens"] == state.tokens_used <= 14
    assert body["thought_tokens"] == 6 and body["latency_ms"] > 0
    assert body["text"] == "".join(step["text"] for step in trace if step.get("thought") is False).strip()
    assert all(set(step) >= {"action", "tokens", "ms"} for step in trace)


def test_the_scripted_thought_is_in_the_answers_context_but_never_shown_or_logged(scripted, spy, logs):
    spy.calls.clear()
    body = scripted.post("/generate", json={"prompt": "Why is the sky blue?", "budget": 12, "seed": 2}).json()
    thought_ids = spy.calls[0][1]
    thought = spy.hf_tokenizer.decode(thought_ids, skip_special_tokens=True)
    assert len(thought.strip()) >= 3, "the tiny model's thought is too short to look for"
    assert thought in spy.calls[1][0]  # the answer was generated with the thought in its context
    assert thought not in body["text"] and thought not in str(body["macro_trace"])
    assert thought not in logs.text()


@pytest.mark.parametrize("budget, thought_tokens", [(1, 0), (2, 1), (7, 6)])
def test_small_budgets_leave_room_for_an_answer(scripted, budget, thought_tokens):
    body = scripted.post("/generate", json={"prompt": "Hi", "budget": budget}).json()
    assert body["thought_tokens"] == thought_tokens and body["tokens"] == budget  # random model: no early EOS
    assert replay(body["macro_trace"], budget).is_final


def test_a_seed_reproduces_an_answer_and_another_seed_changes_it(scripted):
    def answer(seed: int) -> str:
        return scripted.post("/generate", json={"prompt": "Name a colour.", "budget": 8, "seed": seed}).json()["text"]

    assert answer(5) == answer(5)
    assert answer(5) != answer(6)


def test_health_names_model_backend_and_controller(scripted, tiny_torch):
    body = scripted.get("/health").json()
    assert body["status"] == "ok" and body["controller"] == "scripted" and body["max_budget"] == 32
    assert body["model"] == tiny_torch.name and body["backend"] == "torch"


# --- secrets never leave ---------------------------------------------------------------------------------
def test_thought_text_never_reaches_the_response_or_the_logs(fake, logs):
    before = len(logs.records)
    response = fake.post("/generate", json={"prompt": f"Tell me {PROMPT_MARKER}", "budget": 10, "seed": 4})
    assert response.status_code == 200
    assert SECRET not in response.text and VISIBLE in response.json()["text"]
    assert response.json()["macro_trace"][1]["text"] == THOUGHT_PLACEHOLDER  # redacted by the server
    new = logs.records[before:]
    served = [r.getMessage() for r in new if r.name == "slmlab.serve"]
    assert len(served) == 1 and "prompt_chars=" in served[0] and "budget=10" in served[0] and "latency_ms=" in served[0]
    assert any(r.name == "uvicorn.access" for r in new)  # the capture does see the server's records
    assert SECRET not in logs.text() and PROMPT_MARKER not in logs.text()


def test_trace_step_hides_thought_text():
    assert trace_step(Macro.CONTINUE, Span(SECRET, (1, 2), thought=True), 3.0) == {
        "action": "continue",
        "tokens": 2,
        "ms": 3.0,
        "thought": True,
        "text": THOUGHT_PLACEHOLDER,
    }
    assert trace_step(Macro.CONTINUE, Span("seen", (1,)))["text"] == "seen"
    assert trace_step(Macro.STOP) == {"action": "stop", "tokens": 0, "ms": 0.0}


# --- bad requests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload, field",
    [
        ({}, "prompt"),
        ({"budget": 10}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": 123}, "prompt"),
        ({"prompt": "hi", "budget": 0}, "budget"),
        ({"prompt": "hi", "budget": -5}, "budget"),
        ({"prompt": "hi", "budget": 10**9}, "budget"),
        ({"prompt": "hi", "budget": 101}, "budget"),
        ({"prompt": "hi", "budget": "64"}, "budget"),
        ({"prompt": "hi", "budget": 12.5}, "budget"),
        ({"prompt": "hi", "budget": True}, "budget"),
        ({"prompt": "hi", "seed": -1}, "seed"),
        ({"prompt": "hi", "seed": "a"}, "seed"),
        ({"prompt": "hi", "temprature": 0.5}, "temprature"),
        ([1, 2], "body"),
    ],
)
def test_bad_requests_get_422_naming_the_field(fake, payload, field):
    runs = fake.controller.runs
    response = fake.post("/generate", json=payload)
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["field"] for error in body["errors"]] == [field] and body["detail"].startswith(f"{field}: ")
    assert "x" * 100 not in response.text  # the rejected input is not echoed
    assert fake.controller.runs == runs


def test_a_body_that_is_not_json_gets_422(fake):
    response = fake.post("/generate", content=b"prompt=hi", headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "body"


def test_the_largest_budget_and_the_defaults_are_accepted(fake):
    assert fake.post("/generate", json={"prompt": "hi", "budget": 100}).status_code == 200
    assert fake.post("/generate", json={"prompt": "y" * 4000}).json()["tokens"] == 3  # DEFAULT_BUDGET, seed 0
    assert "seed=0" in fake.post("/generate", json={"prompt": "hi"}).json()["text"]


# --- the controller's life ---------------------------------------------------------------------------------
def test_the_controller_is_created_once_on_first_use(logs):
    made = []

    def factory():
        made.append(FakeController())
        return made[-1]

    app = create_app(factory)
    assert made == []  # building the app loads nothing
    with serving(app) as client:
        assert made == []
        assert client.get("/health").json()["controller"] == "FakeController"
        for _ in range(2):
            assert client.post("/generate", json={"prompt": "hi"}).status_code == 200
    assert len(made) == 1 and made[0].runs == 2


def test_failures_are_reported_with_their_reason(logs):
    def missing():
        raise ModelUnavailableError("Model folder not found: /nowhere")

    with serving(create_app(missing)) as client:
        response = client.post("/generate", json={"prompt": "hi"})
        assert response.status_code == 503 and "/nowhere" in response.json()["detail"]
        assert client.get("/health").status_code == 503
    with serving(create_app(lambda: FakeController(fail=True))) as client:
        response = client.post("/generate", json={"prompt": "hi"})
        assert response.status_code == 500 and "ended its reply at once" in response.json()["detail"]
        assert SECRET not in response.text


def test_create_app_rejects_a_bad_budget_limit():
    with pytest.raises(ValueError, match="max_budget"):
        create_app(FakeController, max_budget=0)


# --- the scripted controller on its own ------------------------------------------------------------------
class EmptyFirst:
    """A stand-in model that ends its reply at once for the first ``empty`` calls, then says 'ok'."""

    name, backend, device = "stub", "none", "cpu"

    def __init__(self, tiny_torch, empty: int) -> None:
        self.hf_tokenizer, self.empty, self.configs = tiny_torch.hf_tokenizer, empty, []
        self.ok = tiny_torch.hf_tokenizer("ok", add_special_tokens=False)["input_ids"]

    def render(self, prompt, chat=True, system=None):
        return prompt

    def generate_ids(self, prompts, config=None, chat=True):
        self.configs.append(config)
        return [[] if len(self.configs) <= self.empty else self.ok]


def test_an_empty_reply_is_retried_by_sampling_then_reported(tiny_torch):
    model = EmptyFirst(tiny_torch, empty=3)  # no thought (left out), two empty answers, then 'ok'
    result = ScriptedController(model, temperature=0.0, retries=3).run("hi", budget=8, seed=10)
    assert result.visible_text == "ok" and result.thought_tokens == 0
    assert [step["action"] for step in result.macro_trace] == ["continue", "stop"]
    assert [c.seed for c in model.configs] == [10, 11, 12, 13]
    assert [c.strategy for c in model.configs] == ["greedy", "greedy", "sample", "sample"]
    with pytest.raises(ControllerError, match="ended its reply at once 2 times"):
        ScriptedController(EmptyFirst(tiny_torch, empty=99), retries=1).run("hi", budget=8, seed=0)


def test_scripted_controller_checks_its_settings(tiny_torch):
    with pytest.raises(ValueError, match="span_tokens"):
        ScriptedController(tiny_torch, span_tokens=0)


@pytest.mark.real_model
def test_scripted_controller_answers_with_the_real_model(real_torch):
    result = ScriptedController(real_torch, span_tokens=16).run("What is the capital of France?", budget=40, seed=0)
    assert result.visible_text.strip() and result.thought_tokens > 0 and result.tokens <= 40
    assert replay(result.macro_trace, 40).is_final


# --- the command line --------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="slmlab")
    add_mcts_commands(root.add_subparsers(dest="command", required=True))
    return root


def test_serve_command_defaults_and_choices():
    args = parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_budget) == ("127.0.0.1", 8000, 512)
    assert (args.controller, args.backend, args.model) == ("scripted", "auto", DEFAULT_MODEL)
    assert tuple(CONTROLLERS) == CONTROLLER_NAMES
    for bad in (["--controller", "nope"], ["--max-budget", "0"]):
        with pytest.raises(SystemExit):
            parser().parse_args(["serve", *bad])


def test_serve_command_loads_the_model_then_runs_uvicorn(monkeypatch, tiny_torch):
    seen = {}

    def load_model(name, backend):
        seen["load"] = (name, backend)
        return tiny_torch

    monkeypatch.setattr("slmlab.models.load_model", load_model)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    args = parser().parse_args(["serve", "--model", "tiny", "--backend", "torch", "--port", "9123", "--max-budget", "20"])
    assert args.run(args) == 0
    assert seen["load"] == ("tiny", "torch") and (seen["host"], seen["port"]) == ("127.0.0.1", 9123)
    with serving(seen["app"]) as client:
        health = client.get("/health").json()
        assert (health["controller"], health["model"], health["max_budget"]) == ("scripted", tiny_torch.name, 20)
        assert client.post("/generate", json={"prompt": "hi", "budget": 21}).status_code == 422
