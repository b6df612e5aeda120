# carcolor: synthetic or real DVM-Car -> prepare -> one papermill notebook per grid cell -> tidy tables -> report.
#
#   snakemake --cores all                                   # everything, up to results/report/index.{html,pdf}
#   snakemake --cores all --configfile experiments/paper.yaml   # the lab's setup on real DVM-Car (GPU)
#   make cell CELL=<arch>-<optimizer>-s<seed>               # re-train one cell, refresh tables + report
#
# Everything a job's result depends on is an input file or a plain-valued param, so Snakemake's
# rerun triggers see every change. The workflow's files come from this file's folder.
#
# `snakemake --lint` asks for a conda environment or container per rule. That lint does not apply:
# every job runs with the interpreter that runs Snakemake ($CARCOLOR_PY), whose environment is the
# project's own (.venv from requirements.lock, or environment.yml), recorded per cell in
# results/tables/provenance.csv; a per-rule environment would be a second, diverging copy of it.

import sys

sys.path.insert(0, workflow.basedir)  # this checkout's carcolor, not another checkout's

from carcolor import runlock
from carcolor import workflow as wf

runlock.guard_run(sys.argv, main_process=workflow.is_main_process)
wf.use_checkout(workflow.basedir)
wf.export_configfiles(workflow.overwrite_configfiles)  # each cell records the command that re-runs it
COMPILE_CACHE = wf.compile_cache_snapshot()  # the user's, before the checks below import torch


configfile: wf.readable_yaml(wf.here(workflow.basedir, "experiments/config.yaml"))


# `snakemake --report results/snakemake-report.zip`: Snakemake's own report (provenance, runtimes, and
# the outputs marked report(...) below, by category).
report: wf.here(workflow.basedir, "report/snakemake/workflow.rst")


NOTEBOOK = wf.here(workflow.basedir, "experiments/train.ipynb")
# Jobs run with the interpreter that runs Snakemake ($CARCOLOR_PY), activated environment or not.
shell.prefix(wf.shell_prefix())
CLUSTER = wf.on_cluster(sys.argv)
CFG = wf.configure(config, NOTEBOOK, device=workflow.is_main_process and not CLUSTER)
wf.use_compile_cache(COMPILE_CACHE)  # the cells share data/cache/inductor
CELLS = wf.cell_names(CFG)


# On a cluster these run where snakemake runs: light (tables, figures, cell pages, report), or needing
# the network (download).
localrules:
    all,
    download_archives,
    collect_tables,
    cell_page,
    figures,
    render_report,


wildcard_constraints:
    **wf.wildcard_constraints(CFG),


rule all:
    input:
        wf.REPORT,
        wf.FIGURES,


rule download_archives:
    output:
        wf.download_targets(CFG),
    log:
        "results/logs/download_archives.log",
    params:
        names=CFG["data"]["download"],
        data_dir=CFG["data"]["download_dir"],
    message:
        "Downloading DVM-Car archives {params.names} (resumable; progress in the log)"
    shell:
        "$CARCOLOR_PY -m carcolor download {params.names} --data-dir {params.data_dir:q} 2>&1 | tee {log}"


rule generate_synthetic:
    input:
        wf.code(workflow.basedir, "generate"),
    output:
        wf.SYNTHETIC_MARKER,
    log:
        "results/logs/generate_synthetic.log",
    params:
        settings=wf.generate_settings(CFG),
    threads: wf.all_cpus()
    resources:
        mem_mb=wf.generate_mem_mb,
    message:
        "Drawing the synthetic DVM-format dataset next to {output} ({threads} processes)"
    shell:
        "$CARCOLOR_PY -m carcolor generate --out \"$(dirname {output:q})\" --settings {params.settings:q}"
        " --workers {threads} 2>&1 | tee {log}"


rule prepare_dataset:
    input:
        wf.prepare_inputs(CFG),
        wf.code(workflow.basedir, "prepare"),
    output:
        wf.PREPARED_FILES,
        dataset=wf.PREPARED_JSON,
    log:
        "results/logs/prepare_dataset.log",
    params:
        settings=wf.prepare_settings(CFG),
    threads: wf.prepare_threads(CFG)
    resources:
        mem_mb=wf.prepare_mem_mb(CFG),
    message:
        "Selecting colours, splitting by advert and decoding into the cache next to {output.dataset}"
    shell:
        "$CARCOLOR_PY -m carcolor prepare --out \"$(dirname {output.dataset:q})\" --settings {params.settings:q}"
        " --workers {threads} 2>&1 | tee {log}"


