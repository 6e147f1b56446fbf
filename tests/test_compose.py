"""docker-compose.yml against the code: every service runs a real command with real options, every
metrics port is published, scraped and health-checked, and every metric the Grafana dashboard
plots is one the services export. `docker compose config` runs too where the plugin exists."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client import CollectorRegistry

from driftline.cli import main
from driftline.metrics import MonitorMetrics, ServeMetrics, TrainMetrics

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
DRIFTLINE = {name: s for name, s in SERVICES.items() if "build" in s}
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/driftline.json").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())


def invocations(service: dict[str, Any]) -> list[list[str]]:
    """The `driftline ...` command lines a service runs (its command, or those inside `sh -c`)."""
    if service.get("entrypoint", ["driftline"])[0] == "driftline":
        return [list(service.get("command", []))]
    script = " ".join(service["command"])
    return [shlex.split(part)[1:] for part in re.findall(r"driftline [^&|()]+", script)]


def check_invocation(args: list[str]) -> None:
    command: click.Command = main
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not isinstance(command, click.Group) or not rest, f"{args}: not a command"
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    for token in rest:
        if token.startswith("--"):
            assert token.split("=")[0] in known, f"{args}: {token} is not an option of {command.name}"


@pytest.mark.parametrize("name", sorted(DRIFTLINE))
def test_every_driftline_service_runs_a_real_command(name: str) -> None:
    if "profiles" in DRIFTLINE[name]:
        return  # `cli` takes its command at `docker compose run`
    found = invocations(DRIFTLINE[name])
    assert found, name
    for args in found:
        check_invocation(args)


def metrics_ports() -> dict[str, int]:
    out = {}
    for name, service in DRIFTLINE.items():
        command = service.get("command", [])
        if "--metrics-port" in command:
            out[name] = int(command[command.index("--metrics-port") + 1])
    return out


def test_every_metrics_port_is_published_scraped_and_health_checked() -> None:
    ports = metrics_ports()
    assert set(ports) == {"serve", "monitor", "train"}
    targets = {t for job in PROMETHEUS["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    for name, port in ports.items():
        assert f"{port}:{port}" in SERVICES[name]["ports"], name
        assert f"{name}:{port}" in targets, name
        assert str(port) in SERVICES[name]["healthcheck"]["test"], name
        assert any("/readyz" in part for part in SERVICES[name]["healthcheck"]["test"]), name
        assert SERVICES[name]["environment"]["DRIFTLINE_HTTP__HOST"] == "0.0.0.0", name  # loopback by default
        assert SERVICES[name]["restart"] == "unless-stopped"


def exported_names() -> set[str]:
    names: set[str] = set()
    for metrics in (ServeMetrics(), MonitorMetrics(), TrainMetrics()):
        registry: CollectorRegistry = metrics.registry
        for family in registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(
                family.type, [""]
            )
            names.update(family.name + s for s in suffixes)
    return names


def test_every_dashboard_metric_is_exported() -> None:
    exprs = [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bdriftline_[a-z_]+", e)}
    assert used, "the dashboard plots something"
    assert used <= exported_names(), used - exported_names()
    titles = " ".join(p["title"].lower() for p in DASHBOARD["panels"])
    for topic in ("throughput", "latency", "lag", "drift", "alerts", "version"):
        assert topic in titles


def test_grafana_and_prometheus_provisioning_point_at_each_other() -> None:
    grafana = SERVICES["grafana"]
    mounts = {v.split(":")[1] for v in grafana["volumes"]}
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/driftline.yml").read_text())
    assert provider["providers"][0]["options"]["path"] in mounts
    source = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert "9090:9090" in SERVICES["prometheus"]["ports"]


def test_the_gpu_override_reserves_the_gpu_for_the_trainer_only() -> None:
    gpu = yaml.safe_load((ROOT / "docker-compose.gpu.yml").read_text())["services"]
    assert list(gpu) == ["train"]
    check_invocation(gpu["train"]["command"])
    assert gpu["train"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def _compose_available() -> bool:
    docker = shutil.which("docker")
    return (
        docker is not None
        and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0
    )


@pytest.mark.skipif(not _compose_available(), reason="no `docker compose` plugin on this machine")
def test_docker_compose_accepts_the_files() -> None:
    for files in (["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]):
        args = [a for f in files for a in ("-f", f)]
        done = subprocess.run(
            ["docker", "compose", *args, "config", "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
