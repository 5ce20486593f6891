# Every target bootstraps its own virtualenv, so `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check egress_doctor tests benchmarks
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/egress-doctor demo

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

lint: $(STAMP)
	$(BIN)/ruff check egress_doctor tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
