# Every target creates .venv on first use: CPU torch first (a plain `torch` requirement
# would pull a multi-GB CUDA build), then the package with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: study test test-slow lint bench clean

$(BIN)/sparsearch: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job: the default study (about 10 minutes on 2 CPU cores); SQLite storage in studies/.
study: $(BIN)/sparsearch
	$(BIN)/sparsearch study --budget 50GFLOPs

test: $(BIN)/sparsearch
	$(BIN)/ruff check .
	$(BIN)/pytest -q

test-slow: $(BIN)/sparsearch
	$(BIN)/pytest -q -m slow

lint: $(BIN)/sparsearch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/sparsearch
	$(BIN)/python benchmarks/bench_layers.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
