# zeroformer: `make demo` trains a Spanish->English Transformer and translates with it (`make
# demo-char`: a character-level GPT in minutes); `make test` runs the tests.
# Both create ./.venv on first use (python3 -m venv) and install what they need; a stamp file
# makes later runs skip the set-up until pyproject.toml changes.
#
# torch is installed FIRST, pinned, so that nothing pulls a multi-GB CUDA build on a CPU machine:
#   - a matching torch already in the venv: kept;
#   - an NVIDIA GPU (nvidia-smi works): the default PyPI build (CUDA);
#   - no GPU, a local CPU wheel reachable by pip (e.g. find-links=/opt/wheels): that wheel;
#   - no GPU, no local wheel: the CPU wheel from https://download.pytorch.org/whl/cpu.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
STAMP := $(VENV)/.zeroformer-setup
DEMO_OUT ?= runs/demo-es-en
DEMO_STEPS ?= 1000
DEMO_CHAR_OUT ?= runs/demo-shakespeare-char
DEMO_CHAR_STEPS ?= 500
PYTEST_ARGS ?=

.PHONY: setup demo demo-char test clean-demo

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@set -e; \
	if $(BIN)/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH_VERSION)')" 2>/dev/null; then \
	  echo "setup: torch $(TORCH_VERSION) already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "setup: NVIDIA GPU found: installing torch==$(TORCH_VERSION) (CUDA build)"; \
	  $(BIN)/pip install torch==$(TORCH_VERSION); \
	elif $(BIN)/pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)" 2>/dev/null \
	     && $(BIN)/python -c "import importlib.metadata as m, sys; sys.exit('+cpu' not in m.version('torch'))"; then \
	  echo "setup: installed torch $(TORCH_VERSION) (CPU) from a local wheel; now its dependencies"; \
	  $(BIN)/pip install "torch==$(TORCH_VERSION)"; \
	else \
	  echo "setup: no GPU and no local wheel: CPU torch from $(TORCH_CPU_INDEX)"; \
	  $(BIN)/pip install "torch==$(TORCH_VERSION)+cpu" --index-url $(TORCH_CPU_INDEX); \
	fi
	$(BIN)/pip install -e '.[test,data]'
	@touch $(STAMP)

# The main job: the 2017 Transformer learns Spanish -> English from Bible verses (the first
# DEMO_STEPS of `translate-es-en`, whose full run is 2000 steps): it prints validation loss and
# BLEU every 500 steps and the test books' BLEU / chrF at the end (9.7 BLEU after 1000 steps,
# 8.5 min on 2 CPU cores; the full recipe: BLEU 16.2 in 19 min), then translates three
# sentences it never saw. `--dtype=fp32`: the figures above were measured in fp32 (`zeroformer
# train` defaults to bf16 autocast on a CPU with native bf16; not yet re-measured that way).
demo: setup
	$(BIN)/zeroformer data fetch bible-es-en
	rm -rf $(DEMO_OUT)
	$(BIN)/zeroformer train translate-es-en --out $(DEMO_OUT) --max-steps $(DEMO_STEPS) \
	  --save-every $(DEMO_STEPS) --dtype=fp32
	$(BIN)/zeroformer translate --model $(DEMO_OUT) --beams 4 \
	  "No me ruegues que te deje, y que me aparte de ti." \
	  "Y el pueblo se levantó de mañana." \
	  "El rey dijo a sus siervos: Traed pan y agua."

# The quickest one: a character-level GPT on Shakespeare (DEMO_CHAR_STEPS steps, a few minutes),
# then a generated sample.
demo-char: setup
	$(BIN)/zeroformer data fetch shakespeare
	rm -rf $(DEMO_CHAR_OUT)
	$(BIN)/zeroformer train shakespeare-char --out $(DEMO_CHAR_OUT) --max-steps $(DEMO_CHAR_STEPS) \
	  --eval_every=$(DEMO_CHAR_STEPS) --save-every $(DEMO_CHAR_STEPS) --dtype=fp32

# The data the tests need is fetched first. Locally a failed fetch only warns and the tests that
# need the missing data (or a missing package) skip with a reason, listed at the end (-rs).
# Under CI (CI=true, set by .ci/run and by CI services) the fetch must succeed and any skip
# fails the run (tests/conftest.py).
test: setup
	@if [ "$$CI" = true ]; then \
	  $(BIN)/zeroformer data fetch --all-test; \
	else \
	  $(BIN)/zeroformer data fetch --all-test --best-effort \
	    || echo "warning: data fetch failed or is unavailable; data tests will skip"; \
	fi
	$(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_OUT) $(DEMO_CHAR_OUT)
