# Two commands on a fresh machine: `make demo` and `make test`. Every target is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel where the machine has one; CUDA users: `make setup TORCH_SPEC="torch==2.x"` or
# install the torch matching their driver into .venv first.
TORCH_SPEC ?= torch==2.13.*
# espeak-ng: embedded corpus; ffmpeg: mp3/ogg fixtures; the rest builds KenLM's lmplz/build_binary.
APT_PACKAGES := espeak-ng ffmpeg build-essential cmake zlib1g-dev libbz2-dev liblzma-dev \
	libboost-program-options-dev libboost-system-dev libboost-thread-dev libboost-test-dev
PYTEST_ARGS ?=
SEEDS ?= 1
export OMP_NUM_THREADS ?= 2

.PHONY: setup apt venv kenlm-tools test test-all bench demo clean help

help:
	@echo "make setup     create .venv, install mlpl and its system packages (idempotent)"
	@echo "make test      setup + fast test suite"
	@echo "make test-all  setup + all tests, slow end-to-end ones included"
	@echo "make bench     setup + benchmarks (results in benchmarks/results/)"
	@echo "make demo      setup + the whole recipe on the embedded synthetic corpus"

setup: apt venv kenlm-tools

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

kenlm-tools: venv
	@bash run_scripts/build_kenlm_tools.sh $(VENV)/bin

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow" $(PYTEST_ARGS)

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

demo: setup
	$(PY) run_scripts/recipe.py --config configs/demo.yaml --seeds $(SEEDS)

clean:
	rm -rf exp build .pytest_cache
