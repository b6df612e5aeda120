"""The config: the defaults' one home, schema validation, one-line errors, grid expansion; and the
cheap checks that need a stage's knowledge (carcolor.checks.check_config)."""
import re
import subprocess
import sys

import pytest
import yaml

from carcolor import checks, config, defaults


def checked(cfg: dict) -> dict:
    """What the Snakefile does before anything runs, minus the torch checks."""
    cfg = config.validate(cfg)
    checks.check_config(cfg)
    return cfg


@pytest.fixture
def default(repo):
    with open(repo / "experiments" / "config.yaml") as fh:
        return yaml.safe_load(fh)


def test_default_config_is_valid_and_gives_three_seeds_of_the_four_pairs(default):
    cfg = config.validate(default)
    names = [c.name for c in config.cells(cfg)]
    assert len(names) == 12 and names[:3] == ["mobilenet_v2-adam-s0", "mobilenet_v2-adam-s1", "mobilenet_v2-adam-s2"]
    assert cfg["train"]["amp"] == "auto"


def test_the_defaults_file_has_every_key_the_schema_names_and_the_schema_no_defaults(repo):
    schema = config.load_schema()
    assert "default:" not in (repo / "experiments" / "config.schema.yaml").read_text()
    own = defaults.defaults()
    assert set(own) == set(schema["properties"])
    for section, spec in schema["properties"].items():
        assert set(own[section]) == set(spec["properties"]), section


def test_a_partial_config_is_merged_over_the_defaults():
    cfg = config.validate({"train": {"epochs": 2}, "grid": {"seeds": [4]}})
    assert cfg["train"]["epochs"] == 2 and cfg["grid"]["seeds"] == [4]
    assert cfg["train"]["lr"] == defaults.defaults()["train"]["lr"]
    assert cfg["grid"]["archs"] == defaults.defaults()["grid"]["archs"]
    assert config.validate({}) == config.validate(defaults.defaults())


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
        checked(default)
    assert "mobilenet_v3" in str(err.value) and "mobilenet_v2" in str(err.value)


def test_unknown_optimizer_names_valid_choices(default):
    default["grid"]["optimizers"] = ["adamx"]
    with pytest.raises(ValueError) as err:
        checked(default)
    assert "'adamx'" in str(err.value) and "adamax" in str(err.value)


def test_any_torch_optimizer_and_torchvision_or_timm_model_is_accepted(default):
    default["grid"] = {"archs": ["resnet18", "mobilenetv3_small_050"], "optimizers": ["SGD", "asgd"], "seeds": [0]}
    cfg = checked(default)
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
        checked(default)


def test_cell_lookup(default):
    cfg = config.validate(default)
    assert config.cell_by_name(cfg, "mobilenet_v1-adamax-s0") == config.Cell("mobilenet_v1", "adamax", 0)
    with pytest.raises(config.ConfigError, match="mobilenet_v2-adam-s0"):
        config.cell_by_name(cfg, "resnet-adam-s0")


