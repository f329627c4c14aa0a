# Two commands on a fresh machine: `make demo` and `make test` (`make quickstart`: a first model in minutes).
# Every target is idempotent.
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

.PHONY: setup apt venv kenlm-tools test test-all bench quickstart demo gpu-bundle clean help

help:
	@echo "make setup     create .venv, install mlpl and its system packages (idempotent)"
	@echo "make test      setup + fast test suite"
	@echo "make test-all  setup + all tests, slow end-to-end ones included"
	@echo "make bench     setup + benchmarks (results in benchmarks/results/)"
	@echo "make quickstart  setup + a small corpus + a short stage-1 training: a model in exp/quickstart/model"
	@echo "make demo      setup + the whole recipe on the embedded synthetic corpus"
	@echo "make gpu-bundle  wheels, espeak-ng and KenLM tools for benchmarks/gpu_run.sh on an offline CUDA machine"

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

# A first model in minutes (the README's inference snippet loads it): two languages of the embedded corpus
# (no LM text: the quickstart decodes greedily) and a short stage-1 training, configs/train/quickstart.yaml, which
# names the corpus folder and the model folder. Re-running completes the corpus and resumes the training.
QUICKSTART_CORPUS := data/synthetic-quickstart
quickstart: setup
	$(PY) run_scripts/make_synthetic_corpus.py --preset demo --languages en de --set text_sentences=1000 \
		--output_dir $(QUICKSTART_CORPUS)
	$(PY) run_scripts/train.py configs/train/quickstart.yaml --resume true

demo: setup
	$(PY) run_scripts/recipe.py --config configs/demo.yaml --seeds $(SEEDS)

# benchmarks/gpu_run.sh on a CUDA machine that has Python, torch, transformers and accelerate but no network:
# everything else the recipe needs, for that machine's Python, into $(GPU_BUNDLE) (copy it beside the repo there).
# Pinned to the versions this project's venv runs; torch/transformers/accelerate/nvidia-*, numpy, pyarrow, pandas
# and the other packages the CUDA image already has are left out (pip installs the bundle with --no-deps).
GPU_BUNDLE ?= build/gpu-bundle
GPU_PYTHON_VERSION ?= 3.12
GPU_PLATFORMS := manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
# kenlm has no wheel for that Python: kenlm-ex's prebuilt one gives identical scores (docs/gpu.md)
GPU_WHEELS := datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 \
	soxr==1.1.0 jiwer==4.0.0 rapidfuzz==3.14.6 pyctcdecode==0.5.0 pygtrie==2.6.2 kenlm-ex==0.2.1 wordfreq==3.1.1 \
	ftfy==6.3.1 wcwidth==0.9.4 langcodes==3.5.1 locate==1.1.1
# `apt-cache depends espeak-ng libespeak-ng1`: libpcaudio0 also needs libpulse0/libasound2 and their X11/D-Bus
# chain; the bundle carries a stub libpcaudio instead (benchmarks/pcaudio_stub.c; --stdout never plays audio)
GPU_DEBS := espeak-ng libespeak-ng1 espeak-ng-data libpcaudio0 libsonic0

gpu-bundle:
	@test -x $(VENV)/bin/lmplz || $(MAKE) kenlm-tools
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/wheels $(GPU_BUNDLE)/debs $(GPU_BUNDLE)/bin $(GPU_BUNDLE)/lib $(GPU_BUNDLE)/stub
	$(PY) -m pip download -q --no-deps --only-binary :all: --python-version $(GPU_PYTHON_VERSION) --implementation cp \
		$(addprefix --platform ,$(GPU_PLATFORMS)) -d $(GPU_BUNDLE)/wheels $(GPU_WHEELS)
	$(PY) benchmarks/gpu_bundle.py trim-wordfreq $(GPU_BUNDLE)/wheels/wordfreq-*.whl
	cd $(GPU_BUNDLE)/debs && apt-get download $(GPU_DEBS) 2>&1 | grep -v "unsandboxed" || true
	@test -n "$$(ls $(GPU_BUNDLE)/debs/espeak-ng_*.deb 2>/dev/null)" || { echo "gpu-bundle: apt-get download failed (run apt-get update)"; exit 1; }
	cc -shared -fPIC -O2 -Wl,-soname,libpcaudio.so.0 -o $(GPU_BUNDLE)/stub/libpcaudio.so.0 benchmarks/pcaudio_stub.c
	cp $(VENV)/bin/lmplz $(VENV)/bin/build_binary $(GPU_BUNDLE)/bin/
	ldd $(VENV)/bin/lmplz | awk '/libboost/ {print $$3}' | xargs -r cp -L -t $(GPU_BUNDLE)/lib/
	@du -sh $(GPU_BUNDLE)/* $(GPU_BUNDLE)

clean:
	rm -rf exp build .pytest_cache
