# The two commands a new user needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-dev

.PHONY: setup azurite demo test lint bench clean

## setup: create .venv and install the package with its test tools (idempotent)
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## azurite: the storage emulator the blob tests run against (npm: Azurite 3.37 + 3.35, Node 22)
azurite:
	bash scripts/ensure-azurite.sh

## demo: train the example model, score 200,000 customers, print where the scores are
demo: setup
	test -f examples/python-churn/model/churn.joblib || $(BIN)/python examples/python-churn/prepare.py
	$(BIN)/serverless-score run examples/python-churn/job.toml

## lint: ruff and mypy
lint: setup
	$(BIN)/ruff check serverless_score tests bench examples
	$(BIN)/mypy

## test: lint, then the whole test suite (blob tests start Azurite on a free port, then stop it)
test: lint azurite
	$(BIN)/pytest

## bench: the benchmarks of bench/README.md (installs lithops for the comparison)
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_scoring.py
	$(BIN)/python bench/bench_healing.py

clean:
	rm -rf examples/*/out examples/*/data examples/*/model
