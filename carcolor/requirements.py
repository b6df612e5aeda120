"""requirements.lock: the exact version of every package `make` installs, and whether a run used them.

`make lock` builds a clean virtual environment, installs the project with its extras there and calls
`python -m carcolor.requirements write requirements.lock --extras ...` with that environment's interpreter: the
output of `pip freeze --exclude-editable` under a header saying how, with which Python, on which platform.
`compare()` checks the running interpreter's packages against the lock (for the provenance record);
`python -m carcolor.requirements check` prints the same.
"""
from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import sysconfig
from datetime import date
from importlib import metadata
from pathlib import Path

from . import atomic

LOCK = "requirements.lock"
_PINNED = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares it: case, '-', '_' and '.' do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read(lock_path: str | Path) -> dict[str, tuple[str, str]]:
    """{canonical name: (name as written, version)} of a pip-freeze style lock file."""
    path = Path(lock_path)
    if not path.is_file():
        raise FileNotFoundError(f"carcolor: no lock file at '{path}'; `make lock` writes it")
    pinned = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PINNED.fullmatch(line)
        if not match:
            raise ValueError(f"carcolor: {path}:{number}: '{line}' is not of the form name==version "
                             "(a lock holds exact pins only; regenerate it with `make lock`)")
        pinned[canonical(match.group(1))] = (match.group(1), match.group(2))
    return pinned


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def compare(lock_path: str | Path = LOCK) -> dict:
    """Whether this interpreter runs with the locked versions: every package of the lock, installed
    at exactly its locked version. Packages installed beyond the lock are not differences."""
    differences = []
    for name, version in read(lock_path).values():
        found = installed(name)
        if found != version:
            differences.append({"package": name, "locked": version, "installed": found})
    return {"lock": str(lock_path), "matches": not differences, "differences": differences}


def header(extras: list[str], pip_version: str, today: date | None = None) -> str:
    """The comment block on top of the lock: how it was made, with which Python, on which platform."""
    spec = f".[{','.join(extras)}]" if extras else "."
    libc = " ".join(platform.libc_ver()).strip()
    return "\n".join([
        f"# {LOCK}: the exact versions `make` and `make test` install (then `pip install --no-deps -e .`).",
        f"# Made by `make lock` on {(today or date.today()).isoformat()}: a clean venv, "
        f"pip install -e '{spec}', pip freeze --exclude-editable.",
        f"# Python {platform.python_version()} ({platform.python_implementation()}), pip {pip_version}, "
        f"{sysconfig.get_platform()}" + (f" ({libc})" if libc else "") + ".",
        "# Edit pyproject.toml, not this file; `make UNLOCKED=1 ...` installs from pyproject.toml's ranges.",
    ]) + "\n"


def write(lock_path: str | Path, extras: list[str]) -> Path:
    """Freeze this interpreter's environment into lock_path, atomically."""
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            check=True, capture_output=True, text=True).stdout
    lines = [line for line in freeze.splitlines() if line.strip()]
    for line in lines:
        if not _PINNED.fullmatch(line.strip()):
            raise ValueError(f"carcolor: pip freeze gave '{line}', not name==version; "
                             "install every package from an index, not from a path or URL")
    text = header(extras, installed("pip") or "unknown") + "\n".join(lines) + "\n"
    return atomic.write_text(lock_path, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m carcolor.requirements", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="freeze this interpreter's packages into the lock file")
    w.add_argument("lock", nargs="?", default=LOCK)
    w.add_argument("--extras", default="", help="comma-separated extras that were installed, for the header")
    c = sub.add_parser("check", help="compare this interpreter's packages with the lock file")
    c.add_argument("lock", nargs="?", default=LOCK)
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            path = write(args.lock, [e for e in args.extras.split(",") if e])
            print(f"[lock] {len(read(path))} packages -> {path}", file=sys.stderr)
            return 0
        result = compare(args.lock)
    except (FileNotFoundError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    for d in result["differences"]:
        print(f"{d['package']}: locked {d['locked']}, installed {d['installed'] or 'none'}")
    print(f"{result['lock']}: {'matches' if result['matches'] else str(len(result['differences'])) + ' differ'}")
    return 0 if result["matches"] else 1


if __name__ == "__main__":
    sys.exit(main())
