"""`python -m carcolor`: the same as the `carcolor` command (the Snakefile uses this form, so that the
rules run with the interpreter that runs Snakemake, activated environment or not)."""
import sys

from .cli import main

sys.exit(main())
