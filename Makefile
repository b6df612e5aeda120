# make         set up .venv if needed, then run the whole experiment: snakemake --cores all
#              (CONFIG="my.yaml": config files of your own, merged in order over experiments/config.yaml)
# make test    set up .venv if needed, then run the test suite
# make cell CELL=mobilenet_v2-adam-s0   re-train one cell, then refresh the tables and the report
#                                       (CONFIG="my.yaml": the config file(s) the results were made with)
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
# CONFIG's files for snakemake, which merges them over experiments/config.yaml (carcolor config does the same)
CONFIGFILES := $(if $(strip $(CONFIG)), --configfile $(CONFIG))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: all report test cell cells lock reproduce-check clean

all: report

# `carcolor config` first: a config file that is missing, empty or not YAML is named in one line
# (Snakemake would report it in a traceback, or without the file's name).
report: $(STAMP)
	@carcolor config --no-deep $(CONFIG) >/dev/null
	snakemake --cores all$(CONFIGFILES)

# Two pytest-xdist workers: the workflow tests spend much of their time waiting (for kernels, SLURM's
# queue, a run to reach the moment it is killed at), which the other worker fills. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	pytest -n $(TEST_WORKERS) --dist loadgroup

cells: $(STAMP)
	@carcolor config $(CONFIG) --cells --no-deep

# The cell must be one of the grid's, and CONFIG the files that made results/ (results/config.yaml):
# else one line, and nothing changed. CARCOLOR_RETRAIN makes the cell train again even though its
# checkpoint is finished; an unfinished one (a killed `make cell`) is resumed.
cell: $(STAMP)
	@carcolor config --no-deep --cell "$(CELL)" --made-with results/config.yaml $(CONFIG)
	CARCOLOR_RETRAIN=$(CELL) snakemake --cores all$(CONFIGFILES) --forcerun results/runs/$(CELL)/train.ipynb

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
