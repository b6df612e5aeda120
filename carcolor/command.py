"""One `carcolor` sub-command run as a program: `python -m carcolor.<stage>.<module> ARGS`.

The Snakefile runs each stage's own module this way, so a job runs exactly that module and what
it imports (carcolor.sources derives the job's code inputs from the same module name). A module
that is a command defines `add_arguments(parser)` and `run(args) -> int`, and ends with

    if __name__ == "__main__":
        from carcolor.command import main
        sys.exit(main(__spec__.name))

`main` imports the module again under its own name (not as __main__), so worker processes and
pickled functions see one module, not two copies.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys


def parser_for(name: str, module) -> argparse.ArgumentParser:
    doc = (module.__doc__ or "").strip().splitlines()
    parser = argparse.ArgumentParser(prog=f"carcolor {name}", description=doc[0] if doc else None)
    module.add_arguments(parser)
    return parser


def main(module_name: str, argv: list[str] | None = None, name: str | None = None) -> int:
    """Parse argv for the command in module_name and run it; a ValueError or a missing file ends in
    one line (`carcolor <name>: <reason>`) and exit status 2."""
    module = importlib.import_module(module_name)
    name = name or getattr(module, "COMMAND", module_name.rsplit(".", 1)[-1])
    args = parser_for(name, module).parse_args(argv)
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"carcolor {name}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped reading (`carcolor config --cells | head`, `| grep -q`): not an error of ours.
        # Python would report it again when it flushes stdout at exit, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
