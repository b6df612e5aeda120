"""The documented commands: `make`, `make cell`, `make cells` honour CONFIG and fail in one line."""
import subprocess
import sys


def test_make_honours_config_and_checks_the_files_first(repo, tmp_path, tool_env):
    """`make CONFIG=f` runs the grid of f merged over the defaults; a config file Snakemake would report
    in a traceback, or without its name, is named in one line before Snakemake starts."""
    out = subprocess.run(["make", "-n", "-f", str(repo / "Makefile"), "report", "CONFIG=tests/smoke.yaml"],
                         cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-2:] == ["carcolor config --no-deep tests/smoke.yaml >/dev/null",
                                            "snakemake --cores all --configfile tests/smoke.yaml"]
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- data\n")
    for name, why in [("nothere.yaml", "does not exist"), ("empty.yaml", "is empty"),
                      ("list.yaml", "the top level is a list")]:
        out = subprocess.run([sys.executable, "-m", "carcolor", "config", "--no-deep", str(tmp_path / name)],
                             cwd=repo, capture_output=True, text=True, env=tool_env)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert str(tmp_path / name) in out.stderr and why in out.stderr and "Traceback" not in out.stderr


def test_a_reader_that_stops_reading_is_no_error(repo, tmp_path, tool_env):
    """`make cells | head -1`, `carcolor config --cells | grep -q`: the reader stops early, and the rest of the
    list meets a closed pipe (reliably once it is longer than the pipe's buffer): no BrokenPipeError."""
    big = tmp_path / "big.yaml"
    big.write_text(f"grid:\n  seeds: {list(range(3000))}\n")
    for reader in ("head -n 1", "grep -q mobilenet_v2-adam-s0"):
        out = subprocess.run(f"{sys.executable} -m carcolor config --no-deep --cells {big} | {reader}", shell=True,
                             cwd=repo, capture_output=True, text=True, env=tool_env)
        assert out.returncode == 0 and out.stderr == "", out.stderr
