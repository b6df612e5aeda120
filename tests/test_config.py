"""The config: schema validation, defaults, one-line errors, grid expansion."""
import re
import subprocess
import sys

import pytest
import yaml

from carcolor import config


@pytest.fixture
def default(repo):
    with open(repo / "experiments" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_default_config_is_valid_and_gives_the_four_cells(default):
    cfg = config.validate(default)
    assert [c.name for c in config.cells(cfg)] == [
        "mobilenet_v2-adam-s0", "mobilenet_v2-adamax-s0", "mobilenet_v1-adam-s0", "mobilenet_v1-adamax-s0"]
    assert cfg["train"]["amp"] == "auto"  # a default filled from the schema


def test_every_config_key_is_documented(repo):
    """Each key of experiments/config.yaml has a comment on the line above it."""
    lines = (repo / "experiments" / "config.yaml").read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"^\s*[A-Za-z_]+:", line)]
    assert len(keys) > 20
    for i in keys:
        assert lines[i - 1].strip().startswith("#"), f"undocumented key: {lines[i].strip()}"


def test_misspelled_key_names_it_and_suggests(default):
    default["train"]["epoch"] = 3
    with pytest.raises(config.ConfigError) as err:
        config.validate(default)
    msg = str(err.value)
    assert "'epoch'" in msg and "train" in msg and "epochs" in msg and "\n" not in msg


def test_unknown_architecture_names_valid_choices(default):
    default["grid"]["archs"] = ["mobilenet_v3"]
    with pytest.raises(ValueError) as err:
        config.validate(default)
    assert "mobilenet_v3" in str(err.value) and "mobilenet_v2" in str(err.value)


def test_unknown_optimizer_names_valid_choices(default):
    default["grid"]["optimizers"] = ["adamx"]
    with pytest.raises(ValueError) as err:
        config.validate(default)
    assert "'adamx'" in str(err.value) and "adamax" in str(err.value)


def test_any_torch_optimizer_and_torchvision_or_timm_model_is_accepted(default):
    default["grid"] = {"archs": ["resnet18", "mobilenetv3_small_050"], "optimizers": ["SGD", "asgd"]}
    cfg = config.validate(default)
    assert len(config.cells(cfg)) == 4


def test_bad_enum_value_lists_choices(default):
    default["train"]["device"] = "tpu"
    with pytest.raises(config.ConfigError, match="'tpu'.*auto, cpu, cuda"):
        config.validate(default)


def test_colour_list_and_top_n_are_exclusive(default):
    default["data"]["top_n_colours"] = 5
    with pytest.raises(config.ConfigError, match="either 'colours' or 'top_n_colours'"):
        config.validate(default)


def test_unlisted_is_never_a_class(default):
    default["data"]["colours"] = ["Black", "Unlisted"]
    with pytest.raises(config.ConfigError, match="Unlisted"):
        config.validate(default)


def test_cell_lookup(default):
    cfg = config.validate(default)
    assert config.cell_by_name(cfg, "mobilenet_v1-adamax-s0") == config.Cell("mobilenet_v1", "adamax", 0)
    with pytest.raises(config.ConfigError, match="mobilenet_v2-adam-s0"):
        config.cell_by_name(cfg, "resnet-adam-s0")


def test_cli_config_prints_cells_and_rejects_bad_keys(repo, tmp_path, tool_env):
    out = subprocess.run([sys.executable, "-m", "carcolor.cli", "config", "experiments/config.yaml",
                          "tests/smoke.yaml", "--cells"], cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["mobilenet_v2-adam-s0", "mobilenet_v2-adamax-s0", "mobilenet_v1-adam-s0",
                                  "mobilenet_v1-adamax-s0"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  optimisers: [adam]\n")
    out = subprocess.run([sys.executable, "-m", "carcolor.cli", "config", "experiments/config.yaml", str(bad)],
                         cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "optimisers" in out.stderr and "optimizers" in out.stderr
