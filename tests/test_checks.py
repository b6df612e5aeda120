"""The checks that need torch (carcolor.training.preflight, through carcolor.checks: optimizers, models,
pretrained weights, and their cache), the device and cores, the notebook template."""
import json
import re
import shutil
import subprocess
import sys
import time

import pytest
import torch
import yaml

from carcolor import checks, config
from carcolor.training import preflight


def _optimizers(cfg):
    checks.check_built({**cfg, "grid": {**cfg["grid"], "archs": []}})


def _models(cfg):
    try:
        preflight.check_models(cfg["grid"]["archs"], cfg["data"]["image_size"], config.n_classes(cfg))
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from None


def _pretrained(cfg):
    checks.check_built({**cfg, "grid": {**cfg["grid"], "optimizers": []}})


@pytest.fixture
def cfg(repo):
    """The smoke config: small, so each model builds and runs in a fraction of a second."""
    return config.load(repo / "tests/smoke.yaml")


@pytest.fixture
def notebook(repo, tmp_path):
    copy = tmp_path / "train.ipynb"
    shutil.copy(repo / "experiments" / "train.ipynb", copy)
    return copy


def _one_line(check, *args) -> str:
    with pytest.raises(config.ConfigError) as err:
        check(*args)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("files", [["experiments/config.yaml"], ["experiments/config.yaml", "tests/smoke.yaml"]])
def test_shipped_configs_pass_every_check(repo, files):
    checks.check_all(config.load(*[repo / f for f in files]))


@pytest.mark.parametrize("kwargs", [{"betas": 5}, {"nonsense": 1}, {"betas": [0.9, 0.99, 0.5]}])
def test_optimizer_kwargs_the_optimizer_rejects(cfg, kwargs):
    cfg["train"]["optimizer_kwargs"] = kwargs
    msg = _one_line(_optimizers, cfg)
    assert re.match(rf"config 'train.optimizer_kwargs' {re.escape(str(kwargs))}: optimizer '(adam|adamax)' "
                    r"rejects it: \S", msg), msg


def test_accepted_optimizer_kwargs(cfg):
    cfg["train"]["optimizer_kwargs"] = {"betas": [0.8, 0.99], "eps": 1e-6}
    _optimizers(cfg)


def test_model_that_needs_another_image_size(cfg):
    cfg["grid"]["archs"] = ["mobilenet_v2", "vit_tiny_patch16_224"]
    cfg["data"]["image_size"] = 64
    msg = _one_line(_models, cfg)
    assert msg.startswith("architecture 'vit_tiny_patch16_224' cannot take 64 px images (AssertionError: ")
    assert "data.image_size" in msg


