# %% [markdown]
# # Your own model, from a notebook
#
# A real data set (River's bundled *Phishing*: 1,250 web pages, 9 features, phishing or not; it ships
# inside the installed `river` package, nothing is downloaded) goes to a small PyTorch module trained
# here, then to live predictions on Kafka:
#
# 1. load the rows as records (dicts, as events will carry them);
# 2. describe them with a `driftline.ModelSpec` (the model's contract);
# 3. train a custom module on the first 800 rows, measure it on the other 450;
# 4. `driftline.export(...)` (ONNX, checked for parity) and `driftline.publish(..., live=True)`;
# 5. start `driftline serve` and `driftline monitor`, send the 450 held-out rows and their labels with
#    `driftline.Client`, read the predictions back: the served accuracy equals the one measured here.
#
# Run it as a script (`python examples/notebook.py`, `--help` for the options) or cell by cell
# (`# %%` cells: VS Code, PyCharm, Jupytext). It needs a Kafka cluster: the local one
# (`driftline broker start`) or any other (`--bootstrap-servers`). Every process it starts is
# stopped at the end, also on failure and Ctrl-C; a failure ends it with a one-line reason and exit
# code 1.

# %% Set-up: options, the cluster, topics for this run, signing keys
from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from river import datasets
from torch import nn

import driftline
from driftline.broker import LocalBroker
from driftline.config import load_settings
from driftline.errors import DriftlineError
from driftline.models.signing import write_key_pair
from driftline.services import MONITOR_READY, SERVE_READY, service
from driftline.streams.kafka import create_topics

parser = argparse.ArgumentParser(description="From a trained torch module to live predictions on Kafka.")
parser.add_argument("-b", "--bootstrap-servers", help="Kafka cluster [default: the local broker].")
parser.add_argument(
    "--home", type=Path, help="Driftline's home (local broker, keys/) [default: as configured]."
)
parser.add_argument(
    "--workdir", type=Path, default=Path("driftline-notebook"), help="Artifact, keys and logs of the run."
)
parser.add_argument("--model-name", default="phishing", help="The model's name on the registry.")
parser.add_argument(
    "--topics-prefix", help="This run's topics are <prefix>.<role> [default: notebook-<random>]."
)
parser.add_argument(
    "--configured-topics",
    action="store_true",
    help="Use the configured topics (DRIFTLINE_TOPICS__*, the config file) instead of this run's own.",
)
parser.add_argument("--timeout", type=float, default=90.0, help="Longest wait of each step, in seconds.")
parser.add_argument("--json", type=Path, help="Also write the summary here, as JSON.")
args = parser.parse_known_args()[0]  # known: a notebook kernel passes arguments of its own


class NotebookError(Exception):
    """A step did not do what it should: the script ends with this message and exit code 1."""


