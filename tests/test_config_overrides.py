"""generative.training.config_overrides: one-line errors for unknown `--config.` override fields
(on argv lists against a small config file, and once through `python -m experiments.train`)."""

import os
import subprocess
import sys

import pytest
from absl import flags
from ml_collections import config_flags

from generative.training.config_overrides import (
    ConfigOverrideError,
    check_config_overrides,
    exit_on_bad_config_overrides,
    suggestions,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG_SOURCE = """
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.optim = ml_collections.ConfigDict({"name": "adam", "lr": 1e-3, "b1": 0.9})
    config.training = ml_collections.ConfigDict({"batch_size": 128, "num_steps": 2000})
    config.model = ml_collections.ConfigDict({"channel_mult": (1, 2, 2), "use_attn": True})
    # A dict field (turned into a nested ConfigDict) and a plain dict-valued field.
    config.sample = ml_collections.ConfigDict(
        {"steps": 18, "schedule_options": {"sigma_min": 0.002, "rho": 7.0}}
    )
    config.extra = ml_collections.ConfigDict({"kwargs": {"alpha": 1.0}}, convert_dict=False)
    return config
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "small_config.py"
    path.write_text(CONFIG_SOURCE)
    return str(path)


def error_of(argv):
    with pytest.raises(ConfigOverrideError) as info:
        check_config_overrides(["prog", *argv])
    message = str(info.value)
    assert "\n" not in message
    return message


def test_typo_in_a_leaf_names_the_field_and_the_closest_name(config_file):
    message = error_of(["--config", config_file, "--config.optim.lrr=1e-3"])
    assert message == (
        "unknown config field 'optim.lrr' (from --config.optim.lrr=1e-3); did you mean 'optim.lr'?"
    )


def test_typo_in_a_section_suggests_the_field_of_the_right_section(config_file):
    message = error_of([f"--config={config_file}", "--config.trainng.num_steps=3"])
    assert message == (
        "unknown config field 'trainng.num_steps' (from --config.trainng.num_steps=3); "
        "did you mean 'training.num_steps'?"
    )


def test_unknown_field_without_a_close_name_lists_the_fields_of_its_section(config_file):
    message = error_of(["--config", config_file, "--config.no_such_field=1"])
    assert message == (
        "unknown config field 'no_such_field' (from --config.no_such_field=1); "
        "the config's fields are: extra, model, optim, sample, seed, training"
    )


def test_typos_below_dict_valued_fields_and_leaves_are_caught(config_file):
    message = error_of(["--config", config_file, "--config.sample.schedule_options.rhoo=5"])
    assert message.endswith("did you mean 'sample.schedule_options.rho'?")
    message = error_of(["--config", config_file, "--config.extra.kwargs.alpah=2"])
    assert message.endswith("did you mean 'extra.kwargs.alpha'?")
    message = error_of(["--config", config_file, "--config.optim.lr.x=1"])
    assert "unknown config field 'optim.lr.x'" in message


def test_suggestions_are_the_closest_full_dotted_paths():
    known = ["optim", "optim.lr", "optim.b1", "optim.b2", "training", "training.num_steps"]
    assert suggestions("optim.lrr", known) == ["optim.lr"]
    assert suggestions("trainng.num_steps", known) == ["training.num_steps"]
    assert suggestions("zzzzzzzzzzzzzzz", known) == []


def test_valid_overrides_pass_and_config_flags_parses_them_as_before(config_file):
    argv = [
        "prog",
        "--config",
        config_file,
        "--config.optim.lr",
        "2e-4",
        "--config.training.num_steps=3",
        "--config.model.channel_mult=(1,2)",
        "--noconfig.model.use_attn",
        "--config.sample.schedule_options.rho=5",
        "--config.extra.kwargs.alpha=2.5",
    ]
    assert check_config_overrides(argv) is None
    flag_values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    config = holder.value
    assert config.optim.lr == 2e-4 and config.training.num_steps == 3
    assert config.model.channel_mult == (1, 2) and config.model.use_attn is False
    assert config.sample.schedule_options.rho == 5.0
    assert config.extra.kwargs == {"alpha": 2.5}


def test_shipped_config_accepts_its_nested_and_dict_fields():
    argv = ["prog", "--config", os.path.join(ROOT, "configs", "toy_edm.py")]
    valid = ["--config.optim.lr=1e-4", "--config.sample.schedule_options.rho=5"]
    assert check_config_overrides([*argv, *valid]) is None
    with pytest.raises(ConfigOverrideError, match="did you mean 'optim.lr'"):
        check_config_overrides([*argv, "--config.optim.lrr=1"])


def test_missing_config_file_and_no_config_flag(tmp_path, config_file):
    missing = str(tmp_path / "small_confg.py")
    message = error_of([f"--config={missing}"])
    assert message == (
        f"config file {missing!r} does not exist (from --config={missing}); "
        f"did you mean {config_file!r}?"
    )
    assert check_config_overrides(["prog", "--config.optim.lrr=1"]) is None  # absl: --config needed
    assert check_config_overrides(["prog", "--config", config_file]) is None


def test_exit_helper_prints_one_line_and_exits_2(config_file, capsys):
    with pytest.raises(SystemExit) as info:
        exit_on_bad_config_overrides(["prog", "--config", config_file, "--config.optim.lrr=1"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "unknown config field 'optim.lrr' (from --config.optim.lrr=1); did you mean 'optim.lr'?"
    ]


def test_train_cli_reports_an_unknown_override_in_one_line(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            *("--config", "configs/toy_edm.py", "--workdir", str(tmp_path / "run")),
            "--config.optim.lrr=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "'optim.lrr'" in last and "'optim.lr'" in last, result.stderr
    assert "Traceback" not in result.stderr
