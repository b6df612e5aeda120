# make         set up .venv if needed, then run the whole experiment: snakemake --cores all
# make test    set up .venv if needed, then run the test suite
# make cell CELL=mobilenet_v2-adam-s0   re-train one cell, then refresh the tables and the report
#                                       (CONFIG="my.yaml": the config file(s) the run was made with)
# make cells   list the cells of the grid
# make lock    re-make requirements.lock in a clean temporary venv (after editing pyproject.toml's dependencies)
# make reproduce-check   run the default grid when needed, then compare it with experiments/reference
#
# .venv is installed from requirements.lock's exact versions; `make UNLOCKED=1 ...` installs from
# pyproject.toml's ranges instead.

PYTHON ?= python3
VENV ?= .venv
LOCK := requirements.lock
# The extras installed into .venv and frozen into the lock.
EXTRAS := test,slurm
UNLOCKED ?=
STAMP := $(VENV)/.installed$(if $(UNLOCKED),-unlocked)
CONFIG ?=
# the default config with CONFIG's files merged over it, as Snakemake merges --configfile
CONFIGS := experiments/config.yaml $(CONFIG)
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all report test cell cells lock reproduce-check clean

all: report

report: $(STAMP)
	snakemake --cores all

test: $(STAMP)
	pytest

cells: $(STAMP)
	@carcolor config $(CONFIGS) --cells --no-deep

cell: $(STAMP)
	@test -n "$(CELL)" || { echo "usage: make cell CELL=<name>; cells of this grid:"; carcolor config $(CONFIGS) --cells --no-deep; exit 2; }
	@carcolor config $(CONFIGS) --cells --no-deep | grep -qx "$(CELL)" || { echo "unknown cell '$(CELL)'; cells of this grid:"; carcolor config $(CONFIGS) --cells --no-deep; exit 2; }
	rm -f results/runs/$(CELL)/checkpoint.pt  # else the finished checkpoint would be reused, not re-trained
	snakemake --cores all$(if $(strip $(CONFIG)), --configfile $(CONFIG)) --forcerun results/runs/$(CELL)/train.ipynb

# Did this machine reproduce the reference run? The page: results/compare/index.html and index.pdf.
reproduce-check: $(STAMP)
	snakemake --cores all
	carcolor compare experiments/reference

# Re-installs when pyproject.toml or the lock changed, or after the other install mode.
$(STAMP): pyproject.toml $(if $(UNLOCKED),,$(LOCK))
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
ifeq ($(UNLOCKED),)
	$(VENV)/bin/python -m pip install --quiet -r $(LOCK)
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
else
	$(VENV)/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
endif
	rm -f $(VENV)/.installed $(VENV)/.installed-unlocked
	touch $(STAMP)

# A clean venv in a temporary folder (never .venv), the project with $(EXTRAS), then the freeze,
# written under a temporary name and renamed by carcolor.requirements.
lock:
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/carcolor-lock.XXXXXX") && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp/venv" && \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip && \
	"$$tmp/venv/bin/python" -m pip install --quiet -e '.[$(EXTRAS)]' && \
	"$$tmp/venv/bin/python" -m carcolor.requirements write $(LOCK) --extras '$(EXTRAS)'

clean:
	rm -rf results data .snakemake
