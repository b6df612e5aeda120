"""What the Snakefile needs, kept here where tests reach it: validated config, paths, rule arguments.

Paths of the workflow's own files (config, notebook, report, code) are made from the Snakefile's
folder (`workflow.basedir`), never from wherever the package was installed, and relative to the
working directory when they lie under it, so a copied project keeps the same input paths.
Everything a job's result depends on reaches Snakemake as a plain value (recorded in its
metadata, so the params trigger sees a change) or as an input file.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

from . import config as cfgmod
from . import defaults, layout, sources
from .cli import COMMANDS
from .config import ConfigError
from .layout import CELL_PATTERN

SYNTHETIC_MARKER = layout.SYNTHETIC_MARKER
PREPARED_JSON = layout.PREPARED_JSON  # the rules name it apart: its folder is the prepared data's
PREPARED_FILES = [path for path in (f"{layout.PREPARED_DIR}/{name}" for name in layout.PREPARED_FILES)
                  if path != PREPARED_JSON]
RUN_DIR = layout.run_dir(CELL_PATTERN)
TABLES = [f"{layout.TABLES_DIR}/{name}" for name in layout.TABLE_FILES]
FIGURES = [f"{layout.FIGURES_DIR}/{name}.png" for name in layout.FIGURE_NAMES]
REPORT = [f"{layout.REPORT_DIR}/{name}" for name in layout.REPORT_FILES]
CELL_PAGE = f"{layout.REPORT_DIR}/{layout.page_path(CELL_PATTERN)}"

# What each rule runs: the `carcolor` command whose module its shell starts (`python -m MODULE`), and the documents
# whose code that module executes (the training notebook, the report). A rule's code inputs are
# derived from these by carcolor.sources: the files of everything they import inside carcolor.
ENTRY = {
    "download_archives": ("download", ()),
    "generate_synthetic": ("generate", ()),
    "prepare_dataset": ("prepare", ()),
    "train_cell": ("train-cell", ("experiments/train.ipynb",)),
    "collect_tables": ("collect", ()),
    "cell_page": ("cell-page", ()),
    "figures": ("figures", ()),
    "render_report": ("render", ("report/index.qmd",)),
    "record_config": ("record-config", ()),
}
CONFIG_RECORD = layout.CONFIG_RECORD
DEFAULTS = defaults.DEFAULTS_NAME


def entry_module(rule: str) -> str:
    """The module a rule's job runs: its `carcolor` command's (carcolor.cli.COMMANDS)."""
    return COMMANDS[ENTRY[rule][0]][0]


def shell_prefix() -> str:
    """Every job's shell starts by naming the interpreter that runs Snakemake, so the jobs use the
    same environment even when it is not activated (.venv/bin/snakemake called by its path)."""
    return f"set -euo pipefail; CARCOLOR_PY={shlex.quote(sys.executable)}; "  # the first part: Snakemake's default


# Where the deep checks (carcolor.checks) remember a config that passed, so a no-op run stays fast.
CHECKED_DIR = ".snakemake/carcolor-checks"


def configure(config: dict, notebook: str, *, machine: bool = True) -> dict:
    """Validate Snakemake's config and the notebook template, check what this machine must have when the
    jobs run on it (`machine`), then build the models and optimizers once (remembered per config and
    code); on a problem print one line and stop before anything runs."""
    from . import checks

    try:
        cfg = cfgmod.validate(config)
        checks.check_config(cfg)
        checks.check_notebook(notebook)
        if machine:
            checks.check_machine(cfg)
        checks.check_built_cached(cfg, CHECKED_DIR)
        return cfg
    except (ConfigError, ValueError) as exc:
        print(f"carcolor: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def readable_yaml(path: str) -> str:
    """path, after checking that it parses: a YAML error is named by file and line, in one line
    (Snakemake's own message names neither)."""
    try:
        cfgmod.read_yaml(path)
    except ConfigError as exc:
        print(f"carcolor: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return path


def on_cluster(argv: list[str]) -> bool:
    """Whether jobs may run elsewhere (an executor or a profile is named): then this machine's GPU
    says nothing about theirs, and the CUDA check is left to the job."""
    return any(arg.split("=", 1)[0] in ("--executor", "-e", "--profile") for arg in argv[1:])


def use_checkout(basedir: str) -> None:
    """Make this checkout's package the one that jobs import (PYTHONPATH is inherited by every job)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != basedir]
    os.environ["PYTHONPATH"] = os.pathsep.join([basedir, *paths])


def here(basedir: str, relative: str) -> str:
    """A workflow file by its path in the checkout; relative to the working directory when under it."""
    path = Path(basedir, relative).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def code_files(rule: str, basedir: str | Path = sources.PACKAGE_DIR.parent) -> list[Path]:
    """Absolute paths of the package files a rule's job runs (ENTRY, carcolor.sources)."""
    documents = ENTRY[rule][1]
    imported = {m for doc in documents for m in sources.document_imports(Path(basedir, doc))}
    return sources.closure([entry_module(rule), *sorted(imported)])


def code(basedir: str, rule: str) -> list[str]:
    """A rule's code inputs: the files of its module and of what it and its documents import."""
    return [here(basedir, str(path)) for path in code_files(rule, basedir)]


def command(rule: str) -> str:
    """The start of a rule's shell command: the interpreter running ENTRY's module."""
    return f"$CARCOLOR_PY -m {entry_module(rule)}"


def document(basedir: str, rule: str) -> str:
    """The one document a rule executes (the notebook template, the report's .qmd)."""
    (doc,) = ENTRY[rule][1]
    return here(basedir, doc)


def caption(basedir: str, name: str) -> str:
    """The caption of a category of outputs in Snakemake's report (report/snakemake/<name>.rst)."""
    return here(basedir, f"report/snakemake/{name}.rst")


def cell_names(cfg: dict) -> list[str]:
    return [c.name for c in cfgmod.cells(cfg)]


def cell_pages(cfg: dict) -> list[str]:
    return [f"{layout.REPORT_DIR}/{layout.page_path(cell)}" for cell in cell_names(cfg)]


def run_files(cfg: dict, name: str) -> list[str]:
    """One file of every cell's run folder (`name` one of layout.RUN_FILES)."""
    return [f"{layout.run_dir(cell)}/{name}" for cell in cell_names(cfg)]


def run_records(cfg: dict) -> list[str]:
    """Every file of every cell's record (layout.RUN_FILES)."""
    return [path for name in layout.RUN_FILES for path in run_files(cfg, name)]


def run_dirs(cfg: dict) -> list[str]:
    return [layout.run_dir(cell) for cell in cell_names(cfg)]


def wildcard_constraints(cfg: dict) -> dict[str, str]:
    """arch, optimizer and seed match exactly this grid's values, so a cell name parses one way."""
    grid = cfg["grid"]
    return {"arch": "|".join(re.escape(a) for a in grid["archs"]),
            "optimizer": "|".join(re.escape(o) for o in grid["optimizers"]),
            "seed": "|".join(str(s) for s in grid["seeds"])}


def source_paths(cfg: dict) -> list[str]:
    """The DVM sources prepare reads: the synthetic tree, or the configured (or downloaded) archives."""
    data = cfg["data"]
    if data["source"] == "synthetic":
        return [f"{layout.SYNTHETIC_DIR}/resized_DVM"]
    return list(data["paths"]) + cfgmod.downloaded(data, images_only=True)


def prepare_inputs(cfg: dict) -> list[str]:
    data = cfg["data"]
    if data["source"] == "synthetic":
        return [SYNTHETIC_MARKER]
    inputs = source_paths(cfg)
    if data.get("image_table"):
        inputs.append(data["image_table"])
    return inputs


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def prepare_settings(cfg: dict) -> str:
    data = cfg["data"]
    settings = {k: data[k] for k in ("colours", "top_n_colours", "n_train_per_colour", "n_val_per_colour",
                                      "n_test_per_colour", "image_size", "seed", "image_table", "viewpoints")}
    settings["sources"] = source_paths(cfg)
    settings["synthetic"] = data["source"] == "synthetic"
    return _json(settings)


def all_cpus() -> int:
    """Threads of a job whose result does not depend on them: every CPU, capped by Snakemake's --cores."""
    return os.cpu_count() or 1


def prepare_threads(cfg: dict) -> int:
    """Decoding processes: data.workers when set, else every CPU (the cache is the same for any number)."""
    return cfg["data"]["workers"] or all_cpus()


def generate_settings(cfg: dict) -> str:
    colours = cfg["data"]["colours"]
    if not colours:
        from .data.colours import COLOURS

        colours = list(COLOURS)
    return _json({"colours": colours, **cfg["synthetic"]})


def download_targets(cfg: dict) -> list[str]:
    return cfgmod.downloaded(cfg["data"])


def train_settings(cfg: dict) -> str:
    """The resolved `train` section, threads included, as one plain string: the same for every cell,
    recorded by Snakemake, so changing any training setting re-runs every cell."""
    return _json(cfg["train"])


def train_threads(cfg: dict) -> int:
    return cfg["train"]["threads"]


def gpus_per_cell(cfg: dict, nvidia: str = "/dev/nvidiactl", *, cluster: bool = False) -> int:
    """1 when a cell will train on a GPU (the `gpu` resource then runs one cell per GPU), else 0, so
    that CPU cells run side by side, `train.threads` each, as many as --cores allows. Decided without
    importing torch (the Snakefile runs on every invocation): NVIDIA's driver node stands for CUDA.
    On a cluster 0: the cluster allocates GPUs (`cell_gres`), and a count here would cap how many
    cells the whole cluster runs at once at the `gpu=` of this machine's profile."""
    from .training.gpus import wants_cuda

    return 0 if cluster else int(wants_cuda(cfg["train"]["device"], nvidia))


def compile_cache_snapshot() -> dict:
    """The user's torch.compile cache variables, taken before anything here imports torch."""
    return {k: v for k, v in os.environ.items() if k.startswith("TORCHINDUCTOR_")}


def use_compile_cache(before: dict) -> None:
    """Point the jobs' torch.compile caches at the working directory's (carcolor.training.notebook), keeping
    what the user set (`before`, a compile_cache_snapshot): the config checks import torch, which
    writes its default cache folder into this environment, and every job would inherit that."""
    from .training.notebook import compile_cache_env

    os.environ.update(compile_cache_env(before))


def configfile_names(files) -> list[str]:
    """The --configfile paths of this run, relative to the working directory where they lie under it."""
    cwd = Path.cwd().resolve()
    shown = []
    for f in files or []:
        path = Path(f).resolve()
        try:
            shown.append(str(path.relative_to(cwd)))
        except ValueError:
            shown.append(str(path))
    return shown


def export_configfiles(files) -> None:
    """Tell the jobs which --configfile paths this run was given (for the re-run command each cell records)."""
    from .provenance import CONFIGFILES_ENV

    os.environ[CONFIGFILES_ENV] = json.dumps(configfile_names(files))


def config_record(cfg: dict, files) -> str:
    """What results/config.yaml records, as one plain value: the resolved config and the config files."""
    return _json({"configfiles": configfile_names(files), "config": cfg})


def cell_gres(cfg: dict, *, cluster: bool = False) -> str:
    """The generic resource a training cell's cluster job asks for: `gpu:N` from cluster.gpus_per_job
    ("" on one machine, or for a CPU-only cluster with gpus_per_job 0)."""
    n = cfg["cluster"]["gpus_per_job"]
    return f"gpu:{n}" if cluster and n else ""


# Memory a job asks the cluster for (MB): a fixed part, the uint8 cache (a training job reads it whole
# every epoch, memory-mapped; preparation writes it) and what grows with the settings. Measured as
# the peak summed RSS of the job's processes on the CPU, rounded up: a smoke cell (32 px, batch 16)
# 999 MiB with MobileNetV2, 1041 MiB with MobileNetV1; at 128 px, batch 32, 2045 MiB, so a training
# batch keeps about 2,050 bytes per input pixel for the backward pass; preparation (128 px) 85 MiB
# with one decoding process, 205 with 2 and 329 with 4; drawing the default synthetic data 85, 211
# and 343 MiB with 1, 2 and 4 processes (about 64 MiB each).
TRAIN_BASE_MB = 1100
ACTIVATION_BYTES_PER_PIXEL = 2200
DATA_BASE_MB = 100
DATA_MB_PER_WORKER = 70


def cache_bytes(cfg: dict) -> int:
    """Bytes of the prepared image cache: images x channels (3) x image_size^2, uint8 (carcolor.data.prepare)."""
    data = cfg["data"]
    per_colour = data["n_train_per_colour"] + data["n_val_per_colour"] + data["n_test_per_colour"]
    return cfgmod.n_classes(cfg) * per_colour * 3 * data["image_size"] ** 2


def _mib(n_bytes: int) -> int:
    return -(-n_bytes // 2**20)


def train_mem_mb(cfg: dict) -> int:
    """Memory (MB) a training cell's job asks for: the fixed part, the cache, a batch's activations."""
    size, batch = cfg["data"]["image_size"], cfg["train"]["batch_size"]
    return TRAIN_BASE_MB + _mib(cache_bytes(cfg)) + _mib(batch * size * size * ACTIVATION_BYTES_PER_PIXEL)


def prepare_mem_mb(cfg: dict):
    """Memory (MB) of the preparation job, as Snakemake's resource function of its threads (decoding
    processes, which a profile may set): the fixed part, each process and the cache it writes."""
    cache = _mib(cache_bytes(cfg))

    def mem_mb(wildcards, threads) -> int:
        return DATA_BASE_MB + DATA_MB_PER_WORKER * threads + cache

    return mem_mb


def generate_mem_mb(wildcards, threads) -> int:
    """Memory (MB) of the job that draws the synthetic data: the fixed part and each drawing process."""
    return DATA_BASE_MB + DATA_MB_PER_WORKER * threads
