"""One typed configuration for every Driftline command.

Values come, lowest priority first, from the defaults below, a TOML file (``--config`` or
``DRIFTLINE_CONFIG``), environment variables prefixed ``DRIFTLINE_`` (nested with ``__``, for
example ``DRIFTLINE_TOPICS__PARTITIONS=8``), and finally command-line options.
Services receive a :class:`Settings`; they never read the environment themselves.

>>> s = Settings(bootstrap_servers="127.0.0.1:9092", kafka={"security.protocol": "SSL"})
>>> s.client_config()["bootstrap.servers"], s.client_config()["security.protocol"]
('127.0.0.1:9092', 'SSL')
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from driftline.errors import ConfigError
from driftline.options import MonitorOptions, ServeOptions, TrainOptions

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("driftline_config_file", default=None)


def _default_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "driftline"


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "driftline"


ROLES = (
    "events",
    "predictions",
    "dead_letters",
    "labels",
    "model_versions",
    "artifacts",
    "shadow_predictions",
    "audit",
    "drift_alerts",
    "retrain_requests",
    "monitor_state",
)
"""Every topic role, in the order ``topics create`` lists them."""

COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(30 * 24 * 3600 * 1000)}
"""Control topics keep the latest record per key, and every record for 30 days at least (the audit
history of what served when)."""


class TopicSpec(BaseModel):
    """How one topic is created."""

    name: str
    partitions: int
    config: dict[str, str] = Field(default_factory=dict)


class Topics(BaseModel):
    """Names and sizes of the topics Driftline uses."""

    events: str = Field("driftline.events", description="Input events (Avro).")
    predictions: str = Field("driftline.predictions", description="One prediction per event.")
    dead_letters: str = Field(
        "driftline.dead-letters",
        description="Events that could not be handled: original bytes plus reason headers.",
    )
    labels: str = Field("driftline.labels", description="Late ground-truth labels, keyed by event id.")
    model_versions: str = Field(
        "driftline.model-versions",
        description="The model registry: signed ModelVersion records, one partition, compacted.",
    )
    artifacts: str = Field(
        "driftline.artifacts", description="Model artifacts in chunks keyed <sha256>:<index>, compacted."
    )
    shadow_predictions: str = Field(
        "driftline.shadow-predictions", description="Predictions of a shadow version, for comparison."
    )
    audit: str = Field(
        "driftline.audit", description="What the services did with model versions: swaps and refusals."
    )
    drift_alerts: str = Field("driftline.drift-alerts", description="Drift alerts for users.")
    retrain_requests: str = Field(
        "driftline.retrain-requests", description="Retraining requests from the drift monitor."
    )
    monitor_state: str = Field(
        "driftline.monitor-state",
        description="The drift monitor's checkpoints (detector state and input positions), compacted.",
    )
    partitions: int = Field(4, ge=1, description="Partitions for every data topic created by Driftline.")
    replication_factor: int = Field(
        -1,
        ge=-1,
        description="Replication factor for created topics; -1: the cluster's default.replication.factor "
        "(and its min.insync.replicas apply), which for the local 3-node cluster is 3 with min ISR 2.",
    )

    @field_validator("replication_factor")
    @classmethod
    def _replicated(cls, value: int) -> int:
        if value == 0:
            raise ValueError("replication_factor is -1 (the cluster's default) or 1 and more, not 0")
        return value

    def all_names(self) -> list[str]:
        return [getattr(self, role) for role in ROLES]

    def specs(self) -> list[TopicSpec]:
        """How each topic is created: the registry and the monitor's checkpoints are one compacted
        partition each; artifacts are compacted; the rest are data topics of ``partitions`` partitions."""
        special = {
            self.model_versions: TopicSpec(name=self.model_versions, partitions=1, config=COMPACTED),
            self.artifacts: TopicSpec(name=self.artifacts, partitions=self.partitions, config=COMPACTED),
            self.monitor_state: TopicSpec(name=self.monitor_state, partitions=1, config=COMPACTED),
        }
        return [special.get(n) or TopicSpec(name=n, partitions=self.partitions) for n in self.all_names()]

    def scoped(self, prefix: str, partitions: int | None = None) -> Topics:
        """Topics of their own for one run (demo, bench, a test), named ``<prefix>.<role>``.

        >>> Topics().scoped("demo-1a2b").predictions
        'demo-1a2b.predictions'
        >>> Topics().scoped("demo-1a2b").model_versions
        'demo-1a2b.model-versions'
        """
        names = {role: f"{prefix}.{role.replace('_', '-')}" for role in ROLES}
        return Topics(
            **names,
            partitions=self.partitions if partitions is None else partitions,
            replication_factor=self.replication_factor,
        )

    def environment(self) -> dict[str, str]:
        """These topics as ``DRIFTLINE_TOPICS__*`` variables, for a child process."""
        env = {f"DRIFTLINE_TOPICS__{role.upper()}": getattr(self, role) for role in ROLES}
        env["DRIFTLINE_TOPICS__PARTITIONS"] = str(self.partitions)
        env["DRIFTLINE_TOPICS__REPLICATION_FACTOR"] = str(self.replication_factor)
        return env


class Signing(BaseModel):
    """Where the keys that sign and verify model versions live."""

    private_key: Path | None = Field(
        None,
        description="Ed25519 private key (PEM) of trainers and operators. Default: <home>/keys/signing.key.",
    )
    public_keys: list[Path] = Field(
        default_factory=list,
        description="Trusted public keys (PEM). Default: <home>/keys/signing.pub.",
    )


class Http(BaseModel):
    """The HTTP endpoints of ``serve``, ``monitor`` and ``train`` (on ``--metrics-port``): ``/metrics``
    for Prometheus, ``/livez`` and ``/readyz`` for health checks."""

    host: str = Field(
        "127.0.0.1",
        description="Address the endpoints bind to: loopback by default; 0.0.0.0 in a container.",
    )
    unreachable_after_s: float = Field(
        15.0, description="A service that cannot reach the cluster this long turns not-ready and says so."
    )
    exit_after_unreachable_s: float = Field(
        0.0, description="Exit with code 2 after this long without the cluster (0: keep waiting)."
    )
    stall_after_s: float = Field(
        120.0, description="A service whose loop has not turned this long is not live (a stuck process)."
    )


class Settings(BaseSettings):
    """Driftline's configuration (see the module docstring for the sources)."""

    model_config = SettingsConfigDict(env_prefix="DRIFTLINE_", env_nested_delimiter="__", extra="forbid")

    bootstrap_servers: str | None = Field(
        None,
        description="Kafka bootstrap servers. Unset: use the local broker (`driftline broker start`).",
    )
    kafka: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka client settings (security.protocol, sasl.*, ssl.*), "
        "passed to every consumer, producer and admin client.",
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent Schema Registry URL. Set: events are framed with Confluent's "
        "magic byte and schema id. Unset: Avro single-object encoding.",
    )
    schema_registry: dict[str, str] = Field(
        default_factory=dict, description="Extra Schema Registry client settings (basic.auth.*)."
    )
    topics: Topics = Field(default_factory=Topics)
    model_name: str = Field("driftline", description="The model that `serve` serves from the registry.")
    signing: Signing = Field(default_factory=Signing)
    http: Http = Field(default_factory=Http)
    serve: ServeOptions = Field(default_factory=ServeOptions)
    monitor: MonitorOptions = Field(default_factory=MonitorOptions)
    train: TrainOptions = Field(default_factory=TrainOptions)
    home: Path = Field(default_factory=_default_home, description="Local broker data and state.")
    cache_dir: Path = Field(default_factory=_default_cache, description="Cache for the broker jars.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _CONFIG_FILE.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by every client; raises if no cluster is known."""
        if not self.bootstrap_servers:
            raise ConfigError(
                "No Kafka cluster configured: run `driftline broker start`, or pass "
                "--bootstrap-servers / set DRIFTLINE_BOOTSTRAP_SERVERS."
            )
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka}

    def private_key_path(self) -> Path:
        return self.signing.private_key or self.home / "keys" / "signing.key"

    def public_key_paths(self) -> list[Path]:
        return self.signing.public_keys or [self.home / "keys" / "signing.pub"]

    def signed_with(self, public_keys: list[Path], private_key: Path | None = None) -> Settings:
        """These settings trusting ``public_keys`` (and signing with ``private_key`` when given)."""
        update: dict[str, Any] = {"public_keys": public_keys}
        if private_key is not None:
            update["private_key"] = private_key
        return self.model_copy(update={"signing": self.signing.model_copy(update=update)})

    def registry_config(self) -> dict[str, Any] | None:
        if not self.schema_registry_url:
            return None
        return {"url": self.schema_registry_url, **self.schema_registry}


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from file, environment and explicit overrides (``None`` values are ignored).

    ``config_file`` defaults to the path in ``DRIFTLINE_CONFIG`` when that is set.
    """
    if config_file is None and os.environ.get("DRIFTLINE_CONFIG"):
        config_file = Path(os.environ["DRIFTLINE_CONFIG"])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"Config file {config_file} does not exist.")
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"Invalid configuration:\n{exc}") from exc
    finally:
        _CONFIG_FILE.reset(token)
