# The contract: `make run`, `make test` and `make lint` work from a fresh clone.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTHON ?= python3

.PHONY: run test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]' 2>&1 | grep -v "WARNING: Location" || true
	$(PY) -c "import imgui_bundle, google.genai, anthropic, tree_sitter_python, tree_sitter_go, tree_sitter_c_sharp, tomli_w, pytest, mypy"
	$(VENV)/bin/ruff --version >/dev/null
	touch $(STAMP)

## Open the desktop app (offline mock provider when no API key is set). Extra flags: make run ARGS="--project DIR"
run: $(STAMP)
	MMA_MOCK_CHUNK_DELAY=$${MMA_MOCK_CHUNK_DELAY:-0.03} $(VENV)/bin/mma-desk $(ARGS)

## Run every test (GUI tests start their own Xvfb). Extra flags: make test PYTEST_ARGS="-k dag"
test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

## Static checks: ruff over everything, then mypy over the product code (both configured in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m mypy

## Benchmarks: writes bench/results/*.json and prints a table
bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