def _one_line_errors(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if isinstance(exc, NotebookError | DriftlineError):
        print(f"\nnotebook.py failed: {exc}", file=sys.stderr)
    elif isinstance(exc, KeyboardInterrupt):
        print("\nnotebook.py interrupted (everything it started is stopped)", file=sys.stderr)
    else:
        sys.__excepthook__(kind, exc, tb)


sys.excepthook = _one_line_errors
if "ipykernel" not in sys.modules:  # as a script: SIGTERM (a CI timeout) unwinds like Ctrl-C
    signal.signal(signal.SIGTERM, signal.default_int_handler)

workdir: Path = args.workdir.resolve()
workdir.mkdir(parents=True, exist_ok=True)
settings = load_settings(bootstrap_servers=args.bootstrap_servers, home=args.home)
if not settings.bootstrap_servers:
    local = LocalBroker(settings.home, settings.cache_dir).status()
    if local is None:
        raise NotebookError(
            "no Kafka cluster: start the local one (`driftline broker start`) or pass -b HOST:PORT"
        )
    settings = settings.model_copy(update={"bootstrap_servers": local.bootstrap_servers})
if not args.configured_topics:  # topics of this run's own: what we read back is what we sent
    prefix = args.topics_prefix or f"notebook-{uuid.uuid4().hex[:6]}"
    settings = settings.model_copy(update={"topics": settings.topics.scoped(prefix)})
settings = settings.model_copy(update={"model_name": args.model_name})
create_topics(settings)  # the ones missing (idempotent)

# Versions are signed (Ed25519): by the key `driftline models keygen` made, or one made here.
private_key, public_keys = settings.private_key_path(), settings.public_key_paths()
if not (private_key.is_file() and all(p.is_file() for p in public_keys)):
    private_key, public_key = workdir / "keys" / "signing.key", workdir / "keys" / "signing.pub"
    if not private_key.is_file():
        write_key_pair(private_key.parent)
    public_keys = [public_key]
settings = settings.signed_with(public_keys, private_key)  # serve and monitor get these paths too
print(
    f"cluster {settings.bootstrap_servers}, events topic {settings.topics.events}, keys {private_key.parent}"
)

# %% The data: River's Phishing data set, as records
# Seven features are ordered three-level indicators (0, 0.5 = suspicious, 1) and two are 0/1 flags
# (integers in the CSV: booleans here). The target is True for a phishing page.
CLASSES = ("legitimate", "phishing")
LEVELS = (
    "empty_server_form_handler",
    "popup_window",
    "https",
    "request_from_other_domain",
    "anchor_from_other_domain",
    "is_popular",
    "long_url",
)
FLAGS = ("age_of_domain", "ip_in_url")

rows: list[dict[str, Any]] = []
labels: list[str] = []
for i, (x, is_phishing) in enumerate(datasets.Phishing()):
    rows.append(
        {
            "event_id": f"phishing-{i:04d}",  # to join predictions and labels back to the rows
            **{name: float(x[name]) for name in LEVELS},
            **{name: bool(x[name]) for name in FLAGS},
        }
    )
    labels.append(CLASSES[int(is_phishing)])
TRAIN = 800
train_rows, train_labels = rows[:TRAIN], labels[:TRAIN]
test_rows, test_labels = rows[TRAIN:], labels[TRAIN:]
print(f"{len(rows)} rows: {len(train_rows)} to train on, {len(test_rows)} held out; {rows[0]}")


# %% The contract: which fields the model reads, and how they become its input tensor
# Numeric fields are standardised with the training rows' mean and standard deviation ((x - mean) /
# scale happens in serve, from the spec; the module sees standardised values). Booleans enter as 0/1.
# No field may be null (a null would go to the dead-letter topic with its reason). The event id is
# the `event_id` field; the event time is `event_time` in epoch milliseconds (the client fills in
# "now" when a row has none). The module returns logits for the two classes, in this order.
def _mean_scale(name: str) -> tuple[float, float]:
    values = np.asarray([r[name] for r in train_rows], dtype=np.float64)
    return float(values.mean()), float(values.std()) or 1.0


spec = driftline.ModelSpec(
    inputs=[
        *(
            driftline.InputField(
                name=name,
                mean=_mean_scale(name)[0],
                scale=_mean_scale(name)[1],
                description="UCI phishing indicator: 0, 0.5 (suspicious) or 1",
            )
            for name in LEVELS
        ),
        *(driftline.InputField(name=name, kind="boolean") for name in FLAGS),
    ],
    event_id="event_id",
    event_time=driftline.EventTime(field="event_time", unit="millis"),
    task=driftline.Classification(classes=CLASSES, outputs="logits"),
)


def tensor(records: list[dict[str, Any]]) -> torch.Tensor:
    """Records as the module's input, exactly as serve will compute it (``spec.encode``)."""
    encoded = spec.encode(records)
    if encoded.rejected:
        raise NotebookError(f"rows that do not fit the spec: {encoded.rejected}")
    return torch.from_numpy(spec.model_inputs(encoded.numeric, encoded.codes)["numeric"])


# %% A small custom module, trained in a few seconds
class PhishingNet(nn.Module):
    """Any module works: it takes the ``numeric`` tensor (and ``categorical`` codes, for a spec with
    categorical fields) and returns one score per class."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.head = nn.Linear(16, len(CLASSES))

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.body(numeric))
        return logits


torch.manual_seed(0)
module = PhishingNet(len(spec.inputs))
x_train, y_train = tensor(train_rows), torch.tensor([CLASSES.index(y) for y in train_labels])
optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
for _ in range(300):
    optimiser.zero_grad()
    loss = nn.functional.cross_entropy(module(x_train), y_train)
    loss.backward()  # type: ignore[no-untyped-call]
    optimiser.step()
module.eval()


def predict(records: list[dict[str, Any]]) -> npt.NDArray[np.float32]:
    """Class probabilities of the module, run here."""
    with torch.inference_mode():
        probabilities: npt.NDArray[np.float32] = torch.softmax(module(tensor(records)), 1).numpy()
    return probabilities


local_scores = predict(test_rows)
local_classes = local_scores.argmax(axis=1)
truth = np.asarray([CLASSES.index(y) for y in test_labels])
local_accuracy = float((local_classes == truth).mean())
print(f"held-out accuracy in process: {local_accuracy:.4f} ({len(test_rows)} rows)")

# %% Export and publish
# export() writes an ONNX graph (protobuf: no pickle, no Python code travels), the spec, a parity
# sample and a reference profile for the drift monitor; it refuses the export unless ONNX Runtime
# reproduces the module on the sample. publish() uploads it to the artifacts topic, signs a version
# record on the registry topic and makes it live: every `driftline serve --model-name phishing`
# loads it (running ones swap it in between two batches).
version = time.strftime("%Y%m%d%H%M%S")
artifact = driftline.export(
    module,
    spec,
    train_rows,  # the parity sample and the drift monitor's reference
    workdir / f"{args.model_name}-{version}",
    name=args.model_name,
    version=version,
    labels=train_labels,
    metrics={"accuracy": local_accuracy},
)
record = driftline.publish(artifact, live=True, settings=settings)
print(f"published {record['model_name']} v{record['version']} live ({artifact})")


# %% Serve and monitor it; send the held-out rows and their labels; read the predictions back
# In production `driftline serve` and `driftline monitor` run as services (any number of serve
# processes in one consumer group). Here they run as child processes for the length of this cell.
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def labels_joined(port: int) -> float:
    """How many labels the monitor has joined with their predictions (its /metrics)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError:
        return 0.0
    metric = "driftline_monitor_labels_joined_total "
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(metric))


