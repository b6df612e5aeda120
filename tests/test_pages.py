"""A cell's executed notebook as a self-contained page (carcolor.reporting.pages)."""
import nbformat
import pytest

from carcolor.reporting import pages
def _notebook(path, outputs):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Training one cell"),
                nbformat.v4.new_code_cell("print('hi')", outputs=outputs)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_page_is_self_contained_and_links_back(tmp_path):
    nb = _notebook(tmp_path / "runs" / "mobilenet_v2-adam-s0" / "train.ipynb", [
        nbformat.v4.new_output("stream", name="stdout", text="[mobilenet_v2-adam-s0] epoch 1/3\n"),
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})])
    out = pages.export(nb, tmp_path / "report" / "cells" / "mobilenet_v2-adam-s0.html")
    html = out.read_text()
    assert "[mobilenet_v2-adam-s0] epoch 1/3" in html
    assert f"data:image/png;base64,{PNG}" in html
    assert "mobilenet_v2-adam-s0" in html.split("</title>")[0]  # the cell named in the title
    assert 'href="../index.html#sec-runs"' in html and 'href="../index.html#sec-provenance"' in html
    assert "<script src=" not in html and "cdnjs" not in html and "<style" in html
    assert not list(out.parent.glob(".*partial"))


def test_page_path_is_what_the_report_links():
    from carcolor import layout

    assert layout.page_path("mobilenet_v1-adamax-s2") == "cells/mobilenet_v1-adamax-s2.html"


def test_a_page_that_would_fetch_from_the_network_is_refused(tmp_path):
    nb = _notebook(tmp_path / "train.ipynb", [nbformat.v4.new_output(
        "display_data", data={"text/html": '<img src="https://example.org/x.png">', "text/plain": "x"})])
    out = tmp_path / "cells" / "x.html"
    with pytest.raises(ValueError, match="example.org"):
        pages.export(nb, out)
    assert not out.exists()


def test_cli(tmp_path, capsys):
    from carcolor.cli import main

    nb = _notebook(tmp_path / "runs" / "c" / "train.ipynb", [])
    assert main(["cell-page", str(nb), "--out", str(tmp_path / "cells" / "c.html")]) == 0
    assert (tmp_path / "cells" / "c.html").is_file() and "[cell-page]" in capsys.readouterr().out