rule train_cell:
    input:
        wf.PREPARED_FILES,
        wf.code(workflow.basedir, "train"),
        dataset=wf.PREPARED_JSON,
        notebook=NOTEBOOK,
    output:
        notebook=f"{wf.RUN_DIR}/train.ipynb",
        metrics=f"{wf.RUN_DIR}/metrics.csv",
        predictions=f"{wf.RUN_DIR}/predictions.csv",
        summary=f"{wf.RUN_DIR}/summary.json",
        provenance=f"{wf.RUN_DIR}/provenance.json",
    log:
        "results/logs/train_cell/{arch}-{optimizer}-s{seed}.log",
    params:
        settings=wf.train_settings(CFG),
    threads: wf.train_threads(CFG)
    resources:
        gpu=wf.gpus_per_cell(CFG, cluster=CLUSTER),
        gres=wf.cell_gres(CFG, cluster=CLUSTER),
        mem_mb=wf.train_mem_mb(CFG),
    message:
        "Training cell {wildcards.arch}-{wildcards.optimizer}-s{wildcards.seed} ({threads} threads): "
        "papermill -> {output.notebook}"
    shell:
        "$CARCOLOR_PY -m carcolor train-cell --notebook {input.notebook:q} --out {output.notebook:q}"
        " --arch {wildcards.arch} --optimizer {wildcards.optimizer} --seed {wildcards.seed}"
        " --prepared \"$(dirname {input.dataset:q})\" --settings {params.settings:q} 2>&1 | tee {log}"


rule collect_tables:
    input:
        wf.PREPARED_FILES,
        wf.code(workflow.basedir, "collect"),
        dataset=wf.PREPARED_JSON,
        summaries=expand("results/runs/{cell}/summary.json", cell=CELLS),
        metrics=expand("results/runs/{cell}/metrics.csv", cell=CELLS),
        predictions=expand("results/runs/{cell}/predictions.csv", cell=CELLS),
        provenance=expand("results/runs/{cell}/provenance.json", cell=CELLS),
    output:
        [report(t, caption=wf.caption(workflow.basedir, "tables"), category="Tables") for t in wf.TABLES],
    log:
        "results/logs/collect_tables.log",
    params:
        runs=expand("results/runs/{cell}", cell=CELLS),
    message:
        "Collecting {params.runs} into tidy tables"
    shell:
        "$CARCOLOR_PY -m carcolor collect --runs {params.runs:q} --prepared \"$(dirname {input.dataset:q})\""
        " --out results/tables 2>&1 | tee {log}"


rule cell_page:
    input:
        wf.code(workflow.basedir, "pages"),
        notebook=f"{wf.RUN_DIR}/train.ipynb",
    output:
        report(wf.CELL_PAGE, caption=wf.caption(workflow.basedir, "cells"), category="Cells",
               labels={"architecture": "{arch}", "optimizer": "{optimizer}", "seed": "{seed}"}),
    log:
        "results/logs/cell_page/{arch}-{optimizer}-s{seed}.log",
    message:
        "Exporting the notebook of cell {wildcards.arch}-{wildcards.optimizer}-s{wildcards.seed} to {output}"
    shell:
        "$CARCOLOR_PY -m carcolor cell-page {input.notebook:q} --out {output:q} 2>&1 | tee {log}"


rule figures:
    input:
        wf.TABLES,
        wf.code(workflow.basedir, "figures"),
    output:
        [report(f, caption=wf.caption(workflow.basedir, "figures"), category="Figures") for f in wf.FIGURES],
    log:
        "results/logs/figures.log",
    message:
        "Drawing the report's figures as PNG files into results/figures/"
    shell:
        "$CARCOLOR_PY -m carcolor figures --results results --out results/figures 2>&1 | tee {log}"


rule render_report:
    input:
        wf.TABLES,
        wf.cell_pages(CFG),  # the report links every run to its page
        wf.code(workflow.basedir, "render"),
        qmd=wf.here(workflow.basedir, "report/index.qmd"),
        project=wf.here(workflow.basedir, "_quarto.yml"),
        bibliography=wf.here(workflow.basedir, "report/references.bib"),
        lab=wf.here(workflow.basedir, "report/lab.csv"),
    output:
        [report(r, caption=wf.caption(workflow.basedir, "report"), category="Report") for r in wf.REPORT],
    log:
        "results/logs/render_report.log",
    message:
        "Rendering the report (Quarto if installed, else pandoc + Typst) into results/report/"
    shell:
        "$CARCOLOR_PY -m carcolor render --qmd {input.qmd:q} --results results --out results/report 2>&1 | tee {log}"
