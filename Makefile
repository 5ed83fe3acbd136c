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
# torch comes from the PyTorch wheel index named here, as the lock's CPU build (torch==X+cpu).
# For a CUDA or ROCm build override both, e.g.
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128 TORCH=torch==2.13.0+cu128
# Where that index cannot be reached, pip falls back to the other indexes it knows.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH ?= $(shell grep '^torch==' $(LOCK))

export COLLAPSE_LIB_PROGRESS ?= 0
export PYTHONHASHSEED := 0

.PHONY: help setup book test lint format chapter lab student notebooks notebooks-branch lock clean browser pdf

# Headless Chromium for the browser checks: Debian's package, never a downloaded browser.
# Another Chromium: make test CHROMIUM=/path/to/chromium (the browser tests read it).
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

help:
	@echo "make book [MODE=quick] [DEVICE=cuda]   execute every chapter and build the HTML book"
	@echo "make test                              lint, library tests, quick build, HTML checks"
	@echo "make chapter NAME=00_collapse_in_one_picture [MODE=quick]   run one chapter"
	@echo "make lab                               open the notebooks in JupyterLab"
	@echo "make student                           the student edition (no solutions) in _build/student"
	@echo "make notebooks                         the Jupyter edition (solutions kept) in _build/notebooks"
	@echo "make pdf                               the PDF edition of the built book in _build/pdf"
	@echo "make lint | format | clean"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Install (or update) everything the book needs, pinned by the lock file. torch alone is asked
# of TORCH_INDEX (without its dependencies: one look-up there, not one per package, as an
# unreachable index costs seconds a look-up); everything else, torch's own dependencies included
# (pip resolves those of an installed torch: the nvidia-* wheels of a CUDA build), comes from
# the usual index under the lock's constraints. setuptools' notice that an editable install is
# editable is silenced; every other warning shows.
EDITABLE_QUIET := PYTHONWARNINGS="ignore:Editable installation"
$(STAMP): $(PY) pyproject.toml $(LOCK)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps --extra-index-url $(TORCH_INDEX) "$(TORCH)"
	grep -v '^torch==' $(LOCK) > $(VENV)/constraints.txt
	$(EDITABLE_QUIET) $(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[book,dev,dask]"
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(PY) tools/book.py build --mode $(MODE) --device $(DEVICE) --seed $(SEED) --jobs $(JOBS)

# Ruff on the code and notebooks; the GitHub workflows and CITATION.cff against their schemas
# (vendored in check-jsonschema: offline).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.citation-file-format CITATION.cff

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: $(STAMP)
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint; \
	$(VENV)/bin/pytest -m "not book and not browser and not student and not pdf" -q; \
	$(PY) tools/book.py build --mode quick --device cpu --seed $(SEED) --jobs $(JOBS); \
	$(VENV)/bin/pytest -m book -q; \
	$(MAKE) --no-print-directory browser; \
	$(MAKE) --no-print-directory pdf; \
	$(VENV)/bin/pytest -m pdf -q; \
	$(PY) tools/book.py student --execute --jobs $(JOBS); \
	$(PY) tools/book.py notebooks; \
	$(VENV)/bin/pytest -m student -q; \
	$(PY) tools/book.py timings; \
	echo "make test took $$(( $$(date +%s) - start )) s"

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# The built site in headless Chromium (needs a build in _build/book); screenshots in _build/screenshots.
browser: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/pytest -m browser -q

# The PDF edition, printed from the built book (make book [MODE=quick] first) by headless
# Chromium, offline: _build/pdf/model-collapse-tutorials.pdf. Checks: pytest -m pdf.
pdf: $(STAMP) $(CHROMIUM)
	@test -f _build/book/_build/html/index.html || { echo "no built book in _build/book: run make book (or make book MODE=quick) first" >&2; exit 2; }
	$(PY) tools/pdf.py --jobs $(JOBS)

# The student edition: every solution removed, starter cells in place, quick mode by default,
# in plain Jupyter Markdown like `make notebooks`.
student: $(STAMP)
	$(PY) tools/book.py student

# The instructor's Jupyter edition: the chapters in plain Jupyter Markdown (no MyST syntax),
# each solution right after its exercise; what the launch buttons open once published.
notebooks: $(STAMP)
	$(PY) tools/book.py notebooks

# The tree of the `notebooks` branch that publish.yml pushes (_config.yml's repository.branch):
# this commit's files, without .github (no workflows run there), chapters/ replaced by the
# Jupyter edition and the student edition in student/chapters/.
notebooks-branch: notebooks student
	rm -rf _build/notebooks-branch && mkdir -p _build/notebooks-branch/student
	git archive HEAD | tar -x -C _build/notebooks-branch
	rm -rf _build/notebooks-branch/.github _build/notebooks-branch/chapters
	cp -r _build/notebooks/chapters _build/notebooks-branch/chapters
	cp -r _build/student/chapters _build/notebooks-branch/student/chapters

chapter: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make chapter NAME=00_collapse_in_one_picture [MODE=quick]"; exit 2; }
	$(PY) tools/book.py run $(NAME) --mode $(MODE) --device $(DEVICE) --seed $(SEED)

# JupyterLab and jupyterlab-myst (which renders the chapters' MyST: theorems, exercises, glue),
# both pinned by the lock. Jupyter refuses to run as root (as in many containers) without
# --allow-root: pass it there, and say so.
lab: $(STAMP)
	$(EDITABLE_QUIET) $(PY) -m pip install --quiet -c $(VENV)/constraints.txt -e ".[lab]"
	@if [ "$$(id -u)" = 0 ]; then echo "running as root: starting JupyterLab with --allow-root"; fi
	COLLAPSE_LIB_PROGRESS=1 $(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) chapters/

# Re-resolve the lock from requirements/pins.txt (needs the package index).
lock: $(PY)
	rm -rf $(VENV)-lock && $(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/pip install --quiet --extra-index-url $(TORCH_INDEX) -c requirements/pins.txt -e ".[book,dev,dask,lab]"
	$(VENV)-lock/bin/pip freeze --exclude-editable | sort > $(LOCK)
	rm -rf $(VENV)-lock

clean:
	rm -rf _build