def test_cli_config_prints_cells_and_rejects_bad_keys(repo, tmp_path, tool_env):
    out = subprocess.run([sys.executable, "-m", "carcolor.cli", "config", "tests/smoke.yaml", "--cells"], cwd=repo,
                         capture_output=True, text=True, env=tool_env)
    assert out.returncode == 0, out.stderr
    from tests.flow import CELLS

    assert out.stdout.split() == CELLS
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  optimisers: [adam]\n")
    out = subprocess.run([sys.executable, "-m", "carcolor.cli", "config", str(bad)],
                         cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "optimisers" in out.stderr and "optimizers" in out.stderr


def _one_line_error(cfg: dict) -> str:
    with pytest.raises(config.ConfigError) as err:
        checked(cfg)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_nan_learning_rate_is_named(default):
    default["train"]["lr"] = float("nan")
    assert _one_line_error(default) == "config 'train.lr' is nan; give a finite number."


def test_infinite_weight_decay_is_named(default):
    default["train"]["weight_decay"] = float("inf")
    assert "'train.weight_decay' is inf" in _one_line_error(default)


def test_nan_inside_optimizer_kwargs_is_named(default):
    default["train"]["optimizer_kwargs"] = {"betas": [0.9, float("nan")]}
    assert "'train.optimizer_kwargs.betas.1' is nan" in _one_line_error(default)


def test_colour_the_generator_cannot_draw_lists_the_valid_ones(default):
    default["data"]["colours"] = ["Black", "Purple"]
    msg = _one_line_error(default)
    assert "'Purple'" in msg and "Black, Grey, White" in msg and "Did you mean" not in msg


def test_lower_case_colour_suggests_the_title_case_one(default):
    default["data"]["colours"] = ["Black", "red"]
    msg = _one_line_error(default)
    assert "'red'" in msg and "Did you mean 'Red'?" in msg and "Orange" in msg


def test_real_colours_are_not_checked_against_the_generator(default, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvm.zip").write_bytes(b"")
    default["data"].update(source="dvm", paths=["dvm.zip"], colours=["Black", "Purple"])
    assert checked(default)["data"]["colours"] == ["Black", "Purple"]


def test_a_dvm_path_that_does_not_exist(default, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    default["data"].update(source="dvm", paths=["nowhere/resized_DVM_v2.zip"])
    msg = _one_line_error(default)
    assert "'nowhere/resized_DVM_v2.zip'" in msg and "does not exist" in msg and str(tmp_path) in msg


def test_top_n_beyond_the_generator_colours(default):
    default["data"].update(colours=None, top_n_colours=12)
    msg = _one_line_error(default)
    assert "'data.top_n_colours' is 12" in msg and "11" in msg


def test_dvm_paths_with_the_synthetic_source(default):
    default["data"]["paths"] = ["resized_DVM_v2.zip"]
    msg = _one_line_error(default)
    assert "'data.paths'" in msg and "resized_DVM_v2.zip" in msg and "source: dvm" in msg


def test_download_with_the_synthetic_source(default):
    default["data"]["download"] = ["resized_DVM"]
    msg = _one_line_error(default)
    assert "'data.download'" in msg and "resized_DVM" in msg and "source: dvm" in msg


def test_batch_larger_than_the_training_split(default):
    default["data"].update(colours=["Black", "White"], n_train_per_colour=20)
    default["train"]["batch_size"] = 41
    msg = _one_line_error(default)
    assert "'train.batch_size' is 41" in msg and "40 images" in msg
    default["train"]["batch_size"] = 40
    config.validate(default)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    bad = tmp_path / "my.yaml"
    bad.write_text("data:\n  source: synthetic\n  colours: a: b\n")
    with pytest.raises(config.ConfigError) as err:
        config.read_yaml(bad)
    assert str(err.value) == f"{bad} line 3, column 13: mapping values are not allowed here"


def test_config_file_that_is_not_a_mapping(tmp_path):
    bad = tmp_path / "list.yaml"
    bad.write_text("- data\n- train\n")
    with pytest.raises(config.ConfigError, match="list.yaml: the top level is a list"):
        config.read_yaml(bad)


def test_cli_yaml_syntax_error_is_one_line(repo, tmp_path, tool_env):
    bad = tmp_path / "my.yaml"
    bad.write_text("train:\n  epochs: 3\n  lr: [0.1\n")
    out = subprocess.run([sys.executable, "-m", "carcolor.cli", "config", str(bad)],
                         cwd=repo, capture_output=True, text=True, env=tool_env)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"carcolor config: {bad} line 4, column 1: ")


@pytest.mark.parametrize("files", [["experiments/config.yaml"], ["experiments/config.yaml", "tests/smoke.yaml"],
                                   ["experiments/config.yaml", "experiments/paper.yaml"],
                                   ["experiments/paper.yaml"]])
def test_shipped_configs_are_valid(repo, files):
    checked(config.read_files([repo / f for f in files]))


@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "lr", "1e-3", "config 'train.lr' is the text '1e-3', not a number (YAML reads 1e-3 as text: write "
                            "1.0e-3 or 0.001)."),
    ("train", "weight_decay", "0.01", "config 'train.weight_decay' is the text '0.01', not a number (write it "
                                      "without quotes: 0.01)."),
    ("train", "batch_size", 1, "config 'train.batch_size': 1 is less than the minimum of 2 (batch normalisation "
                               "needs at least 2 images per batch in training)."),
    ("train", "label_smoothing", 1.0, "config 'train.label_smoothing': 1.0 is greater than or equal to the maximum "
                                      "of 1 (at 1 every training target is the uniform distribution, so nothing can "
                                      "be learned)."),
    ("grid", "optimizers", ["Adam", "adamax", "adam"], "config 'grid.optimizers' lists 'Adam' and 'adam', one "
                                                       "optimizer (names are case-insensitive): keep one of them."),
])
def test_settings_that_would_fail_late_fail_before_anything_runs(section, key, value, expected):
    assert _one_line_error({section: {key: value}}) == expected


@pytest.mark.parametrize("key, value", [("viewpoints", [0]), ("image_table", "tables_V2.zip")])
def test_settings_of_real_data_with_the_synthetic_source(key, value):
    msg = _one_line_error({"data": {key: value}})
    assert msg.startswith(f"config 'data.{key}' is {value} but data.source is 'synthetic'") and "source: dvm" in msg


def test_an_image_table_that_does_not_exist_unless_it_will_be_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvm.zip").write_bytes(b"")
    data = {"source": "dvm", "paths": ["dvm.zip"], "image_table": "tables/Image_table.csv", "viewpoints": [0]}
    msg = _one_line_error({"data": data})
    assert "'data.image_table' is 'tables/Image_table.csv', which does not exist" in msg
    data.update(download=["tables"], image_table="data/dvm/tables_V2.zip")
    assert checked({"data": data})["data"]["image_table"] == "data/dvm/tables_V2.zip"


def test_viewpoints_need_the_image_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvm.zip").write_bytes(b"")
    msg = _one_line_error({"data": {"source": "dvm", "paths": ["dvm.zip"], "viewpoints": [0]}})
    assert "'data.viewpoints' is [0] but 'data.image_table' is null" in msg


@pytest.mark.parametrize("draw", [{"adverts_per_colour": 2, "photos_per_advert": 1}, {"adverts_per_colour": 30}])
def test_counts_the_synthetic_draw_cannot_give_are_refused_before_anything_is_drawn(draw):
    """By preparation's own rule (whole adverts per split, a reserve for unreadable files): the default
    counts need more than 2 single photos, and more than 30 adverts of 4 photos."""
    msg = _one_line_error({"synthetic": draw})
    assert msg.startswith(f"config 'synthetic' draws {draw['adverts_per_colour']} adverts x ") and \
        "70 train + 30 val + 20 test = 120 images per colour" in msg and "synthetic.adverts_per_colour" in msg
    assert checked({"synthetic": {"adverts_per_colour": 40}})  # the default draw fits