monitor_port = free_port()
with ExitStack() as running:
    print("starting serve and monitor (logs in the workdir) ...")
    serve = running.enter_context(
        service(settings, workdir / "serve.log", "serve", ready=None)  # awaited below, together
    )
    monitor = running.enter_context(
        service(settings, workdir / "monitor.log", "monitor", "--metrics-port", str(monitor_port))
    )
    serve.wait_for(SERVE_READY, args.timeout)
    monitor.wait_for(MONITOR_READY, args.timeout)

    client = running.enter_context(driftline.Client(args.model_name, settings=settings))
    sent = client.send(test_rows)  # the event ids: the rows' own
    predictions = {p["event_id"]: p for p in client.predictions(len(sent), timeout=args.timeout)}
    if len(predictions) < len(sent):
        raise NotebookError(
            f"{len(predictions)} of {len(sent)} predictions within {args.timeout:.0f} s; see {serve.log}"
        )
    client.send_labels(zip(sent, test_labels, strict=True))  # ground truth, later: the monitor joins it
    deadline = time.monotonic() + args.timeout
    while (joined := labels_joined(monitor_port)) < len(sent):
        if time.monotonic() > deadline:
            raise NotebookError(f"the monitor joined {joined:.0f} of {len(sent)} labels; see {monitor.log}")
        time.sleep(0.5)
    alerts = client.alerts(expected=1, timeout=3.0)  # the monitor's drift alerts so far, if any

# %% Summary: the served model is the model trained here
served_classes = np.asarray([predictions[i]["predicted_class"] for i in sent])
served_scores = np.asarray([predictions[i]["scores"] for i in sent], dtype=np.float32)
served_accuracy = float((served_classes == truth).mean())
summary: dict[str, Any] = {
    "model": args.model_name,
    "version": version,
    "train_rows": len(train_rows),
    "held_out_rows": len(test_rows),
    "predictions": len(predictions),
    "in_process_accuracy": local_accuracy,
    "served_accuracy": served_accuracy,
    "same_class": int((served_classes == local_classes).sum()),
    "max_score_difference": float(np.abs(served_scores - local_scores).max()),
    "labels_joined_by_monitor": int(joined),
    "alerts": [f"{a['kind']} {a['status']}: {a['summary']}" for a in alerts],
    "examples": [
        {
            "event_id": i,
            "predicted": predictions[i]["predicted_label"],
            "p_phishing": round(float(predictions[i]["scores"][1]), 4),
            "truth": y,
        }
        for i, y in list(zip(sent, test_labels, strict=True))[:5]
    ],
}
print(f"\npredictions received: {summary['predictions']} of {len(test_rows)} held-out rows")
print(f"accuracy served: {served_accuracy:.4f}   in process: {local_accuracy:.4f}")
print(
    f"same class as in process: {summary['same_class']} of {len(sent)} rows; largest score difference "
    f"{summary['max_score_difference']:.2e}"
)
print(
    f"labels joined by the monitor: {summary['labels_joined_by_monitor']}; drift alerts: "
    f"{', '.join(summary['alerts']) or 'none'}"
)
for example in summary["examples"]:
    print(
        f"  {example['event_id']}: {example['predicted']:<10} (p phishing {example['p_phishing']:.3f}), "
        f"truth {example['truth']}"
    )
if args.json:
    args.json.write_text(json.dumps(summary, indent=2))
if summary["same_class"] != len(sent) or served_accuracy != local_accuracy:
    raise NotebookError("the served predictions differ from the module's in process")
