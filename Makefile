# Model Collapse: Executable Tutorials. The README's two commands: `make book`, `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
MODE ?= full
DEVICE ?= auto
SEED ?= 0
JOBS ?= 2
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed

export COLLAPSE_LIB_PROGRESS ?= 0
export PYTHONHASHSEED := 0

.PHONY: help setup book test lint format chapter lab student lock clean browser

# Headless Chromium for the browser checks: Debian's package, never a downloaded browser.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help:
	@echo "make book [MODE=quick] [DEVICE=cuda]   execute every chapter and build the HTML book"
	@echo "make test                              lint, library tests, quick build, HTML checks"
	@echo "make chapter NAME=00_collapse_in_one_picture [MODE=quick]   run one chapter"
	@echo "make lab                               open the notebooks in JupyterLab"
	@echo "make student                           the student edition (no solutions) in _build/student"
	@echo "make lint | format | clean"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Install (or update) everything the book needs, pinned by the lock file.
$(STAMP): $(PY) pyproject.toml $(LOCK)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[book,dev]"
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(PY) tools/book.py build --mode $(MODE) --device $(DEVICE) --seed $(SEED) --jobs $(JOBS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint; \
	$(VENV)/bin/pytest -m "not book and not browser and not student" -q; \
	$(PY) tools/book.py build --mode quick --device cpu --seed $(SEED) --jobs $(JOBS); \
	$(VENV)/bin/pytest -m book -q; \
	$(MAKE) --no-print-directory browser; \
	$(PY) tools/book.py student --execute --jobs $(JOBS); \
	$(VENV)/bin/pytest -m student -q; \
	$(PY) tools/book.py timings; \
	echo "make test took $$(( $$(date +%s) - start )) s"

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The built site in headless Chromium (needs a build in _build/book); screenshots in _build/screenshots.
browser: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/pytest -m browser -q

# The student edition: every solution removed, starter cells in place, quick mode by default.
student: $(STAMP)
	$(PY) tools/book.py student

chapter: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make chapter NAME=00_collapse_in_one_picture [MODE=quick]"; exit 2; }
	$(PY) tools/book.py run $(NAME) --mode $(MODE) --device $(DEVICE) --seed $(SEED)

lab: $(STAMP)
	$(PY) -m pip install --quiet -c $(LOCK) jupyterlab
	COLLAPSE_LIB_PROGRESS=1 $(VENV)/bin/jupyter lab chapters/

# Re-resolve the lock from requirements/pins.txt (needs the package index).
lock: $(PY)
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet -c requirements/pins.txt -e ".[book,dev]"
	$(VENV)-lock/bin/pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' | sort > $(LOCK)
	rm -rf $(VENV)-lock

clean:
	rm -rf _build
