# keel: the two commands are `make demo` and `make test`; everything installs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

export WANDB_MODE ?= offline
export RAY_USAGE_STATS_ENABLED := 0
export PYTHONUNBUFFERED := 1
# Bytecode caches on even where the shell turns them off: without them every CLI subprocess,
# Ray worker and pytest worker compiles keel and the tests again (make test-fast: 55 s -> 48 s).
unexport PYTHONDONTWRITEBYTECODE

LAB_PORT ?= 8888

.PHONY: install install-lab install-dev demo test test-fast soak lint format kernel lab bench clean

# Stamps make installs idempotent: re-run only when the dependency files change.
$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "keel needs Python >= 3.10")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "Installing keel and its dependencies into $(VENV) (first time: a few minutes)..."
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-lab: $(VENV)/.installed
	$(PIP) -e '.[lab]'
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-lab
	$(PIP) -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
install-lab: $(VENV)/.installed-lab
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/keel pipeline

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every test: all but the `alone` ones in two xdist workers, then the `alone` ones (latency
# SLOs on real traffic) one at a time; tests/suite.sh says why.
test: lint install-dev
	WANDB_MODE=disabled tests/suite.sh $(BIN)/python

# The inner loop: the unit tests alone (no Ray, no servers, no kernels) over every core. They
# use none of the pytest plugins that the dev dependencies bring (the fuzz tests' schemathesis,
# hypothesis and anyio), and each process would import them: ~8 s of the minute on 2 cores.
test-fast: install-dev
	WANDB_MODE=disabled $(BIN)/python -m pytest tests/unit -q -n auto \
		-p no:schemathesis -p no:hypothesispytest -p no:anyio

# The soak's long variant: 10 minutes of steady traffic at half the measured capacity on the
# fused app (make test runs the same test for 20 s), then every row checked in the log.
soak: install-dev
	WANDB_MODE=disabled KEEL_SOAK_SECONDS=600 $(BIN)/python -m pytest -s \
		tests/integration/test_serving.py -k "fused and (half_capacity or exactly_one_row)"

# The `keel` Jupyter kernel: this .venv's Python, installed into the .venv itself.
kernel: install-lab
	@$(BIN)/python -m ipykernel install --sys-prefix --name keel --display-name "keel (.venv)" >/dev/null
	@echo "Jupyter kernel 'keel' -> $(BIN)/python"

# JupyterLab on localhost only; open the URL it prints (it holds the login token).
lab: kernel
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --no-browser \
		--allow-root --ServerApp.root_dir=notebooks

bench: install-dev
	$(BIN)/python -m benchmarks bench=all

clean:
	rm -rf outputs .pytest_cache .ruff_cache