def test_model_builds_offline_even_when_pretrained(cfg, monkeypatch):
    from carcolor.training import models
    seen = []
    real = models.build_model
    monkeypatch.setattr(models, "build_model", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    cfg["train"]["pretrained"] = True
    _models(cfg)
    assert seen and all(kw["pretrained"] is False for kw in seen)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(cfg):
    cfg["train"]["device"] = "cuda"
    msg = _one_line(checks.check_machine, cfg)
    assert "'train.device' is 'cuda'" in msg and "auto" in msg and "cpu" in msg


def test_more_threads_than_this_machine_has_cores(cfg):
    from carcolor import provenance

    cfg["train"]["threads"] = provenance.usable_cpus() + 1
    msg = _one_line(checks.check_machine, cfg)
    assert f"'train.threads' is {cfg['train']['threads']}" in msg and f"{provenance.usable_cpus()} usable core" in msg
    cfg["train"]["threads"] = provenance.usable_cpus()
    checks.check_machine(cfg)


def test_pretrained_weights_that_are_not_cached_and_cannot_be_fetched(cfg, tmp_path, monkeypatch):
    """No network reaches the model hubs here (nor, often, a cluster's nodes): the check says so before
    anything runs, instead of a URLError in every cell after the data were prepared."""
    from carcolor.training import models

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        return real(*args, **kwargs)

    real = models.build_model
    monkeypatch.setattr(models, "build_model", offline)
    cfg["train"]["pretrained"] = True
    msg = _one_line(_pretrained, cfg)
    assert msg.startswith("config 'train.pretrained' is true but the ImageNet weights of 'mobilenet_v2'")
    assert "OSError: <urlopen error" in msg and "train.pretrained: false" in msg
    cfg["train"]["pretrained"] = False
    _pretrained(cfg)  # nothing to fetch


def test_an_optimizer_that_needs_a_closure_is_refused_with_the_reason(cfg):
    cfg["grid"]["optimizers"] = ["adam", "lbfgs"]
    with pytest.raises(config.ConfigError) as err:
        checks.check_config(cfg)
    assert "'lbfgs'" in str(err.value) and "closure" in str(err.value) and "lbfgs" not in \
        str(err.value).split("Valid: ")[1]


def test_notebook_that_is_not_json(notebook):
    notebook.write_text('{\n  "cells": [\n    {"cell_type": "code",,}\n  ]\n}\n')
    msg = _one_line(checks.check_notebook, notebook)
    assert str(notebook) in msg and "not valid JSON: line 3" in msg


def test_notebook_that_is_json_but_no_notebook(notebook):
    notebook.write_text('{"cells": 3}')
    msg = _one_line(checks.check_notebook, notebook)
    assert str(notebook) in msg and "not a valid Jupyter notebook" in msg


def test_notebook_without_a_parameters_cell(notebook):
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        cell["metadata"].pop("tags", None)
    notebook.write_text(json.dumps(nb))
    msg = _one_line(checks.check_notebook, notebook)
    assert str(notebook) in msg and "no code cell tagged 'parameters'" in msg


def test_parameters_cell_missing_names(notebook):
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = [line for line in cell["source"] if not line.startswith(("settings", "out_dir"))]
    notebook.write_text(json.dumps(nb))
    msg = _one_line(checks.check_notebook, notebook)
    assert "does not assign settings, out_dir" in msg


def test_missing_notebook(tmp_path):
    msg = _one_line(checks.check_notebook, tmp_path / "gone.ipynb")
    assert "gone.ipynb" in msg


def test_cache_skips_the_checks_after_a_success(cfg, tmp_path, monkeypatch):
    stamps = tmp_path / "stamps"
    checks.check_built_cached(cfg, stamps)
    assert len(list(stamps.iterdir())) == 1

    def fail(*args):
        raise AssertionError("rebuilt the models")

    monkeypatch.setattr(preflight, "check_models", fail)
    checks.check_built_cached(cfg, stamps)  # the same config and code: not checked again
    cfg["data"]["seed"], cfg["synthetic"]["seed"] = 7, 7  # nothing the built checks read: not checked again
    checks.check_built_cached(cfg, stamps)
    cfg["data"]["image_size"] = 48
    with pytest.raises(AssertionError, match="rebuilt"):
        checks.check_built_cached(cfg, stamps)
    cfg["data"]["image_size"] = 32
    monkeypatch.setattr(checks.sources, "digest", lambda files: "other code")  # what preflight runs changed
    with pytest.raises(AssertionError, match="rebuilt"):
        checks.check_built_cached(cfg, stamps)


def test_the_cache_key_is_the_code_the_built_checks_run(cfg):
    """Derived from preflight's imports: the checks' own module and the models and optimizers it builds."""
    from carcolor import sources

    names = {p.relative_to(sources.PACKAGE_DIR).as_posix() for p in sources.closure(["carcolor.training.preflight"])}
    assert names == {"__init__.py", "training/__init__.py", "training/preflight.py", "training/models.py",
                     "training/optimizers.py"}


def test_cache_keeps_no_stamp_after_a_failure(cfg, tmp_path):
    cfg["train"]["optimizer_kwargs"] = {"nonsense": 1}
    stamps = tmp_path / "stamps"
    with pytest.raises(config.ConfigError):
        checks.check_built_cached(cfg, stamps)
    with pytest.raises(config.ConfigError):
        checks.check_built_cached(cfg, stamps)
    assert not stamps.exists() or not list(stamps.iterdir())


def test_cache_keeps_the_newest_stamps(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "check_built", lambda *a, **kw: None)
    monkeypatch.setattr(checks, "MAX_STAMPS", 3)
    stamps = tmp_path / "stamps"
    for size in range(32, 37):
        cfg["data"]["image_size"] = size
        checks.check_built_cached(cfg, stamps)
        time.sleep(0.02)  # file times advance in clock ticks of a few milliseconds
    assert len(list(stamps.iterdir())) == 3
    assert (stamps / checks.check_key(cfg)).exists()


def test_cli_config_runs_the_deep_checks_unless_told_not_to(repo, tmp_path, tool_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"optimizer_kwargs": {"nonsense": 1}}}))
    base = [sys.executable, "-m", "carcolor.cli", "config", str(bad)]
    out = subprocess.run(base, cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "nonsense" in out.stderr
    out = subprocess.run(base + ["--no-deep"], cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 0, out.stderr


def test_optimizer_that_rejects_the_shared_settings(cfg):
    cfg["grid"]["optimizers"] = ["adam", "rprop"]  # Rprop takes no weight_decay, which every optimizer is given
    msg = _one_line(_optimizers, cfg)
    assert msg.startswith("config 'grid.optimizers': optimizer 'rprop' rejects lr=") and "weight_decay" in msg


def test_parameters_cell_that_is_not_python(notebook):
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = ["cell = (\n"]
    notebook.write_text(json.dumps(nb))
    assert "parameters cell is not valid Python (line 1" in _one_line(checks.check_notebook, notebook)
