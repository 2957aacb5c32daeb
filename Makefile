# Two entry points for a fresh Debian machine: `make demo` (the main job) and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test figures setup ngspice lint bench

demo: setup
	$(VENV)/bin/circuitnn demo

# two worker processes: the suite's long tests (fits, chains, ngspice) are independent
test: setup
	$(PY) -m pytest -q -n 2

# refresh the curated figures in figures/ from a demo run (the only command that writes there)
figures: setup
	$(VENV)/bin/circuitnn demo --figures-dir figures

setup: ngspice $(VENV)/.installed

ngspice:
	@if ! command -v ngspice >/dev/null || ! ls /usr/lib/*/libngspice.so >/dev/null 2>&1; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y ngspice libngspice0 libngspice0-dev; fi

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,torch,verilog]'
	@touch $@

lint: setup
	$(VENV)/bin/ruff check circuitnn tests benchmarks

bench: setup
	$(PY) benchmarks/run_all.py
