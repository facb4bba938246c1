# Every target bootstraps .venv first, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test site lint typecheck bench faults scaling clean

$(STAMP): pyproject.toml cachelab/jupyter_config/jupyter_nbconvert_config.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[lab,dev]'
	mkdir -p $(VENV)/etc/jupyter  # HTML exports in this environment play offline too
	cp cachelab/jupyter_config/jupyter_nbconvert_config.json $(VENV)/etc/jupyter/
	touch $(STAMP)

lab: $(STAMP)
	$(BIN)/python -m cachelab.cli lab

test: $(STAMP)
	$(BIN)/ruff check cachelab tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2  # two workers: most tests wait on servers, kernels and sockets

# Every notebook executed into site/ (offline HTML, about two minutes); open site/index.html.
site: $(STAMP)
	$(BIN)/python -m cachelab.cli site --out site

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Every fault, every strategy, on redis-server and Valkey; rewrites docs/faults.md (minutes).
faults: $(STAMP)
	$(BIN)/python -m benchmarks.faults

# Propagation and server CPU at 1 to 16 subscriber processes, cachelab against a raw PUBLISH;
# rewrites docs/scaling.md and docs/scaling.json, the fleet simulator's calibration (minutes).
scaling: $(STAMP)
	$(BIN)/python -m benchmarks.scaling

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache site
