"""experiments/train.ipynb is a thin papermill template: parameters, a few calls, no outputs."""
import ast

import nbformat

from tests.flow import stand_in_template


def test_template_is_thin_and_clean(repo):
    nb = nbformat.read(repo / "experiments" / "train.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = {t.id for node in ast.parse(tagged[0].source).body for t in getattr(node, "targets", [])}
    from carcolor.training.notebook import PARAMETERS

    assert set(PARAMETERS) == params
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "commit the template without outputs"
        tree = ast.parse(c.source)
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) for n in ast.walk(tree)), \
            "no functions in the notebook: logic lives in carcolor/"
    assert len(code) <= 6
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_compile_cache_env_points_at_the_working_directory_unless_set(tmp_path):
    from carcolor.training.notebook import COMPILE_CACHE_DIR, compile_cache_env

    env = compile_cache_env({}, tmp_path)
    assert env == {"TORCHINDUCTOR_CACHE_DIR": str((tmp_path / COMPILE_CACHE_DIR).resolve()),
                   "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
    mine = compile_cache_env({"TORCHINDUCTOR_CACHE_DIR": "/elsewhere", "TORCHINDUCTOR_FX_GRAPH_CACHE": "0"},
                             tmp_path)
    assert mine["TORCHINDUCTOR_CACHE_DIR"] == "/elsewhere" and mine["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "0"


def test_train_cell_gives_the_kernel_the_compile_cache(tmp_path, monkeypatch, capsys):
    """The notebook's kernel (a separate process) sees the cache folder that train-cell sets."""
    import argparse
    import json

    from carcolor.training.notebook import COMPILE_CACHE_DIR, run as train_cell

    for key in ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.setenv(key, "x")  # so that monkeypatch restores the test process's environment
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("out_dir = None", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    "import json, os, pathlib\n"
                    "pathlib.Path(out_dir, 'env.json').write_text(json.dumps(\n"
                    "    {k: v for k, v in os.environ.items() if k.startswith('TORCHINDUCTOR_')}))")]
    nbformat.write(nb, tmp_path / "template.ipynb")
    args = argparse.Namespace(notebook=str(tmp_path / "template.ipynb"), out=str(tmp_path / "run" / "train.ipynb"),
                              arch="a", optimizer="o", seed=0, prepared=str(tmp_path),
                              settings='{"device": "cpu"}')
    assert train_cell(args) == 0
    seen = json.loads((tmp_path / "run" / "env.json").read_text())
    assert seen == {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / COMPILE_CACHE_DIR),
                    "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}
    assert "carcolor: cell a-o-s0 done in " in capsys.readouterr().out


def _template(tmp_path, code: str):
    return stand_in_template(tmp_path / "template.ipynb", code)


def test_a_full_disk_inside_the_notebook_ends_the_cell_in_one_line(tmp_path, tool_env):
    """The training code's OSError reaches the log as one line; the failed notebook is kept for the record."""
    import subprocess
    import sys

    template = _template(tmp_path, "import errno\nraise OSError(errno.ENOSPC, 'No space left on device')")
    out = subprocess.run([sys.executable, "-m", "carcolor", "train-cell", "--notebook", str(template),
                          "--out", "run/train.ipynb", "--arch", "a", "--optimizer", "o", "--seed", "0",
                          "--prepared", ".", "--settings", '{"device": "cpu"}'],
                         cwd=tmp_path, env=tool_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    failed = [line for line in out.stderr.splitlines() if "failed" in line]
    assert failed == ["carcolor: cell a-o-s0 failed: OSError: [Errno 28] No space left on device "
                      f"(executed notebook: run/train.failed.ipynb)"], out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["train.failed.ipynb"]


def test_a_full_disk_while_papermill_saves_leaves_no_partial_notebook(tmp_path, monkeypatch):
    import errno

    import papermill
    import pytest

    from carcolor.training import notebook

    def save_fails(template, running, **kwargs):
        open(running, "w").write('{"cells": [')  # the first bytes made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", save_fails)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(notebook.CellFailed) as err:
        notebook.run_cell(tmp_path / "t.ipynb", tmp_path / "run" / "train.ipynb", {})
    assert str(err.value) == ("OSError: [Errno 28] No space left on device (while saving the executed notebook)")
    assert list((tmp_path / "run").iterdir()) == []
