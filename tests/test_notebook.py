"""experiments/train.ipynb is a thin papermill template: parameters, a few calls, no outputs."""
import ast

import nbformat


def test_template_is_thin_and_clean(repo):
    nb = nbformat.read(repo / "experiments" / "train.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = {t.id for node in ast.parse(tagged[0].source).body for t in getattr(node, "targets", [])}
    assert {"cell", "arch", "optimizer", "seed", "prepared", "out_dir", "threads", "settings"} <= params
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "commit the template without outputs"
        tree = ast.parse(c.source)
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda)) for n in ast.walk(tree)), \
            "no functions in the notebook: logic lives in carcolor/"
    assert len(code) <= 6
    assert nb.metadata["kernelspec"]["name"] == "python3"
