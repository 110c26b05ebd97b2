# One-command entry points (README): `make run` and `make test` set up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
CONFIG ?= config.yaml
SNAKEMAKE := PATH="$(BIN):$$PATH" $(BIN)/snakemake --workflow-profile workflow/profiles/default

.PHONY: setup run test lint dry-run audit clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(SNAKEMAKE) --cores $(CORES) --configfile $(CONFIG)
	$(SNAKEMAKE) --cores $(CORES) --configfile $(CONFIG) --report results/report.html

test: setup
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/snakefmt --check Snakefile workflow/
	$(SNAKEMAKE) --lint

dry-run: setup
	$(SNAKEMAKE) -n --cores $(CORES) --configfile $(CONFIG)

audit: setup
	$(BIN)/gated-symile audit results

clean:
	rm -rf results logs resources .snakemake
