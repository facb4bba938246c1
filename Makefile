# Every target bootstraps .venv first, so a fresh clone needs only python3. What it installs
# comes from the locks in requirements/ (hashed); new releases are met on purpose, with
# `make upgrade` and `make test-latest`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.10
UV := $(VENV)/uv/bin/uv
LOCK := --universal --python-version 3.10 --generate-hashes --no-header --quiet
# uv never fetches an interpreter: it uses the python3 it is given.
export UV_PYTHON_DOWNLOADS := never
LAB_STAMP := $(VENV)/.lab-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: lab test site lint typecheck bench faults message-cost bakeoff scaling upgrade test-latest test-lowest clean

# uv itself lives in a venv of its own inside .venv, which no sync touches.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(PYTHON) -m venv $(VENV)/uv
	$(VENV)/uv/bin/python -m pip install --quiet uv==$(UV_VERSION)

define install_project
	$(UV) pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	mkdir -p $(VENV)/etc/jupyter  # HTML exports in this environment play offline too
	cp cachelab/lab/jupyter_config/jupyter_nbconvert_config.json $(VENV)/etc/jupyter/
endef

# A student's install: the lab extra only (added to, never pruned, so a dev venv stays whole).
$(LAB_STAMP): requirements/lab.txt pyproject.toml cachelab/lab/jupyter_config/jupyter_nbconvert_config.json | $(UV)
	$(UV) pip install --quiet --python $(BIN)/python --require-hashes -r requirements/lab.txt
	$(install_project)
	touch $@

# The developer's install: exactly the lock, with the test and lint tooling.
$(DEV_STAMP): requirements/dev.txt pyproject.toml cachelab/lab/jupyter_config/jupyter_nbconvert_config.json | $(UV)
	$(UV) pip sync --quiet --python $(BIN)/python --require-hashes requirements/dev.txt
	$(install_project)
	touch $(LAB_STAMP) $@

lab: $(LAB_STAMP)
	$(BIN)/python -m cachelab lab --dir .lab

test: $(DEV_STAMP)
	$(BIN)/ruff check cachelab tests benchmarks examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadgroup  # two workers (most tests wait on servers, kernels and sockets); a module marked xdist_group shares one worker

# Every notebook executed into site/ (offline HTML, about two minutes); open site/index.html.
site: $(DEV_STAMP)
	$(BIN)/python -m cachelab site --out site

bench: $(DEV_STAMP)
	$(BIN)/python -m benchmarks

# Every fault, every strategy, on redis-server and Valkey; rewrites docs/faults.md (minutes).
faults: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.faults

# What one message or event costs the server (INFO commandstats); rewrites docs/message-cost.md.
message-cost: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.message_cost

# Stale reads under faults, cachelab vs redis-py's client-side cache; rewrites docs/bakeoff.md (minutes).
bakeoff: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.bakeoff

# Propagation and server CPU at 1 to 16 subscriber processes, cachelab against a raw PUBLISH;
# rewrites docs/scaling.md and cachelab/sim/scaling.json, the fleet simulator's calibration (minutes).
scaling: $(DEV_STAMP)
	$(BIN)/python -m benchmarks.scaling

# Re-resolve the locks against today's releases; review the diff, run make test, commit.
upgrade: | $(UV)
	$(UV) pip compile $(LOCK) --upgrade pyproject.toml requirements/build.in --extra lab -o requirements/lab.txt
	$(UV) pip compile $(LOCK) --upgrade pyproject.toml requirements/build.in --extra lab --extra dev -o requirements/dev.txt

# The suite against the newest releases, without the locks, in a throwaway venv (not CI's).
test-latest: | $(UV)
	rm -rf .venv-latest && $(UV) venv --quiet --python $(PYTHON) .venv-latest
	$(UV) pip install --quiet --python .venv-latest/bin/python --upgrade -e '.[lab,dev]' -r requirements/build.in
	.venv-latest/bin/mypy
	.venv-latest/bin/python -m pytest -n 2 --dist loadgroup

# The declared lower bounds, proven: a throwaway venv with the lowest direct dependencies.
test-lowest: $(DEV_STAMP)
	$(BIN)/python -m pytest -m lowest -p no:xdist

clean:
	rm -rf $(VENV) .venv-latest .mypy_cache .pytest_cache .ruff_cache site
