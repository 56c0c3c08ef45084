# make run    — create .venv if needed, install the locked dependencies, start the app
# make test   — create .venv if needed, install the locked dependencies, run the tests
# make lock   — re-resolve pyproject.toml into requirements/lock.txt (hashes; torch left to the line below)
# make test-latest — the suite in a throwaway venv with the newest releases; one line of what broke
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
TORCH := 2.13.0

.PHONY: run test install lock test-latest bench gpu-check clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==26.3
	# torch first: the CPU build this machine keeps on disk (a GPU box: install its CUDA build of the same version first).
	$(BIN)/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$(TORCH)')" 2>/dev/null \
		|| $(BIN)/python -m pip install -q torch==$(TORCH)
	# Then exactly the lock (every package pinned and hash-checked), and the project itself without resolving again.
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/streamlit run advisor_app.py

test: $(STAMP)
	$(BIN)/python -m pytest -q

lock: $(STAMP)
	$(BIN)/python requirements/deps.py lock

test-latest: $(STAMP)
	$(BIN)/python requirements/deps.py latest

bench: $(STAMP)
	$(BIN)/python bench/estimate_speed.py

gpu-check: $(STAMP)
	$(BIN)/python bench/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache

# --- test tiers and lint (issue 23) ---
.PHONY: test-fast lint
# The fast tier: estimators, advisor, validation and the app through AppTest; no real training steps.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

RUFF := 0.17.6
lint: $(STAMP)
	$(BIN)/python -m ruff --version 2>/dev/null | grep -q $(RUFF) || $(BIN)/python -m pip install -q ruff==$(RUFF)
	$(BIN)/python -m ruff check .
