# Two commands: `make run` serves the arena, `make test` runs the whole suite. Both set everything up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-vllm chaos lint format bench env stop clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,engine,train]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m ludus_dev run

test: $(STAMP)
	$(PY) -m ludus_dev test

# Faults under load on an arena of its own (temporary data folder, its own PostgreSQL and Redis).
chaos: $(STAMP)
	$(PY) -m ludus_dev chaos

# vLLM's CPU build in its own venv (.venv-vllm), then the tests that need a real vLLM server.
test-vllm: $(STAMP)
	scripts/vllm_env.sh
	LUDUS_VLLM_PYTHON=$(CURDIR)/.venv-vllm/bin/python $(PY) -m ludus_dev test --pytest-only tests/vllm

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

env: $(STAMP)
	@$(PY) -m ludus_dev env

stop: $(STAMP)
	$(PY) -m ludus_dev stop
