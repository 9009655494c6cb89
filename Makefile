# The two commands a new user needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-dev

.PHONY: setup r-setup azurite docker demo test lint bench bench-r bench-aci bench-scale bench-images chaos test-scale clean

## setup: create .venv and install the package with its test tools, and R (idempotent)
setup: $(STAMP) r-setup

## r-setup: R and the R packages of the R runtime, tests and examples (Debian packages; quick no-op when present)
r-setup:
	scripts/install-r.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## azurite: the storage emulator the blob tests run against (npm: Azurite 3.37 + 3.35, Node 22)
azurite:
	bash scripts/ensure-azurite.sh

## docker: a Docker engine for the docker tests (Debian docker.io + a private dockerd under
## .tools/docker when none answers) and the base image local/bookworm (debootstrap, once)
docker:
	bash scripts/ensure-docker.sh

## demo: train the example models, score them (R forest first, then R glm, then Python), print where the scores are
demo: setup
	test -f examples/r-churn-forest/model/churn-forest.rds || Rscript examples/r-churn-forest/prepare.R
	$(BIN)/serverless-score run examples/r-churn-forest/job.toml
	test -f examples/r-glm/model/default-glm.rds || Rscript examples/r-glm/prepare.R
	$(BIN)/serverless-score run examples/r-glm/job.toml
	test -f examples/python-churn/model/churn.joblib || $(BIN)/python examples/python-churn/prepare.py
	$(BIN)/serverless-score run examples/python-churn/job.toml

## lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check serverless_score tests bench examples
	$(BIN)/mypy

## test: lint, then the whole test suite (R, blob and docker tests included: r-setup installs R
## from Debian packages; the blob tests start Azurite on a free port, then stop it; the docker
## tests build the scoring images FROM local/bookworm, reused until the source changes)
test: lint r-setup azurite docker
	$(BIN)/pytest

## test-scale: the minutes-long tests at Azure's own limits (a merge of 50,001 parts on Azurite)
test-scale: setup azurite
	$(BIN)/pytest -m scale

## bench: the benchmarks of bench/README.md (installs lithops for the comparison)
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_scoring.py
	$(BIN)/python bench/bench_healing.py
	$(BIN)/python bench/bench_scale.py

## bench-scale: plans of 1,000 / 10,000 / 100,000 tasks: each controller stage's time per task and peak memory
bench-scale: setup
	$(BIN)/python bench/bench_scale.py

## bench-r: R randomForest and glm, the tool vs a bare Rscript (fread/predict/fwrite); see bench/RESULTS.md
bench-r: setup
	$(BIN)/python bench/bench_r.py

## bench-aci: ARM calls per task and controller overhead of the ACI backend, against the local emulator
bench-aci: setup azurite
	$(BIN)/python bench/bench_aci.py

## bench-images: the scoring images' sizes, on disk and compressed (builds them FROM local/bookworm)
bench-images: setup docker
	$(BIN)/python bench/image_sizes.py

## chaos: the fault campaign (bench/README.md): CHAOS_TRIALS randomized fault trials on the local
## backend, then on the ACI emulator; a failed trial is reported with its seed, not fatal
CHAOS_TRIALS ?= 100
CHAOS_SEED   ?= 1
chaos: setup azurite
	$(BIN)/python bench/chaos.py --backend local --trials $(CHAOS_TRIALS) --seed $(CHAOS_SEED)
	$(BIN)/python bench/chaos.py --backend aci --trials $(CHAOS_TRIALS) --seed $(CHAOS_SEED)

clean:
	rm -rf examples/*/out examples/*/data examples/*/model

.PHONY: bench-memory
## bench-memory: peak memory of one worker over a 10 GB CSV (written to bench/.data, then deleted)
bench-memory: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/bench_memory.py
