"""environment.yml (conda users) and pyproject.toml (pip users) name the same dependencies."""
import re
import tomllib

import yaml

# conda-forge's names for packages that PyPI spells differently.
CONDA_NAMES = {"pytorch": "torch"}
# In environment.yml but not a dependency of the package: the interpreter, pip, and Quarto itself
# (conda-forge has it; PyPI has no installable Quarto).
NOT_PACKAGE_DEPENDENCIES = {"python", "pip", "quarto"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"]
                 + [r for extra in project["optional-dependencies"].values() for r in extra]}
    env = yaml.safe_load((repo / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    names = {CONDA_NAMES.get(_name(d), _name(d)) for d in conda} - NOT_PACKAGE_DEPENDENCIES
    names |= {_name(d) for d in pip if not d.startswith("-e")}
    assert names == pip_names, {"only in environment.yml": sorted(names - pip_names),
                                "only in pyproject.toml": sorted(pip_names - names)}
    assert "-e ." in pip  # the package itself


def test_the_installed_snakemake_runs_no_more_jobs_than_cores(tmp_path):
    """Two CPU cells train side by side on 2 cores, and their times are compared: Snakemake must not
    start a third. Some releases (9.15) did after a lone first job (it never took its cores, then gave
    them back), as the workflow's first job, drawing the data, always is."""
    import subprocess
    import sys

    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: expand("out/{i}", i=range(6))\n'
        'rule first:\n    output: "first"\n    threads: 2\n    shell: "touch {output}"\n'
        'rule job:\n    input: "first"\n    output: "out/{i}"\n    threads: 1\n'
        '    shell: "date +%s.%N > {output}; sleep 1.5"\n')
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "all", "--directory", str(tmp_path),
                 "-s", str(tmp_path / "Snakefile")]
    out = subprocess.run(snakemake, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    starts = sorted(float((tmp_path / "out" / str(i)).read_text()) for i in range(6))
    running = max(sum(1 for s in starts if s <= t < s + 1.5) for t in starts)
    assert running <= 2, f"{running} jobs ran at once on --cores 2"
