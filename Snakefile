# carcolor: synthetic or real DVM-Car -> prepare -> one papermill notebook per grid cell -> tidy tables -> report.
#
#   snakemake --cores all                                   # everything, up to results/report/index.{html,pdf}
#   snakemake --cores all --configfile experiments/paper.yaml   # the lab's setup on real DVM-Car (GPU)
#   make cell CELL=<arch>-<optimizer>-s<seed>               # re-train one cell, refresh tables + report
#
# Everything a job's result depends on is an input file or a plain-valued param, so Snakemake's
# rerun triggers see every change. A rule's code inputs are derived from the module its shell runs
# (and the notebook or report it executes): every file of the package they import, never a list.
# The workflow's files come from this file's folder.
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


configfile: wf.readable_yaml(wf.here(workflow.basedir, wf.DEFAULTS))


# `snakemake --report results/snakemake-report.zip`: Snakemake's own report (provenance, runtimes, and
# the outputs marked report(...) below, by category).
report: wf.here(workflow.basedir, "report/snakemake/workflow.rst")


NOTEBOOK = wf.document(workflow.basedir, "train_cell")
# Jobs run with the interpreter that runs Snakemake ($CARCOLOR_PY), activated environment or not.
shell.prefix(wf.shell_prefix())
CLUSTER = wf.on_cluster(sys.argv)
CFG = wf.configure(config, NOTEBOOK, machine=workflow.is_main_process and not CLUSTER)
wf.use_compile_cache(COMPILE_CACHE)  # the cells share data/cache/inductor


# On a cluster these run where snakemake runs: light (tables, figures, cell pages, report), or needing
# the network (download).
localrules:
    all,
    record_config,
    download_archives,
    collect_tables,
    cell_page,
    figures,
    render_report,


wildcard_constraints:
    **wf.wildcard_constraints(CFG),


# Every run's record too (its notebook, metrics, predictions, provenance, summary): Snakemake re-makes a
# missing intermediate file only when something asks for it, and a killed forced re-training leaves
# none of them while the tables and the report still stand.
rule all:
    input:
        wf.REPORT,
        wf.FIGURES,
        wf.CONFIG_RECORD,
        wf.run_records(CFG),


rule record_config:
    input:
        wf.code(workflow.basedir, "record_config"),
    output:
        wf.CONFIG_RECORD,
    log:
        "results/logs/record_config.log",
    params:
        record=wf.config_record(CFG, workflow.overwrite_configfiles),
    message:
        "Recording the resolved configuration and its config files in {output}"
    shell:
        wf.command("record_config") + " --record {params.record:q} --out {output:q} 2>&1 | tee {log}"


rule download_archives:
    input:
        wf.code(workflow.basedir, "download_archives"),
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
        wf.command("download_archives") + " {params.names} --data-dir {params.data_dir:q} 2>&1 | tee {log}"


rule generate_synthetic:
    input:
        wf.code(workflow.basedir, "generate_synthetic"),
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
        wf.command("generate_synthetic") + " --out \"$(dirname {output:q})\" --settings {params.settings:q}"
        " --workers {threads} 2>&1 | tee {log}"


rule prepare_dataset:
    input:
        wf.prepare_inputs(CFG),
        wf.code(workflow.basedir, "prepare_dataset"),
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
        wf.command("prepare_dataset") + " --out \"$(dirname {output.dataset:q})\" --settings {params.settings:q}"
        " --workers {threads} 2>&1 | tee {log}"


rule train_cell:
    input:
        wf.PREPARED_FILES,
        wf.code(workflow.basedir, "train_cell"),
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
        wf.command("train_cell") + " --notebook {input.notebook:q} --out {output.notebook:q}"
        " --arch {wildcards.arch} --optimizer {wildcards.optimizer} --seed {wildcards.seed}"
        " --prepared \"$(dirname {input.dataset:q})\" --settings {params.settings:q} 2>&1 | tee {log}"


rule collect_tables:
    input:
        wf.PREPARED_FILES,
        wf.code(workflow.basedir, "collect_tables"),
        dataset=wf.PREPARED_JSON,
        summaries=wf.run_files(CFG, "summary.json"),
        metrics=wf.run_files(CFG, "metrics.csv"),
        predictions=wf.run_files(CFG, "predictions.csv"),
        provenance=wf.run_files(CFG, "provenance.json"),
    output:
        [report(t, caption=wf.caption(workflow.basedir, "tables"), category="Tables") for t in wf.TABLES],
    log:
        "results/logs/collect_tables.log",
    params:
        runs=wf.run_dirs(CFG),
    message:
        "Collecting {params.runs} into tidy tables"
    shell:
        wf.command("collect_tables") + " --runs {params.runs:q} --prepared \"$(dirname {input.dataset:q})\""
        " --out results/tables 2>&1 | tee {log}"


rule cell_page:
    input:
        wf.code(workflow.basedir, "cell_page"),
        notebook=f"{wf.RUN_DIR}/train.ipynb",
    output:
        report(wf.CELL_PAGE, caption=wf.caption(workflow.basedir, "cells"), category="Cells",
               labels={"architecture": "{arch}", "optimizer": "{optimizer}", "seed": "{seed}"}),
    log:
        "results/logs/cell_page/{arch}-{optimizer}-s{seed}.log",
    message:
        "Exporting the notebook of cell {wildcards.arch}-{wildcards.optimizer}-s{wildcards.seed} to {output}"
    shell:
        wf.command("cell_page") + " {input.notebook:q} --out {output:q} 2>&1 | tee {log}"


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
        wf.command("figures") + " --results results --out results/figures 2>&1 | tee {log}"


rule render_report:
    input:
        wf.TABLES,
        wf.cell_pages(CFG),  # the report links every run to its page
        wf.code(workflow.basedir, "render_report"),
        qmd=wf.document(workflow.basedir, "render_report"),
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
        wf.command("render_report") + " --qmd {input.qmd:q} --results results --out results/report 2>&1 | tee {log}"
