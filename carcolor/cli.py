"""The `carcolor` command: one sub-command per workflow stage, each the program of one module.

`carcolor NAME ARGS` runs the module's command exactly as the Snakefile's `python -m MODULE ARGS`
does (carcolor.command); only the named module is imported, so `carcolor generate` loads no torch.
"""
from __future__ import annotations

import sys

from . import command

# name -> (module, what it does); the module defines add_arguments(parser) and run(args).
COMMANDS = {
    "download": ("carcolor.data.download", "download the DVM-Car archives from Figshare"),
    "generate": ("carcolor.data.synth", "draw the synthetic DVM-format dataset"),
    "prepare": ("carcolor.data.prepare", "select, split by advert and decode into the uint8 cache"),
    "train-cell": ("carcolor.training.notebook", "train one grid cell: papermill runs the training notebook"),
    "collect": ("carcolor.analysis.tables", "gather every cell's results into tidy tables"),
    "cell-page": ("carcolor.reporting.pages", "export one cell's executed notebook as a self-contained HTML page"),
    "figures": ("carcolor.reporting.plots", "draw the report's figures as PNG files"),
    "render": ("carcolor.reporting.render", "render the report (HTML and PDF)"),
    "config": ("carcolor.checks", "validate config files (merged in order over the defaults) and print the result"),
    "record-config": ("carcolor.config", "write the run's resolved config and config files (results/config.yaml)"),
    "archive": ("carcolor.reproduction.archive", "pack a finished run as one zip with RO-Crate metadata"),
    "compare": ("carcolor.reproduction.compare", "did a run reproduce a reference? a page with a verdict per metric"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {what}" for name, (_, what) in COMMANDS.items()]
    return ("usage: carcolor COMMAND [ARGS]   (carcolor COMMAND --help for its arguments)\n\n"
            + (__doc__ or "").strip().splitlines()[0] + "\n\ncommands:\n" + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name = argv[0]
    if name not in COMMANDS:
        print(f"carcolor: unknown command {name!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return command.main(COMMANDS[name][0], argv[1:], name=name)


if __name__ == "__main__":
    sys.exit(main())
