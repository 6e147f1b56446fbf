"""The ``driftline`` command line. Every command explains itself with ``--help``.

The group and the options every command shares live here; the commands live in
:mod:`~driftline.cli.infra` (broker, topics, models), :mod:`~driftline.cli.stream` (serve, produce, tail)
and :mod:`~driftline.cli.tools` (demo, bench).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from driftline import lifecycle
from driftline.config import Settings, load_settings
from driftline.errors import DriftlineError

SectionT = TypeVar("SectionT", bound=BaseModel)
CommandT = TypeVar("CommandT", bound=Callable[..., Any])


def _parse_kv(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (example: -X security.protocol=SASL_SSL)")
        out[key.strip()] = value.strip()
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML configuration file (also DRIFTLINE_CONFIG).",
)
@click.option(
    "--bootstrap-servers",
    "-b",
    metavar="HOST:PORT[,...]",
    help="Use this Kafka cluster (also DRIFTLINE_BOOTSTRAP_SERVERS). "
    "Default: the local broker started by `driftline broker start`.",
)
@click.option(
    "-X",
    "kafka_options",
    multiple=True,
    callback=_parse_kv,
    metavar="KEY=VALUE",
    help="Extra librdkafka client setting, repeatable (security.protocol, sasl.*, ssl.*).",
)
@click.option(
    "--schema-registry-url",
    metavar="URL",
    help="Confluent Schema Registry: events use Confluent framing. Default: Avro single-object encoding.",
)
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the local broker keeps its data and state (also DRIFTLINE_HOME).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.version_option(package_name="driftline")
@click.pass_context
def main(
    ctx: click.Context,
    config: Path | None,
    bootstrap_servers: str | None,
    kafka_options: dict[str, str],
    schema_registry_url: str | None,
    home: Path | None,
    verbose: bool,
) -> None:
    """Driftline: PyTorch models in production on Kafka.

    \b
    Quick start (embedded local broker, nothing else needed):
      driftline demo                 # the whole path, with a summary
    Step by step:
      driftline broker start
      driftline topics create
      driftline models bootstrap --out ./model
      driftline serve --model ./model &
      driftline produce --count 10000 --rate 2000
      driftline tail driftline.predictions --max 5
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "schema_registry_url": schema_registry_url,
        "home": home,
    }
    settings = load_settings(config, **overrides)
    if kafka_options:
        settings = settings.model_copy(update={"kafka": {**settings.kafka, **kafka_options}})
    ctx.obj = settings


def cluster_settings(settings: Settings) -> Settings:
    """Settings with bootstrap servers filled in from the running local broker when none are named."""
    if settings.bootstrap_servers:
        return settings
    from driftline.broker import LocalBroker

    info = LocalBroker(settings.home, settings.cache_dir).status()
    if info is None:
        raise click.UsageError(
            "No Kafka cluster: start the local one with `driftline broker start`, or name one with "
            "--bootstrap-servers / DRIFTLINE_BOOTSTRAP_SERVERS."
        )
    return settings.model_copy(update={"bootstrap_servers": info.bootstrap_servers})


SCHEMA_OPTION = click.option(
    "--schema",
    "schemas",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Extra .avsc writer schema(s) of user records to accept, oldest version first.",
)


TRUSTED_KEYS_OPTION = click.option(
    "--trusted-key",
    "trusted_keys",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    multiple=True,
    help="Public key(s) whose registry records are trusted [default: <home>/keys/signing.pub]. Repeatable.",
)


def setting_option(
    section: type[BaseModel], field: str, *decls: str, **kwargs: Any
) -> Callable[[CommandT], CommandT]:
    """A flag for one field of a service's options section (:mod:`driftline.options`): its help and
    default come from the field; left out, the configured value (file, environment) holds.
    The command merges the flags it got with :func:`with_flags`."""
    info = section.model_fields[field]
    prefix = {"ServeOptions": "serve", "MonitorOptions": "monitor", "TrainOptions": "train"}[section.__name__]
    if info.default_factory is not None:
        shown = "the host name"
    elif isinstance(info.default, tuple):
        shown = ",".join(map(str, info.default)) or "none"
    else:
        shown = str(info.default)
    where = f"[{prefix}] {field} / DRIFTLINE_{prefix.upper()}__{field.upper()}"
    flags = decls or (f"--{field.replace('_', '-')}",)
    return click.option(
        *flags, field, default=None, help=f"{info.description} [default: {shown}; {where}]", **kwargs
    )


def with_flags(section: SectionT, **flags: Any) -> SectionT:
    """``section`` with the flags that were given (not ``None``) on top, validated."""
    given = {k: v for k, v in flags.items() if v is not None and v != ()}
    return type(section).model_validate({**section.model_dump(), **given})


METRICS_PORT_HELP = (
    "Port of /metrics (Prometheus), /livez and /readyz (0: off). They bind to 127.0.0.1; set "
    "DRIFTLINE_HTTP__HOST=0.0.0.0 (or [http] host in the config file) to reach them from elsewhere."
)


def with_trusted_keys(settings: Settings, keys: tuple[Path, ...]) -> Settings:
    """``settings`` trusting ``keys`` instead of the configured public keys (when any are given)."""
    if not keys:
        return settings
    return settings.model_copy(
        update={"signing": settings.signing.model_copy(update={"public_keys": list(keys)})}
    )


def stop_on_signals() -> threading.Event:
    """The event that SIGTERM and SIGINT set from now on: a service finishes its work in hand and
    stops cleanly (before this call, a signal interrupts the start-up: see :mod:`driftline.lifecycle`)."""
    return lifecycle.stop_event()


def run() -> None:
    """Entry point: Driftline's own errors become one clear line and exit code 2; a signal during
    start-up (or during a one-shot command) ends it cleanly with 128 + the signal's number."""
    lifecycle.install()
    try:
        main(standalone_mode=True)
    except DriftlineError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except lifecycle.Interrupted as exc:
        lifecycle.exit_interrupted(exc)


# Register the commands on `main` (they import it from here).
from driftline.cli import acl, infra, models, stream, tools, train  # noqa: E402, F401

__all__ = ["cluster_settings", "infra", "main", "run", "stream", "tools"]
