"""Each service's options are a section of the typed configuration: file, environment, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from driftline.cli import main, with_flags
from driftline.config import load_settings
from driftline.options import MonitorOptions, ServeOptions, TrainOptions


def test_sections_come_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "driftline.toml"
    config.write_text('[serve]\nmax_batch = 500\n[monitor]\ncooldown_s = 60\nretrain_on = ["concept"]\n')
    monkeypatch.setenv("DRIFTLINE_SERVE__MAX_WAIT_MS", "5")
    monkeypatch.setenv("DRIFTLINE_TRAIN__EPOCHS", "3")
    settings = load_settings(config)
    assert (settings.serve.max_batch, settings.serve.max_wait_ms) == (500, 5.0)
    assert (settings.monitor.cooldown_s, settings.monitor.retrain_on) == (60.0, ("CONCEPT",))
    assert settings.train.epochs == 3
    assert settings.serve.group_id == ServeOptions().group_id  # the rest keeps its defaults


def test_flags_win_and_flags_left_out_keep_the_configured_value() -> None:
    configured = MonitorOptions(cooldown_s=60, partition_stride=2, schemas=(Path("a.avsc"),))
    merged = with_flags(configured, cooldown_s=None, partition_stride=4, retrain_on="", schemas=())
    assert merged.cooldown_s == 60  # not given
    assert merged.partition_stride == 4  # given
    assert merged.retrain_on == ()  # given empty: never retrain
    assert merged.schemas == (Path("a.avsc"),)  # no --schema keeps the configured files


def test_invalid_values_are_refused_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        with_flags(ServeOptions(), max_batch=0)
    with pytest.raises(ValueError, match="eval_fraction"):
        TrainOptions(eval_fraction=1.5)


@pytest.mark.parametrize(
    ("command", "flag", "where"),
    [
        ("serve", "--max-batch", "DRIFTLINE_SERVE__MAX_BATCH"),
        ("monitor", "--cooldown-s", "DRIFTLINE_MONITOR__COOLDOWN_S"),
        ("train", "--epochs", "DRIFTLINE_TRAIN__EPOCHS"),
    ],
)
def test_help_names_the_default_and_where_else_to_set_it(command: str, flag: str, where: str) -> None:
    help_text = CliRunner().invoke(main, [command, "--help"]).output
    assert flag in help_text
    assert where in help_text  # one token: never wrapped
