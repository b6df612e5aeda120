# carcolor: synthetic or real DVM-Car -> prepare -> one papermill notebook per grid cell -> tidy tables -> report.
#
#   snakemake --cores all                                   # everything, up to results/report/index.{html,pdf}
#   snakemake --cores all --configfile experiments/paper.yaml   # the lab's setup on real DVM-Car (GPU)
#   snakemake --cores all --forcerun results/runs/<cell>/train.ipynb   # re-train one cell, refresh tables + report

from carcolor import workflow as wf


configfile: wf.repo_file("experiments/config.yaml")


CFG = wf.configure(config)
CELLS = wf.cell_names(CFG)


wildcard_constraints:
    cell=wf.cell_pattern(CFG),


rule all:
    input:
        wf.REPORT,


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
        "carcolor download {params.names} --data-dir {params.data_dir:q} 2>&1 | tee {log}"


rule generate_synthetic:
    input:
        wf.code("generate"),
    output:
        wf.SYNTHETIC_MARKER,
    log:
        "results/logs/generate_synthetic.log",
    params:
        settings=wf.generate_settings(CFG),
    threads: workflow.cores
    message:
        "Drawing the synthetic DVM-format dataset next to {output} ({threads} processes)"
    shell:
        "carcolor generate --out \"$(dirname {output:q})\" --settings {params.settings:q} --workers {threads}"
        " 2>&1 | tee {log}"


rule prepare_dataset:
    input:
        wf.prepare_inputs(CFG),
        wf.code("prepare"),
    output:
        wf.PREPARED_FILES,
        dataset=wf.PREPARED_JSON,
    log:
        "results/logs/prepare_dataset.log",
    params:
        settings=wf.prepare_settings(CFG),
    threads: wf.prepare_threads(CFG, workflow.cores)
    message:
        "Selecting colours, splitting by advert and decoding into the cache next to {output.dataset}"
    shell:
        "carcolor prepare --out \"$(dirname {output.dataset:q})\" --settings {params.settings:q}"
        " --workers {threads} 2>&1 | tee {log}"


rule train_cell:
    input:
        wf.PREPARED_FILES,
        wf.PREPARED_JSON,
        wf.code("train"),
        notebook=wf.repo_file("experiments/train.ipynb"),
    output:
        notebook="results/runs/{cell}/train.ipynb",
        metrics="results/runs/{cell}/metrics.csv",
        predictions="results/runs/{cell}/predictions.csv",
        summary="results/runs/{cell}/summary.json",
    log:
        "results/logs/train_cell/{cell}.log",
    params:
        args=wf.papermill_args(CFG),
    threads: workflow.cores
    resources:
        gpu=1,
    message:
        "Training cell {wildcards.cell} ({threads} threads): papermill -> {output.notebook}"
    shell:
        "papermill {input.notebook:q} {output.notebook:q} {params.args} -p threads {threads}"
        " --kernel python3 --log-output --no-progress-bar 2>&1 | tee {log}"


rule collect_tables:
    input:
        wf.PREPARED_FILES,
        wf.code("collect"),
        dataset=wf.PREPARED_JSON,
        summaries=expand("results/runs/{cell}/summary.json", cell=CELLS),
        metrics=expand("results/runs/{cell}/metrics.csv", cell=CELLS),
        predictions=expand("results/runs/{cell}/predictions.csv", cell=CELLS),
    output:
        wf.TABLES,
    log:
        "results/logs/collect_tables.log",
    params:
        runs=expand("results/runs/{cell}", cell=CELLS),
    message:
        "Collecting {params.runs} into tidy tables"
    shell:
        "carcolor collect --runs {params.runs:q} --prepared \"$(dirname {input.dataset:q})\" --out results/tables"
        " 2>&1 | tee {log}"


rule render_report:
    input:
        wf.TABLES,
        wf.code("render"),
        qmd=wf.repo_file("report/index.qmd"),
        project=wf.repo_file("_quarto.yml"),
        bibliography=wf.repo_file("report/references.bib"),
        lab=wf.repo_file("report/lab.csv"),
    output:
        wf.REPORT,
    log:
        "results/logs/render_report.log",
    message:
        "Rendering the report (Quarto if installed, else pandoc + Typst) into results/report/"
    shell:
        "carcolor render --qmd {input.qmd:q} --results results --out results/report 2>&1 | tee {log}"
