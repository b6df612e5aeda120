"""requirements.lock covers every dependency within its range, and carcolor.requirements reads and compares it."""
from __future__ import annotations

import platform
import re
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from carcolor import requirements as lock
# environment.yml entries that are no Python package of the lock, and why.
NOT_IN_LOCK = {
    "python": "the interpreter itself; the lock's header names its version",
    "pip": "the installer; pip freeze leaves it out",
    "quarto": "conda-forge's Quarto binary; PyPI has no installable Quarto",
}
# conda-forge's names for packages that PyPI spells differently.
CONDA_NAMES = {"pytorch": "torch"}


def _project(repo) -> dict:
    return tomllib.loads((repo / "pyproject.toml").read_text())["project"]


def _conda_name(entry: str) -> str:
    name = re.split(r"[<>=!~ \[;]", entry.strip(), maxsplit=1)[0]
    return lock.canonical(CONDA_NAMES.get(name.lower(), name))


@pytest.fixture(scope="module")
def locked(repo) -> dict:
    return lock.read(repo / lock.LOCK)


def test_lock_pins_every_pyproject_dependency_within_its_range(repo, locked):
    project = _project(repo)
    requirements = [(None, r) for r in project["dependencies"]]
    requirements += [(extra, r) for extra, rs in project["optional-dependencies"].items() for r in rs]
    problems = []
    for extra, text in requirements:
        req = Requirement(text)
        if req.marker and not req.marker.evaluate({"extra": extra or ""}):
            continue  # not for this platform: the lock is made on one
        name = lock.canonical(req.name)
        where = f"[{extra}]" if extra else "dependencies"
        if name not in locked:
            problems.append(f"{req.name} ({where}) is not in {lock.LOCK}")
        elif not req.specifier.contains(Version(locked[name][1]), prereleases=True):
            problems.append(f"{req.name}=={locked[name][1]} is outside pyproject's {where} range '{req.specifier}'")
    assert not problems, "\n".join(problems) + "\nRun `make lock`."


def test_lock_covers_every_package_of_environment_yml(repo, locked):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    names = {_conda_name(d) for d in conda + [p for p in pip if not p.startswith("-e")]}
    assert set(NOT_IN_LOCK) <= names  # each exclusion names an entry that is there
    missing = sorted(names - set(NOT_IN_LOCK) - set(locked))
    assert not missing, f"in environment.yml but not in {lock.LOCK}: {missing}"


def test_lock_holds_every_extra_and_says_how_it_was_made(repo):
    """The Makefile's EXTRAS names every extra of pyproject.toml, and the lock's header says which it froze."""
    extras = set(_project(repo)["optional-dependencies"])
    makefile = re.search(r"^EXTRAS\s*:?=\s*(.*)$", (repo / "Makefile").read_text(), re.M).group(1).split(",")
    assert set(makefile) == extras, f"Makefile EXTRAS {makefile}, pyproject extras {sorted(extras)}"
    head = [line for line in (repo / lock.LOCK).read_text().splitlines() if line.startswith("#")]
    text = "\n".join(head)
    assert "make lock" in text and "pip freeze --exclude-editable" in text
    made_with = re.search(r"pip install -e '\.\[([^\]]*)\]'", text).group(1).split(",")
    assert set(made_with) == extras
    assert re.search(r"Python 3\.\d+\.\d+", text) and ("linux" in text or "macosx" in text or "win" in text)
    assert "carcolor" not in lock.read(repo / lock.LOCK)


# --------------------------------------------------------------------------- carcolor.requirements


def test_compare_names_each_difference(tmp_path):
    pytest_version = metadata.version("pytest")
    path = tmp_path / "requirements.lock"
    path.write_text("# a comment\n\n"
                    f"PyTest=={pytest_version}\n"
                    "PyYAML==0.0.1  # an old pin\n"
                    "no_such-package==1.0\n")
    result = lock.compare(path)
    assert result["lock"] == str(path)
    assert result["matches"] is False
    assert result["differences"] == [
        {"package": "PyYAML", "locked": "0.0.1", "installed": metadata.version("pyyaml")},
        {"package": "no_such-package", "locked": "1.0", "installed": None},
    ]


def test_compare_matches_when_every_pin_is_installed(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_text(f"pytest=={metadata.version('pytest')}\npyyaml=={metadata.version('pyyaml')}\n")
    assert lock.compare(path) == {"lock": str(path), "matches": True, "differences": []}


def test_a_bad_lock_is_named_in_one_line(tmp_path):
    path = tmp_path / "requirements.lock"
    path.write_text("pytest==8.0\npyyaml>=6\n")
    with pytest.raises(ValueError, match=r"requirements.lock:2: 'pyyaml>=6' is not of the form name==version"):
        lock.read(path)
    with pytest.raises(FileNotFoundError, match="no lock file at .*absent.lock.*make lock"):
        lock.compare(tmp_path / "absent.lock")


def test_write_freezes_this_environment_and_compares_equal(tmp_path):
    path = lock.write(tmp_path / "requirements.lock", ["test"])
    text = path.read_text()
    assert text.startswith("# requirements.lock: ")
    assert f"Python {platform.python_version()}" in text and "pip install -e '.[test]'" in text
    assert not (tmp_path / ".requirements.lock.partial").exists()
    pins = lock.read(path)
    assert "pytest" in pins and "carcolor" not in pins  # the editable project is left out
    assert lock.compare(path)["matches"] is True


def test_check_command_prints_differences(tmp_path, capsys):
    path = tmp_path / "requirements.lock"
    path.write_text("pyyaml==0.0.1\n")
    assert lock.main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "pyyaml: locked 0.0.1, installed " in out and "1 differ" in out
    assert lock.main(["check", str(tmp_path / "absent.lock")]) == 2
