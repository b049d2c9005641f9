# Every target creates .venv on first use: CPU torch first (a plain `torch` requirement
# would pull a multi-GB CUDA build), then the package with its dev extras.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

.PHONY: study test check test-slow fuzz lint bench docs experiments clean

$(BIN)/sparsearch: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job: the default study (about 32 minutes on 2 CPU cores); SQLite storage in studies/.
study: $(BIN)/sparsearch
	$(BIN)/sparsearch study --budget 50GFLOPs

# Every test but the slow tier (10 min 8 s on 2 idle AMD EPYC cores); CI runs it, then `make test-slow`
# (12 min 14 s there, the chaos run and the fuzzers included).
test: $(BIN)/sparsearch
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not slow" --durations=15

# The fast tier for the edit-test loop (about 35 s on 2 idle cores; it prints its 10 slowest tests):
# unit tests without processes, servers, studies, trainings or site builds.
check: $(BIN)/sparsearch
	$(BIN)/ruff check .
	$(BIN)/pytest -q -m "not slow and not integration" --durations=10

# The slow tier: the wheel build, the benchmark scripts, the longest doc pages' commands.
test-slow: $(BIN)/sparsearch
	$(BIN)/pytest -q -m slow --durations=10

# The fuzzers at full strength: 10,000 generated inputs per parser (the slow tier runs 1,000 with seed 0);
# new inputs each run (the seed is printed; SPARSEARCH_FUZZ_SEED=N repeats a run); figures as JSON to
# SPARSEARCH_FUZZ_FIGURES. About 10 minutes on 2 cores.
fuzz: $(BIN)/sparsearch
	@seed=$${SPARSEARCH_FUZZ_SEED:-$$(date +%s)}; echo "fuzz seed $$seed"; \
	SPARSEARCH_FUZZ_SEED=$$seed SPARSEARCH_FUZZ_EXAMPLES=$${SPARSEARCH_FUZZ_EXAMPLES:-10000} \
	$(BIN)/pytest -q -s -m slow -W ignore::UserWarning tests/reliability/test_fuzz.py

lint: $(BIN)/sparsearch
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(BIN)/sparsearch
	$(BIN)/python benchmarks/bench_layers.py

# The documentation site: regenerates the CLI and space references, then builds with --strict
# (any broken link or page left out of the navigation fails the build) into site/.
docs: $(BIN)/sparsearch
	$(BIN)/python -m sparsearch.reference docs/reference
	$(BIN)/mkdocs build --strict --quiet

# The seeds' claims at small scale (about an hour on 2 CPU cores): docs/experiments/results.json.
experiments: $(BIN)/sparsearch
	$(BIN)/python experiments/seed_claims.py --out docs/experiments/results.json

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .ruff_cache
