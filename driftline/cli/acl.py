"""``driftline acl``: least-privilege ACLs per service, printed or applied to the cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from driftline.cli import main
from driftline.cli.infra import local_admin_settings
from driftline.config import Settings

if TYPE_CHECKING:
    from driftline.acls import Binding


@main.group()
def acl() -> None:
    """Least privilege: each service as its own principal (User:serve, User:monitor, User:train),
    allowed only the topics, consumer groups and transactional ids it uses.

    \b
    serve    reads events and the registry; writes predictions, shadow predictions, dead letters, audit
    monitor  reads events, predictions, labels, the registry; writes alerts, retrain requests, checkpoints
    train    reads events, labels, retrain requests, the registry; writes model versions and artifacts

    Only train and the operators (a super user, `admin` on `driftline broker start --secure`) can
    write the registry. The cluster must authorize (an authorizer, allow.everyone.if.no.acl.found=false)
    and authenticate each service as its principal.
    """


def _options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--model-name",
        "model_names",
        multiple=True,
        help="Model(s) whose monitor and trainer run [default: the configured model_name]. Repeatable.",
    )(f)
    f = click.option(
        "--serve-group",
        default="driftline-serve",
        show_default=True,
        help="The consumer group `serve` runs in (its --group); its transactional ids are <group>.*.",
    )(f)
    return click.option(
        "--prefix",
        help="Topics named <PREFIX>.<role> (driftline.events: --prefix driftline) instead of the "
        "configured ones.",
    )(f)


def _bindings(
    settings: Settings, prefix: str | None, serve_group: str, model_names: tuple[str, ...]
) -> list[Binding]:
    from driftline.acls import bindings

    topics = settings.topics.scoped(prefix) if prefix else settings.topics
    return bindings(topics, serve_group, model_names or (settings.model_name,))


@acl.command("print")
@_options
@click.pass_obj
def acl_print(settings: Settings, prefix: str | None, serve_group: str, model_names: tuple[str, ...]) -> None:
    """Print the ACL bindings per service: principal, resource, pattern, operation (all ALLOW, any
    host). Needs no cluster."""
    from driftline.acls import table

    click.echo(table(_bindings(settings, prefix, serve_group, model_names)))


@acl.command("apply")
@_options
@click.pass_obj
def acl_apply(settings: Settings, prefix: str | None, serve_group: str, model_names: tuple[str, ...]) -> None:
    """Create the ACL bindings on the cluster (idempotent: existing ones stay).

    Run it as a principal that may alter ACLs, e.g. `-X security.protocol=SASL_PLAINTEXT -X
    sasl.mechanism=SCRAM-SHA-512 -X sasl.username=admin -X sasl.password=...`. On the secure local
    broker with no -X sasl.* given, it authenticates as its `admin`.
    """
    from driftline.streams.kafka import create_acls, describe_acls

    settings = local_admin_settings(settings)
    wanted = _bindings(settings, prefix, serve_group, model_names)
    existing = describe_acls(settings)
    new = [b for b in wanted if b.row() not in existing]
    create_acls(settings, new)
    click.echo(
        f"{len(new)} ACL binding(s) created on {settings.bootstrap_servers}, "
        f"{len(wanted) - len(new)} existed already."
    )
