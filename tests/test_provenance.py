"""Where a result came from: commit and tracked changes, machine, re-run command."""
import json
import subprocess

import pytest
import torch

from carcolor import provenance, workflow
@pytest.fixture
def checkout(tmp_path):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "one")
    return tmp_path


def test_untracked_files_do_not_count_as_changes(checkout):
    (checkout / "my.yaml").write_text("train: {epochs: 1}\n")  # a config of one's own beside the code
    state = provenance.git_state(checkout)
    assert len(state["commit"]) == 40 and state["tracked_changes"] is False
    assert not provenance.git_revision(checkout).endswith("-dirty")


def test_a_changed_tracked_file_counts(checkout):
    (checkout / "code.py").write_text("x = 2\n")
    assert provenance.git_state(checkout)["tracked_changes"] is True
    assert provenance.git_revision(checkout).endswith("-dirty")


def test_outside_a_checkout(tmp_path):
    assert provenance.git_state(tmp_path) == {"commit": None, "tracked_changes": None}
    assert provenance.git_revision(tmp_path) is None


def test_rerun_command_names_the_config_files_of_the_run(tmp_path, monkeypatch):
    assert provenance.rerun_command("mobilenet_v2-adam-s0", []) == "make cell CELL=mobilenet_v2-adam-s0"
    assert provenance.rerun_command("c", ["experiments/config.yaml"]) == "make cell CELL=c"
    assert provenance.rerun_command("c", ["my run.yaml", "b.yaml"]) == "make cell CELL=c CONFIG='my run.yaml b.yaml'"
    monkeypatch.chdir(tmp_path)
    workflow.export_configfiles([tmp_path / "mine.yaml", "/elsewhere/other.yaml"])  # as the Snakefile does
    assert json.loads(__import__("os").environ[provenance.CONFIGFILES_ENV]) == ["mine.yaml", "/elsewhere/other.yaml"]
    assert provenance.rerun_command("c") == "make cell CELL=c CONFIG='mine.yaml /elsewhere/other.yaml'"


def test_collect_records_machine_times_and_versions(monkeypatch):
    monkeypatch.setenv(provenance.CONFIGFILES_ENV, "[]")
    record = provenance.collect(device=torch.device("cpu"), cell="c", started="2026-01-01T00:00:00+00:00")
    assert record["cpu"]["model"] and record["cpu"]["cores"] >= 1 and record["cpu"]["usable"] >= 1
    assert record["host"] and record["gpu"] is None  # on the CPU
    assert record["torch"] == torch.__version__ and record["started"] < record["ended"]
    assert record["rerun"] == "make cell CELL=c" and record["git_commit"]
    json.dumps(record)  # provenance.json
