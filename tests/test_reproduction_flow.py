"""carcolor archive, then carcolor compare, on the smoke run: the run against its own archive is bitwise
identical and reproduced everywhere, the page renders, and the archive is a readable RO-Crate."""
import json
import shutil
import subprocess
import sys
import zipfile

import pytest

from carcolor import layout
from carcolor.reproduction import crate
from tests.conftest import SMOKE

pytestmark = [pytest.mark.workflow, SMOKE]


@pytest.fixture(scope="module")
def work(smoke_run, tmp_path_factory):
    """The smoke run's results and data description, copied (the smoke run stays as it is)."""
    work = tmp_path_factory.mktemp("reproduction")
    shutil.copytree(smoke_run / "results", work / "results", ignore=shutil.ignore_patterns("checkpoint.pt"))
    (work / layout.PREPARED_DIR).mkdir(parents=True)
    shutil.copy(smoke_run / layout.PREPARED_JSON, work / layout.PREPARED_JSON)
    return work


def carcolor(work, env, *args):
    out = subprocess.run([sys.executable, "-m", "carcolor.cli", *args], cwd=work, env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def archive(work, tool_env):
    carcolor(work, tool_env, "archive", "--author", "A. Tester")
    (path,) = (work / layout.ARCHIVE_DIR).glob("*.zip")
    return path


def test_the_archive_holds_the_run_without_checkpoints_or_images(archive):
    names = zipfile.ZipFile(archive).namelist()
    assert {crate.METADATA, crate.CHECKSUMS, crate.WORKFLOW, "requirements.lock", layout.CONFIG_RECORD,
            layout.PREPARED_JSON, f"{layout.REPORT_DIR}/index.pdf"} <= set(names)
    assert sum(n.endswith("/train.ipynb") for n in names) == 8
    assert not [n for n in names if n.endswith((".pt", ".jpg", ".npy"))]


def test_rocrate_reads_the_archive_as_a_workflow_run(archive):
    from rocrate.rocrate import ROCrate

    read = ROCrate(archive)
    assert read.mainEntity.id == crate.WORKFLOW and "ComputationalWorkflow" in read.mainEntity.type
    (action,) = read.get_by_type("CreateAction")
    assert action["instrument"].id == crate.WORKFLOW and action["agent"]["name"] == "A. Tester"
    assert {e.id for e in action["object"]} == {layout.CONFIG_RECORD, layout.PREPARED_JSON, "#data-fingerprint"}
    assert f"{layout.TABLES_DIR}/summary.csv" in {e.id for e in action["result"]}


def test_roc_validator_finds_no_required_issue(archive, tmp_path):
    validator = pytest.importorskip("rocrate_validator.services", reason="roc-validator is not installed")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path)
    from rocrate_validator import models

    result = validator.validate(validator.ValidationSettings(
        rocrate_uri=str(tmp_path), profile_identifier="workflow-run-crate", skip_availability_check=True,
        requirement_severity=models.Severity.REQUIRED))
    assert result.passed(), [i.message for i in result.get_issues()]


@pytest.fixture(scope="module")
def compared(work, archive, tool_env):
    """carcolor compare of the run against its own archive, page included: its output."""
    return carcolor(work, tool_env, "compare", str(archive.relative_to(work)), "results")


def test_a_run_against_its_own_archive_is_bitwise_identical_and_reproduced(work, compared):
    out = compared
    assert "[compare] bitwise: bitwise identical (8 cells;" in out
    summary = json.loads((work / layout.COMPARE_DIR / "compare.json").read_text())
    assert summary["verdicts"]["not reproduced"] == summary["verdicts"]["inconclusive"] == 0
    assert summary["verdicts"]["reproduced"] == 4 * 3 + 4 * 4  # 4 pairs x 3 metrics, 4 pairs x 4 colours
    from pypdf import PdfReader

    text = " ".join(" ".join(p.extract_text() for p in PdfReader(work / layout.COMPARE_DIR / "index.pdf").pages).split())
    assert "Bitwise identical" in text and "not reproduced, 0 inconclusive" in text
    assert "Figure 2" in text and (work / layout.COMPARE_DIR / "index.html").stat().st_size > 50_000


def test_the_reference_folder_holds_the_small_files_and_compares_the_same(work, tool_env, tmp_path):
    carcolor(work, tool_env, "archive", "--reference", str(tmp_path / "reference"))
    files = {p.relative_to(tmp_path / "reference").as_posix() for p in (tmp_path / "reference").rglob("*")
             if p.is_file()}
    assert crate.METADATA in files and not [f for f in files if f.endswith((".ipynb", ".html", ".pdf"))]
    out = carcolor(work, tool_env, "compare", str(tmp_path / "reference"), "results", "--no-page", "--out",
                   str(tmp_path / "compare"))
    assert "bitwise identical" in out and "(unpacked archive)" in out


def test_the_comparison_page_in_a_browser(work, compared, tmp_path):
    """Its links and figures work offline, its summary is a callout, and the accessibility audit finds
    nothing serious."""
    from tests.browser import axe_found, check_page
    from tests.test_browser import _assert_clean, assert_accessible

    page = work / layout.COMPARE_DIR / "index.html"
    result = check_page(page, tmp_path / "compare.png", axe=axe_found())
    _assert_clean(result)
    assert result["images"] >= 2
    assert '<div class="callout callout-note">' in page.read_text(encoding="utf-8")
    assert_accessible(result)
