# make         set up .venv if needed, then run the whole experiment: snakemake --cores all
# make test    set up .venv if needed, then run the test suite
# make cell CELL=mobilenet_v2-adam-s0   re-train one cell, then refresh the tables and the report
# make cells   list the cells of the grid

PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed
CONFIG ?= experiments/config.yaml
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all report test cell cells clean

all: report

report: $(STAMP)
	snakemake --cores all

test: $(STAMP)
	pytest

cells: $(STAMP)
	@carcolor config $(CONFIG) --cells --no-deep

cell: $(STAMP)
	@test -n "$(CELL)" || { echo "usage: make cell CELL=<name>; cells of this grid:"; carcolor config $(CONFIG) --cells --no-deep; exit 2; }
	@carcolor config $(CONFIG) --cells --no-deep | grep -qx "$(CELL)" || { echo "unknown cell '$(CELL)'; cells of this grid:"; carcolor config $(CONFIG) --cells --no-deep; exit 2; }
	rm -f results/runs/$(CELL)/checkpoint.pt  # else the finished checkpoint would be reused, not re-trained
	snakemake --cores all --forcerun results/runs/$(CELL)/train.ipynb

# Re-installs only when pyproject.toml changed.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

clean:
	rm -rf results data .snakemake
