# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench bench-standard bench-full venv

venv: $(STAMP)

# torch is installed first and pinned: 2.13.0 is the CPU build available offline here; a bare `torch`
# requirement would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,flows,dlib,ray,faces]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/legato demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --quick

# the README table: 3 scenarios × 6 methods × 8 people, 150 iterations each, on both cores
bench-standard: $(STAMP)
	$(BIN)/python benchmarks/run.py --standard --update-readme --resume

bench-full: $(STAMP)
	$(BIN)/python benchmarks/run.py --full
