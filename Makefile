# Every target bootstraps .venv itself, so a fresh clone needs only Python 3.11 and make.
# Tests are sent to the two workers a module at a time (loadfile), so module fixtures (a seeded
# backend, a drill) are set up once; with this pytest, loadgroup no longer kept a group together.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/drill-$(shell date -u +%Y%m%dT%H%M%SZ)
OBJECTS ?= 300

.PHONY: drill test lab bench check clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

drill: $(STAMP)
	$(BIN)/runbook drill --objects $(OBJECTS) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

lab: $(STAMP)
	$(BIN)/runbook lab

check: $(STAMP)
	$(BIN)/python -m ruff check runbook_lib tests benchmarks
	$(BIN)/python -m mypy runbook_lib benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache test-artifacts
