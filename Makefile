# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Benchmark data: SAMPLEFLOW_DATA if set, else ../shared/data next to the checkout, else the user cache.
ifeq ($(origin SAMPLEFLOW_DATA), undefined)
  ifneq ($(wildcard ../shared/data/TARGETS.md),)
    export SAMPLEFLOW_DATA := $(abspath ../shared/data)
  endif
endif

.PHONY: demo test test-slow install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# the CPU build of torch (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sampleflow demo --out demo_output --jobs 2

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) demo_output .pytest_cache
