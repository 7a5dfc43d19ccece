# The README's commands. Each target installs what it needs first (a no-op when up to date).
PYTHON := .venv/bin/python
DATA ?= ../shared/data
RUN_DIR ?= runs/demo

.PHONY: install demo test bench help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## create .venv with the pinned stack (quick when nothing changed)
	./scripts/bootstrap.sh

demo: install  ## ingest the Cu-I DFT data into a store and export a train/test dataset
	$(PYTHON) -m flows.ingest --store $(RUN_DIR)/structures.db $(DATA)/Cu-I.extxyz
	$(PYTHON) -m flows.export --store $(RUN_DIR)/structures.db --out $(RUN_DIR)/dataset

test: install  ## run the whole test suite (real pacemaker, Prefect and ASE on tiny data)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: install  ## run the benchmarks and print their ratios
	$(PYTHON) -m benchmarks.ingest_export
