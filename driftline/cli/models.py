"""``driftline models``: artifacts, keys and the registry on the control topic.

Every registry change is a new signed record, so promoting and rolling back need the private key:
a processor refuses any record its trusted public keys do not verify.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from driftline.cli import SCHEMA_OPTION, cluster_settings, main
from driftline.config import Settings

if TYPE_CHECKING:
    from driftline.models.follower import Refusal
    from driftline.models.registry import VersionLedger


@main.group()
def models() -> None:
    """Model artifacts (safetensors + JSON config naming a known architecture), keys, and the registry.

    \b
    A typical life:
      driftline models keygen                   # once; trainers keep signing.key
      driftline models bootstrap --out m1       # or `driftline train --once`
      driftline models publish m1 --live        # upload, sign, make it live
      driftline models publish m2 --shadow      # scored beside the live one
      driftline models promote driftline 2      # m2 goes live in every `serve`
      driftline models rollback driftline       # back to version 1
    """


@models.command("bootstrap")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory to write the artifact to.",
)
@click.option("--generator", type=click.Choice(["agrawal", "sea"]), default="agrawal", show_default=True)
@click.option("--count", default=20000, show_default=True, help="Training rows.")
@click.option("--seed", default=7, show_default=True)
@click.option("--epochs", default=10, show_default=True)
@click.option("--architecture", type=click.Choice(["mlp", "logistic"]), default="mlp", show_default=True)
@click.option("--name", default=None, help="Model name [default: the configured model_name, 'driftline'].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.pass_obj
def models_bootstrap(
    settings: Settings,
    out: Path,
    generator: str,
    count: int,
    seed: int,
    epochs: int,
    architecture: str,
    name: str | None,
    device: str,
) -> None:
    """Train a first model on River's synthetic stream and write it as an artifact."""
    from rich.progress import Progress

    from driftline.trainers import bootstrap_model

    with Progress(transient=True) as progress:
        task = progress.add_task("training", total=epochs)
        config = bootstrap_model(
            out,
            generator,
            count=count,
            seed=seed,
            epochs=epochs,
            architecture=architecture,
            name=name or settings.model_name,
            device=device,
            on_epoch=lambda _e, _l: progress.advance(task),
        )
    accuracy = config.metrics.get("holdout_accuracy", float("nan"))
    click.echo(f"Wrote {out} ({config.name} v{config.version}, holdout accuracy {accuracy:.3f}).")


@models.command("keygen")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory for signing.key (private, mode 600) and signing.pub [default: <home>/keys].",
)
@click.pass_obj
def models_keygen(settings: Settings, out: Path | None) -> None:
    """Create an Ed25519 key pair for signing model versions.

    Trainers keep signing.key; processors get signing.pub only, and refuse versions it does not verify.
    """
    from driftline.models.signing import key_id, write_key_pair

    out = out or settings.private_key_path().parent
    if (out / "signing.key").exists():
        raise click.UsageError(
            f"{out / 'signing.key'} exists; remove it first if you really mean to replace the key."
        )
    private, public = write_key_pair(out)
    click.echo(
        f"Wrote {private} (keep it with the trainers) and {public} (key id {key_id(public.read_bytes())})."
    )


# -- the registry ------------------------------------------------------------------------------


def _ledger(settings: Settings, verify: bool) -> tuple[VersionLedger, list[Refusal]]:
    """The registry to its current end, and the records left out (without ``verify``: those that are
    not ModelVersion records only)."""
    from driftline.models.control import load_trusted_keys
    from driftline.models.follower import RegistryFollower

    refused: list[Refusal] = []
    follower = RegistryFollower.connect(
        settings, load_trusted_keys(settings) if verify else None, on_refused=refused.append
    )
    try:
        follower.catch_up()
    finally:
        follower.close()
    return follower.ledger, refused if verify else []


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@models.command("list")
@click.option(
    "--no-verify", is_flag=True, help="Show records without checking signatures (no public key needed)."
)
@click.option(
    "--history", is_flag=True, help="Every record in order (the audit history), not the latest per version."
)
@click.pass_obj
def models_list(settings: Settings, no_verify: bool, history: bool) -> None:
    """Versions on the registry topic: status, metrics, lineage. Refused records are listed apart."""
    from rich.console import Console
    from rich.table import Table

    settings = cluster_settings(settings)
    ledger, refused = _ledger(settings, verify=not no_verify)
    table = Table(
        "model",
        "version",
        "status",
        "created",
        "parent",
        "metrics",
        "reason",
        title=settings.topics.model_versions,
    )
    for name in ledger.names():
        state = ledger.state(name)
        rows = [r for _, r in state.history] if history else list(state.versions.values())
        for r in rows:
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in sorted(r["metrics"].items()))
            status = f"[bold green]{r['status']}[/]" if r["status"] == "LIVE" and not history else r["status"]
            table.add_row(
                name,
                r["version"],
                status,
                _when(r["created_at"]),
                r["parent_version"] or "",
                metrics,
                r.get("reason") or "",
            )
    console = Console()
    console.print(table)
    for refusal in refused:
        why = f"{refusal.reason}: {refusal.detail}"
        console.print(f"[red]refused[/] record at offset {refusal.offset}: {why}")


