# The README's commands. Each target installs what it needs first (a no-op when up to date).
PYTHON := .venv/bin/python
DATA ?= ../shared/data

.PHONY: install demo train-demo test bench stop ui help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## create .venv with the pinned stack (quick when nothing changed)
	./scripts/bootstrap.sh

demo: install  ## run the 3-generation Cu-Ni active-learning campaign (EMT labels, small ACE basis)
	@$(PYTHON) -m flows.cli server start  # the local Prefect server (reused if running): its UI URL first
	$(PYTHON) -m flows.active_learning --config campaigns/cuni-demo.yaml
	@$(PYTHON) -m flows.cli server status | sed 's/^Prefect UI: \([^ ]*\).*/The runs, subflows, artifacts and blocks stay in the Prefect UI at \1 (make stop ends the server)/'

ui: install  ## start (or find) the local Prefect server and print its UI URL
	@$(PYTHON) -m flows.cli server start

stop:  ## stop the local Prefect server the commands share
	@$(PYTHON) -m flows.cli server stop

train-demo: install  ## fit an ACE potential to the real Cu DFT data (Cu-I) and report test errors
	$(PYTHON) -m flows.train --data $(DATA)/Cu-I.extxyz --out runs/cu-train

test: install  ## run the whole test suite (real pacemaker, Prefect and ASE on tiny data)
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: install  ## run the benchmarks and print their ratios
	$(PYTHON) -m benchmarks.ingest_export
	$(PYTHON) -m benchmarks.pacemaker_fit
	$(PYTHON) -m benchmarks.campaign_overhead
	$(PYTHON) -m benchmarks.command_overhead
	$(PYTHON) -m benchmarks.mace_train
	$(PYTHON) -m benchmarks.outbox_scaling
	$(PYTHON) -m benchmarks.outbox_scaling --workload alloy --sizes 1000 10000 --pymatgen 300
	$(PYTHON) -m benchmarks.labeling_throughput
	$(PYTHON) -m benchmarks.storage_costs
	$(PYTHON) -m benchmarks.al_vs_random --pool $(DATA)/Cu-II.extxyz --test-fraction 0.1 --seeds 3 --out benchmarks/results
