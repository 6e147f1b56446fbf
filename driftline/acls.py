"""Least privilege: the ACLs that let each service do its work and nothing else.

Each service runs as its own principal (``User:serve``, ``User:monitor``, ``User:train``); operators
run as a super user (``admin`` on the secure local broker). The rights follow from the configured
topic names, consumer groups and transactional ids, as the services use them:

- ``serve`` reads events and the registry (model versions, artifacts) and writes predictions,
  shadow predictions, dead letters and the audit trail. It can neither publish nor promote a model.
- ``monitor`` reads events, predictions, labels, the registry and its own checkpoints, and writes
  drift alerts, retrain requests, dead letters and checkpoints, in transactions.
- ``train`` reads events, labels, retrain requests and the registry, and writes model versions and
  artifacts: with the operators, the only ones who can.

Group ids a service generates (``driftline-registry-1a2b3c4d``) are granted by prefix. The derivation
is pure: ``driftline acl print`` shows it, ``driftline acl apply`` creates it on the cluster.

>>> rights = bindings(Topics())
>>> [b.operation for b in rights if b.principal == "User:serve" and b.name == "driftline.model-versions"]
['READ']
>>> Binding("User:train", "TOPIC", "driftline.artifacts", "LITERAL", "WRITE").row()
('User:train', 'TOPIC', 'driftline.artifacts', 'LITERAL', 'WRITE')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass

from driftline.config import Topics

SERVE_GROUP = "driftline-serve"
"""``driftline serve``'s default consumer group (``--group``)."""

READ, WRITE, DESCRIBE_CONFIGS = "READ", "WRITE", "DESCRIBE_CONFIGS"
LITERAL, PREFIXED = "LITERAL", "PREFIXED"
TOPIC, GROUP, TRANSACTIONAL_ID = "TOPIC", "GROUP", "TRANSACTIONAL_ID"


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW rule, from any host: ``principal`` may do ``operation`` on the resource of type
    ``resource`` named ``name`` (``pattern`` LITERAL: exactly; PREFIXED: every name starting so)."""

    principal: str
    resource: str
    name: str
    pattern: str
    operation: str

    def row(self) -> tuple[str, str, str, str, str]:
        return astuple(self)


@dataclass(frozen=True)
class Rights:
    """What one service touches: topic roles (see :data:`driftline.config.ROLES`) it reads, writes
    and describes the configuration of; group ids and transactional ids, each with its pattern."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    describe_configs: tuple[str, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    transactional_ids: tuple[tuple[str, str], ...] = ()


REGISTRY_GROUPS = (("driftline-registry-", PREFIXED),)
"""The registry follower's own group per run (``driftline.models.follower``)."""
ARTIFACT_GROUPS = (("driftline-artifact-", PREFIXED),)
"""The artifact reader's own group per fetch (``driftline.models.transport``)."""
READER_GROUPS = (("driftline-reader-", PREFIXED),)
"""``driftline.streams.kafka.read_to_end`` and ``read_topic``'s own group per read."""


def service_rights(
    serve_group: str = SERVE_GROUP, model_names: Sequence[str] = ("driftline",)
) -> dict[str, Rights]:
    """Each service's rights, for ``serve`` in ``serve_group`` and monitors of ``model_names``.

    >>> service_rights()["serve"].transactional_ids
    (('driftline-serve.', 'PREFIXED'),)
    """
    models = tuple(model_names)
    return {
        "serve": Rights(
            reads=("events", "model_versions", "artifacts"),
            writes=("predictions", "shadow_predictions", "dead_letters", "audit"),
            describe_configs=("dead_letters",),  # max.message.bytes; serve tolerates a refusal
            groups=(
                (serve_group, LITERAL),
                *((f"driftline-watcher-{m}", LITERAL) for m in models),
                *REGISTRY_GROUPS,
                *ARTIFACT_GROUPS,
            ),
            transactional_ids=((f"{serve_group}.", PREFIXED),),  # <group>.<instance-id>, --exactly-once
        ),
        "monitor": Rights(
            reads=("events", "predictions", "labels", "model_versions", "monitor_state"),
            writes=("drift_alerts", "retrain_requests", "dead_letters", "monitor_state"),
            describe_configs=("dead_letters",),
            groups=(
                *((f"driftline-monitor-{m}", LITERAL) for m in models),
                *REGISTRY_GROUPS,
                *READER_GROUPS,
            ),
            transactional_ids=tuple((f"driftline-monitor.{m}", LITERAL) for m in models),
        ),
        "train": Rights(
            reads=("events", "labels", "retrain_requests", "model_versions", "artifacts"),
            writes=("model_versions", "artifacts"),
            # driftline-train-<model> for requests, driftline-train-<random> for training data
            groups=(("driftline-train-", PREFIXED), *REGISTRY_GROUPS, *ARTIFACT_GROUPS),
        ),
    }


def principal(service: str) -> str:
    return f"User:{service}"


def bindings_of(who: str, rights: Rights, topics: Topics) -> list[Binding]:
    """The bindings that give principal ``who`` ``rights`` over ``topics``."""
    out = [Binding(who, TOPIC, getattr(topics, role), LITERAL, READ) for role in rights.reads]
    out += [Binding(who, TOPIC, getattr(topics, role), LITERAL, WRITE) for role in rights.writes]
    out += [
        Binding(who, TOPIC, getattr(topics, role), LITERAL, DESCRIBE_CONFIGS)
        for role in rights.describe_configs
    ]
    out += [Binding(who, GROUP, name, pattern, READ) for name, pattern in rights.groups]
    out += [
        Binding(who, TRANSACTIONAL_ID, name, pattern, WRITE) for name, pattern in rights.transactional_ids
    ]
    return out


def bindings(
    topics: Topics, serve_group: str = SERVE_GROUP, model_names: Sequence[str] = ("driftline",)
) -> list[Binding]:
    """Every service's bindings, sorted, without duplicates. READ and WRITE imply DESCRIBE in Kafka,
    and an idempotent producer needs no IDEMPOTENT_WRITE once it may WRITE a topic (Kafka 3.0+)."""
    out: set[Binding] = set()
    for service, rights in service_rights(serve_group, model_names).items():
        out.update(bindings_of(principal(service), rights, topics))
    return sorted(out)


def table(rows: Iterable[Binding]) -> str:
    """A plain-text table, one binding a line.

    >>> print(table([Binding("User:serve", "TOPIC", "driftline.events", "LITERAL", "READ")]))
    PRINCIPAL   RESOURCE  NAME              PATTERN  OPERATION
    User:serve  TOPIC     driftline.events  LITERAL  READ
    """
    header = ("PRINCIPAL", "RESOURCE", "NAME", "PATTERN", "OPERATION")
    lines = [header, *(b.row() for b in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