@models.command("show")
@click.argument("name")
@click.argument("version", required=False)
@click.pass_obj
def models_show(settings: Settings, name: str, version: str | None) -> None:
    """One version's record as JSON (default: the live one)."""
    settings = cluster_settings(settings)
    ledger, _ = _ledger(settings, verify=True)
    record = ledger.version(name, version) if version else ledger.live(name)
    if record is None:
        raise click.ClickException(
            f"{name} has no live version; name one: driftline models show {name} VERSION"
        )
    shown = {**record, "signature": bytes(record["signature"]).hex()}
    click.echo(json.dumps(shown, indent=2, default=str))


@models.command("publish")
@click.argument("artifact", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--live", "status", flag_value="LIVE", help="Make it live at once.")
@click.option("--shadow", "status", flag_value="SHADOW", help="Score beside the live version.")
@click.option(
    "--candidate", "status", flag_value="CANDIDATE", default=True, help="Only register it (default)."
)
@click.option(
    "--uri",
    default=None,
    help="Upload to this fsspec URL (file://, s3://, ...) instead of the artifacts topic.",
)
@click.option("--parent", default=None, help="The version it was derived from.")
@click.pass_obj
def models_publish(
    settings: Settings, artifact: Path, status: str, uri: str | None, parent: str | None
) -> None:
    """Upload ARTIFACT, sign its version record with the private key, and write it to the registry.

    ARTIFACT is a built-in model's folder (`driftline models bootstrap`, `driftline train --once`) or
    your own exported model's (`driftline.export(...)` in Python)."""
    from driftline.api import register_contract
    from driftline.models.artifact import load_config
    from driftline.models.control import load_private_key, publish_as

    settings = cluster_settings(settings)
    private = load_private_key(settings)
    config = load_config(artifact)
    if config.spec is not None:  # with a Schema Registry: the contract, checked for compatibility
        register_contract(settings, config.name, config.spec)
    record = publish_as(settings, artifact, private, status, uri=uri, parent_version=parent)
    name, version = record["model_name"], record["version"]
    if not record.get("reference_profile"):
        click.echo(
            f"warning: {name} v{version} has no reference profile: the drift monitor can only alert on "
            "labels, and a regression model's error-rise test takes its first errors as the reference. "
            f"Build one from labelled events on Kafka with `driftline models profile {artifact}` "
            "(or driftline.export(..., labels=...)), then publish again.",
            err=True,
        )
    click.echo(
        f"Published {name} v{version} ({status.lower()}): {record['artifact_uri']}, "
        f"sha256 {record['sha256'][:16]}..."
    )


@models.command("profile")
@click.argument("artifact", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--rows", default=2000, show_default=True, help="Records to read from each of the topics.")
@click.option("--from-end", is_flag=True, help="Read the last --rows records, not the first.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the records.")
@SCHEMA_OPTION
@click.pass_obj
def models_profile(
    settings: Settings, artifact: Path, rows: int, from_end: bool, timeout: float, schemas: tuple[Path, ...]
) -> None:
    """Build ARTIFACT's reference profile from labelled events on Kafka and write it into the folder.

    \b
    Reads up to --rows records of the events and the labels topics, keeps the events that have a
    label, runs the model on them and writes reference_profile.json beside the artifact: what its
    inputs and outputs looked like there and its error (a classifier's error rate, a regression
    model's MAE), which the drift monitor compares live traffic with. Publish it with
    `driftline models publish ARTIFACT`. Events are read as serve reads them (give it the same
    --schema files)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from driftline.monitoring.profile import RegressionProfile
    from driftline.trainers.dataset import TrainingDataError
    from driftline.trainers.profiling import profile_from_topics

    settings = cluster_settings(settings)
    columns = (TextColumn("reading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("reading", total=None)
        try:
            built = profile_from_topics(
                settings,
                artifact,
                rows,
                from_end=from_end,
                schemas=schemas,
                timeout=timeout,
                on_progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except TrainingDataError as exc:
            raise click.ClickException(str(exc)) from exc
    profile = built.profile
    if isinstance(profile, RegressionProfile):
        error = f"regression profile: MAE {profile.mae:.4g}, RMSE {profile.rmse:.4g}"
    else:
        error = f"classification profile: error rate {profile.reference_error or 0.0:.4f}"
    unused = ", ".join(f"{n} {why}" for why, n in built.unused.items()) or "none"
    click.echo(f"Wrote {built.path} ({error}) from {built.rows} labelled rows; not used: {unused}.")
    click.echo(f"Publish it with: driftline models publish {artifact}")


@models.command("contract")
@click.argument("name", required=False)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Read the contract from an artifact folder instead of the registry.",
)
@click.option(
    "--spec", "as_spec", is_flag=True, help="Print the model's spec (fields, units, task), not Avro."
)
@click.pass_obj
def models_contract(settings: Settings, name: str | None, model_dir: Path | None, as_spec: bool) -> None:
    """The Avro schema a producer writes for NAME's live version (or --model-dir's model).

    \b
    Events in this schema, in Avro single-object framing (C3 01 + the schema's fingerprint), need no
    --schema file: serve, the monitor and the trainer know the contract of the model they serve.
    Any record schema with the same fields works too, given to serve with --schema or through a
    Schema Registry. Fields: each input's kind, unit and categories are in its "doc"; numeric fields
    may also be int, long, float or an Avro decimal, a categorical one an enum.
    """
    from driftline.models.spec import ModelSpec
    from driftline.streams.records import contract_schema

    if model_dir is not None:
        from driftline.models.artifact import load_config

        config = load_config(model_dir)
        model, spec = config.name, config.input_spec
    elif name is not None:
        settings = cluster_settings(settings)
        ledger, _ = _ledger(settings, verify=True)
        record = ledger.live(name)
        if record is None:
            raise click.ClickException(f"{name} has no live version on the registry")
        model = name
        spec = (
            ModelSpec.model_validate_json(record["spec"])
            if record.get("spec")
            else ModelSpec.numeric(record["features"], ["0", "1"])
        )
    else:
        raise click.UsageError("name a model, or give --model-dir")
    if as_spec:
        click.echo(spec.model_dump_json(indent=2))
    else:
        click.echo(json.dumps(dict(contract_schema(model, spec).raw), indent=2))


def _change(settings: Settings, plan: str, name: str, version: str | None) -> None:
    from driftline.models import control

    settings = cluster_settings(settings)
    private = control.load_private_key(settings)
    if plan == "promote":
        assert version is not None
        records = control.promote(settings, private, name, version)
    elif plan == "rollback":
        records = control.rollback(settings, private, name)
    else:
        assert version is not None
        records = control.set_status(settings, private, name, version, plan)
    for r in records:
        click.echo(f"{name} v{r['version']}: {r['status']} ({r['reason']})")


@models.command("promote")
@click.argument("name")
@click.argument("version")
@click.pass_obj
def models_promote(settings: Settings, name: str, version: str) -> None:
    """Make VERSION of NAME live; the live version it replaces is retired. Needs the private key."""
    _change(settings, "promote", name, version)


@models.command("rollback")
@click.argument("name")
@click.pass_obj
def models_rollback(settings: Settings, name: str) -> None:
    """Make the version that was live before the current one live again. Needs the private key."""
    _change(settings, "rollback", name, None)


@models.command("shadow")
@click.argument("name")
@click.argument("version")
@click.pass_obj
def models_shadow(settings: Settings, name: str, version: str) -> None:
    """Score VERSION beside the live one; its predictions go to the shadow-predictions topic."""
    _change(settings, "SHADOW", name, version)


@models.command("retire")
@click.argument("name")
@click.argument("version")
@click.pass_obj
def models_retire(settings: Settings, name: str, version: str) -> None:
    """Retire VERSION: a shadow stops shadowing; retiring the live one leaves processors on what they have."""
    _change(settings, "RETIRED", name, version)
