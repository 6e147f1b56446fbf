"""The least-privilege ACL set, derived without a broker: who may write the registry, and that every
topic, group and transactional id a service uses in code is granted to it (and no more)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import driftline
from driftline.acls import PREFIXED, Binding, bindings, service_rights
from driftline.config import ROLES, Topics

TOPICS = Topics()
RULES = bindings(TOPICS, model_names=["agrawal"])
SOURCE = Path(driftline.__file__).parent

MODULES = {
    "serve": [
        "streams/serve.py",
        "streams/app.py",
        "streams/watcher.py",
        "streams/audit.py",
        "models/follower.py",
        "models/control.py",
    ],
    "monitor": ["streams/monitor_service.py", "models/follower.py"],
    "train": ["trainers/service.py", "trainers/retrain.py", "trainers/dataset.py", "models/control.py"],
}
"""The modules each service runs that name topics by role (``settings.topics.<role>``, ``t.<role>``)."""


def allows(principal: str, resource: str, name: str, operation: str) -> bool:
    return any(
        b.principal == principal
        and b.resource == resource
        and b.operation == operation
        and (name.startswith(b.name) if b.pattern == PREFIXED else name == b.name)
        for b in RULES
    )


def roles_named_in(module: str) -> set[str]:
    text = (SOURCE / module).read_text()
    return {role for role in re.findall(r"\b(?:topics|t)\.(\w+)", text) if role in ROLES}


def test_only_the_trainer_writes_the_registry_and_the_artifacts() -> None:
    for topic in (TOPICS.model_versions, TOPICS.artifacts):
        writers = {b.principal for b in RULES if b.name == topic and b.operation == "WRITE"}
        assert writers == {"User:train"}
        assert allows("User:serve", "TOPIC", topic, "READ")


@pytest.mark.parametrize("service", sorted(MODULES))
def test_every_topic_a_service_names_in_code_is_granted_to_it(service: str) -> None:
    named = set().union(*(roles_named_in(m) for m in MODULES[service]))
    assert named, "the scan found no topic: the modules moved?"
    granted = {b.name for b in RULES if b.principal == f"User:{service}" and b.resource == "TOPIC"}
    assert {getattr(TOPICS, role) for role in named} == granted  # all it needs, nothing more


def test_each_service_reads_and_writes_what_it_should_and_nothing_more() -> None:
    rights = service_rights(model_names=["agrawal"])
    assert set(rights["serve"].writes) == {"predictions", "shadow_predictions", "dead_letters", "audit"}
    assert set(rights["monitor"].writes) == {
        "drift_alerts",
        "retrain_requests",
        "dead_letters",
        "monitor_state",
    }
    assert set(rights["train"].writes) == {"model_versions", "artifacts"}
    assert "labels" not in rights["serve"].reads
    assert "retrain_requests" not in rights["serve"].reads + rights["monitor"].reads


@pytest.mark.parametrize(
    ("service", "group"),
    [
        ("serve", "driftline-serve"),
        ("serve", "driftline-watcher-agrawal"),
        ("serve", "driftline-registry-1a2b3c4d"),
        ("serve", "driftline-artifact-1a2b3c4d"),
        ("monitor", "driftline-monitor-agrawal"),
        ("monitor", "driftline-registry-1a2b3c4d"),
        ("monitor", "driftline-reader-1a2b3c4d"),
        ("train", "driftline-train-agrawal"),
        ("train", "driftline-train-1a2b3c4d"),
        ("train", "driftline-registry-1a2b3c4d"),
        ("train", "driftline-artifact-1a2b3c4d"),
    ],
)
def test_the_groups_each_service_uses_are_granted(service: str, group: str) -> None:
    assert allows(f"User:{service}", "GROUP", group, "READ")


def test_the_transactional_ids_are_granted_to_their_service_only() -> None:
    assert allows("User:serve", "TRANSACTIONAL_ID", "driftline-serve.serve-0", "WRITE")
    assert allows("User:monitor", "TRANSACTIONAL_ID", "driftline-monitor.agrawal", "WRITE")
    assert not allows("User:serve", "TRANSACTIONAL_ID", "driftline-monitor.agrawal", "WRITE")
    assert not allows("User:serve", "GROUP", "driftline-monitor-agrawal", "READ")
    assert not allows("User:monitor", "GROUP", "driftline-serve", "READ")


def test_the_serve_group_and_topic_names_follow_the_configuration() -> None:
    rules = bindings(Topics().scoped("acme"), serve_group="scorers", model_names=["fraud"])
    assert Binding("User:serve", "GROUP", "scorers", "LITERAL", "READ") in rules
    assert Binding("User:serve", "TRANSACTIONAL_ID", "scorers.", "PREFIXED", "WRITE") in rules
    assert Binding("User:monitor", "TRANSACTIONAL_ID", "driftline-monitor.fraud", "LITERAL", "WRITE") in rules
    assert all(b.name.startswith("acme.") for b in rules if b.resource == "TOPIC")
    assert rules == sorted(set(rules))
