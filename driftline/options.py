"""Each service's options: sections of the typed configuration, with their defaults in one place.

Every field can be set in the TOML file (``[serve]``, ``[monitor]``, ``[train]``), in the environment
(``DRIFTLINE_SERVE__MAX_BATCH=500``, ``DRIFTLINE_MONITOR__COOLDOWN_S=60``, ...) or with the
command's flag of the same name (``--max-batch``), which wins. The flags take their help and their
default from here (:func:`driftline.cli.setting_option`).

>>> ServeOptions().max_batch, ServeOptions(max_batch=500).max_wait_ms
(2000, 20.0)
>>> MonitorOptions(retrain_on="concept, data").retrain_on
('CONCEPT', 'DATA')
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServeOptions(_Section):
    """How one ``driftline serve`` instance runs."""

    group_id: str = Field("driftline-serve", description="Consumer group; more processes in it scale out.")
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable id of this instance (default: the host name); it names the transactional "
        "id, so a restarted instance fences its old self. Unique within the group with exactly_once.",
    )
    max_batch: int = Field(2000, ge=1, description="Largest micro-batch, in events.")
    max_wait_ms: float = Field(
        20.0,
        ge=0,
        description="Latency budget: a batch closes this long after its first event at the latest.",
    )
    exactly_once: bool = Field(
        False, description="One Kafka transaction per batch; consumers of the outputs read read_committed."
    )
    delivery_timeout_s: float = Field(
        60.0, gt=0, description="How long a batch's outputs may take to be acknowledged before serve stops."
    )
    session_timeout_ms: int = Field(
        10000, description="How soon the group notices a dead processor and hands its partitions on."
    )
    lag_interval_s: float = Field(1.0, gt=0, description="How often the consumer-lag gauges are updated.")
    device: str = Field("auto", description="auto (CUDA when present), cpu or cuda.")
    torch_threads: int = Field(
        1,
        ge=1,
        description="PyTorch CPU threads (1 suits small models; raise it for large ones on many cores).",
    )


class MonitorOptions(_Section):
    """How ``driftline monitor`` runs and when it speaks up."""

    label_ttl_s: float = Field(600.0, gt=0, description="How long a prediction waits for its label.")
    join_max_pending: int = Field(
        2_000_000,
        ge=1,
        description="Most predictions (and as many labels) held waiting for their partner: this bounds "
        "the monitor's memory when it falls behind (the 30-minute soak plateaued at 1.7 GB RSS).",
    )
    update_interval_s: float = Field(
        30.0, ge=0, description="At most one UPDATE of an open alert this often."
    )
    cooldown_s: float = Field(
        600.0, ge=0, description="A later alarm of an open alert asks for retraining again after this long."
    )
    retrain_events: int = Field(
        20000,
        ge=1,
        description="Events (per input topic, over its partitions) a retraining request's window holds "
        "at most.",
    )
    retrain_lookback: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of a drift request's window taken from before the alert (0: only events "
        "after it; 0.5: half before, half after).",
    )
    retrain_wait_s: float = Field(
        120.0,
        gt=0,
        description="A request whose events after it take longer than this to come at the stream's "
        "recent rate says so (the trainer trains on what came by its --data-timeout-s: keep that at "
        "least this).",
    )
    retrain_every_labels: int = Field(
        0,
        ge=0,
        description="Continuous retraining: a request after this many labelled predictions of the live "
        "version, on the latest --retrain-events events (0: off).",
    )
    retrain_every_s: float = Field(
        0.0,
        ge=0,
        description="Continuous retraining: a request this long after the last one when labels came "
        "since, on the latest --retrain-events events (0: off).",
    )
    retrain_on: tuple[str, ...] = Field(
        ("CONCEPT", "PREDICTION", "DATA"),
        description="Alert kinds that request retraining (comma-separated; empty: never).",
    )
    partition_stride: int = Field(
        1,
        ge=1,
        description="Read every Nth partition only: a 1/N sample of events with their predictions and "
        "labels (co-partitioned inputs), to keep up with a faster stream.",
    )
    start_from_end: bool = Field(
        False, description="Without a checkpoint, start at the inputs' end, not their beginning."
    )
    checkpoint_interval_s: float = Field(1.0, gt=0, description="How often state and outputs are committed.")
    batch: int = Field(5000, ge=1, description="Records read per poll.")
    status_interval_s: float = Field(5.0, gt=0, description="At most one progress line this often.")
    schemas: tuple[Path, ...] = Field((), description="User record schemas the events may be written in.")

    @field_validator("retrain_on", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        return tuple(str(k).strip().upper() for k in value if str(k).strip())


class TrainOptions(_Section):
    """How ``driftline train`` fits and judges a candidate.

    >>> TrainOptions(recent_shares="1, 0.25").recent_shares
    (1.0, 0.25)
    """

    @field_validator("recent_shares", mode="before")
    @classmethod
    def _shares(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        shares = tuple(float(v) for v in value)
        if not shares or not all(0 < v <= 1 for v in shares):
            raise ValueError("recent shares are fractions in (0, 1]")
        return shares

    architecture: str = Field("mlp", description="The built-in architecture to fit: mlp or logistic.")
    epochs: int = Field(10, ge=1, description="Training epochs.")
    device: str = Field("auto", description="auto (CUDA when present), cpu or cuda.")
    margin: float = Field(
        0.01, description="Promote only if the held-out accuracy beats the live version's by this much."
    )
    confidence: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="Promote only when a paired test over the held-out rows is this sure that the "
        "candidate beats the live version (one-sided; 0: the margin alone). Keeps a win within noise "
        "from replacing the live version.",
    )
    eval_fraction: float = Field(
        0.25, gt=0, lt=1, description="Most recent share of the rows held out to judge the candidate."
    )
    min_rows: int = Field(1000, ge=1, description="Fewest labelled rows to train on.")
    recent_shares: tuple[float, ...] = Field(
        (1.0,),
        description="Also fit on only the most recent of these shares of the training rows "
        "(comma-separated, e.g. 1,0.5,0.25) and keep the candidate that scores best on the held-out "
        "rows: after a sudden drift the rows since it alone win. The choice uses the rows the live "
        "version is compared on, which favours the candidate a little.",
    )
    data_timeout_s: float = Field(120.0, gt=0, description="How long to wait for a window's data.")
    schemas: tuple[Path, ...] = Field((), description="User record schemas the events may be written in.")
    recipe: str | None = Field(
        None,
        description="The team's training function: package.module:function or a driftline.recipes "
        "entry point (driftline.trainers.recipes:mlp is Driftline's MLP for any spec). Needed for a model "
        "with a spec.",
    )
    metric: str | None = Field(
        None,
        description="How a recipe's candidate is judged: accuracy, log_loss or roc_auc (classification), "
        "mae or rmse (regression); default accuracy or mae.",
    )
    seed: int = Field(0, description="The seed a recipe's run starts from.")
    shadow_events: int = Field(
        0,
        ge=0,
        description="Champion-challenger: a recipe's candidate that wins on the held-out rows runs as the "
        "shadow on live traffic and is promoted only if it also wins on this many labelled events "
        "(0: promote on the held-out rows).",
    )
    shadow_timeout_s: float = Field(
        900.0,
        gt=0,
        le=1200,
        description="How long a shadow is judged at most: then it is judged on what came (at least half "
        "of --shadow-events), else it stays in shadow. At most 20 minutes: the trainer's request must be "
        "answered within its consumer's 30-minute poll interval.",
    )
