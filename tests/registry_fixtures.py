"""A real Confluent-compatible Schema Registry for tests, named by ``DRIFTLINE_TEST_SCHEMA_REGISTRY_URL``.

No registry server can be assembled from the package registries these machines reach (issue 12:
Karapace is not on PyPI, Apicurio's modules and the Quarkus version they build on are only partly
served by Maven Central here, Confluent's repository does not resolve), so the fixture does not start
one: it uses the registry the environment names, like ``DRIFTLINE_TEST_BOOTSTRAP_SERVERS`` for the
cluster, and skips the test otherwise. The tests need nothing from the registry beyond its HTTP API
(they passed against Karapace 6.2 run by hand on Driftline's local broker).
"""

from __future__ import annotations

import os
import uuid

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

URL_VARIABLE = "DRIFTLINE_TEST_SCHEMA_REGISTRY_URL"


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """The URL of a running Confluent-compatible registry; skips the test when none is named."""
    url = os.environ.get(URL_VARIABLE, "").strip()
    if not url:
        pytest.skip(f"no Schema Registry server: set {URL_VARIABLE} to a Confluent-compatible one")
    return url.rstrip("/")


@pytest.fixture
def subject() -> str:
    """A subject unique to this test, so tests never see each other's versions."""
    return f"driftline-{uuid.uuid4().hex[:10]}-value"


@pytest.fixture
def registry_client(schema_registry_url: str) -> SchemaRegistryClient:
    """confluent-kafka's HTTP client on the test registry (no cache shared with other tests)."""
    return SchemaRegistryClient({"url": schema_registry_url})
