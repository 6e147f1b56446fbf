"""The command line: help that explains, errors that say what to do, the broker lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.config import Settings

COMMANDS = [
    [],
    ["broker"],
    ["broker", "start"],
    ["broker", "stop"],
    ["broker", "restart"],
    ["broker", "kill-node"],
    ["broker", "start-node"],
    ["broker", "status"],
    ["topics"],
    ["topics", "create"],
    ["acl"],
    ["acl", "print"],
    ["acl", "apply"],
    ["models"],
    ["models", "bootstrap"],
    ["models", "keygen"],
    ["models", "list"],
    ["models", "show"],
    ["models", "contract"],
    ["models", "publish"],
    ["models", "profile"],
    ["models", "promote"],
    ["models", "rollback"],
    ["models", "shadow"],
    ["models", "retire"],
    ["serve"],
    ["produce"],
    ["tail"],
    ["demo"],
    ["bench"],
    ["bench", "drift"],
    ["bench", "loop"],
    ["bench", "model"],
    ["bench", "soak"],
    ["monitor"],
    ["train"],
]


def _walk(group: click.Group, prefix: list[str]) -> list[list[str]]:
    found = []
    for name, command in group.commands.items():
        found.append([*prefix, name])
        if isinstance(command, click.Group):
            found += _walk(command, [*prefix, name])
    return found


def test_every_command_is_listed_here() -> None:
    assert sorted(map(tuple, _walk(main, []))) == sorted(tuple(c) for c in COMMANDS if c)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "driftline")
def test_every_command_explains_itself(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 10  # a sentence, not just a name


def test_no_cluster_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "topics", "create"], env={"DRIFTLINE_BOOTSTRAP_SERVERS": ""}
    )
    assert result.exit_code == 2
    assert "driftline broker start" in result.output
    assert "--bootstrap-servers" in result.output


def test_kafka_options_must_be_key_value() -> None:
    result = CliRunner().invoke(main, ["-X", "security.protocol", "broker", "status"])
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output


@pytest.mark.kafka
def test_topics_create_is_idempotent(settings: Settings) -> None:
    env = {
        "DRIFTLINE_TOPICS__EVENTS": settings.topics.events,
        "DRIFTLINE_TOPICS__PREDICTIONS": "p-" + settings.topics.events,
    }
    args = ["-b", str(settings.bootstrap_servers), "topics", "create"]
    first = CliRunner().invoke(main, args, env=env)
    second = CliRunner().invoke(main, args, env=env)
    assert first.exit_code == 0, first.output
    assert f"p-{settings.topics.events}: created" in first.output
    assert f"p-{settings.topics.events}: exists" in second.output


@pytest.mark.kafka
def test_broker_start_status_stop(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path)]
    runner = CliRunner()
    assert runner.invoke(main, [*home, "broker", "status"]).exit_code == 1
    started = runner.invoke(main, [*home, "broker", "start", "--heap-mb", "256"])
    try:
        assert started.exit_code == 0, started.output
        status = runner.invoke(main, [*home, "broker", "status"])
        assert status.exit_code == 0
        info = json.loads(status.output)
        assert info["bootstrap_servers"].startswith("127.0.0.1:")
        again = runner.invoke(main, [*home, "broker", "start"])
        assert again.exit_code != 0
        assert "already runs" in str(again.exception or again.output)
    finally:
        stopped = runner.invoke(main, [*home, "broker", "stop"])
    assert "Stopped" in stopped.output
    assert runner.invoke(main, [*home, "broker", "status"]).exit_code == 1


@pytest.mark.kafka
def test_serve_without_its_topics_says_how_to_create_them(settings: Settings, tmp_path: Path) -> None:
    from driftline.models import ModelConfig, build_module, save_artifact

    config = ModelConfig(name="m", version="1", architecture="logistic", features=["a"], classes=["x", "y"])
    save_artifact(tmp_path, config, build_module(config))
    env = {**os.environ, "DRIFTLINE_TOPICS__EVENTS": f"missing-{settings.topics.events}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "driftline",
            "-b",
            str(settings.bootstrap_servers),
            "serve",
            "--model",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert f"missing-{settings.topics.events}" in done.stderr
    assert "driftline topics create" in done.stderr


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    from driftline.models.signing import example_version, key_id, sign_version, verify_version

    result = CliRunner().invoke(main, ["models", "keygen", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    private, public = (tmp_path / "signing.key"), (tmp_path / "signing.pub")
    assert private.stat().st_mode & 0o777 == 0o600
    pem = public.read_bytes()
    verify_version(sign_version(example_version(), private.read_bytes()), {key_id(pem): pem})
    again = CliRunner().invoke(main, ["models", "keygen", "--out", str(tmp_path)])
    assert again.exit_code == 2  # never overwrites a key
