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
