"""``driftline bench model``: serve's throughput against the model's own batch throughput.

1. A user-style, compute-heavy model is built here: a residual MLP (pre-norm blocks of two
   ``width x width`` layers) over numeric fields and a categorical field's embedding, exported with
   :func:`driftline.export` (the user's path) to a temporary folder.
2. The model's own batch throughput: the ONNX Runtime session serve would build (the same
   :func:`~driftline.models.exported.check_exported`, the same ``DRIFTLINE_ONNX_THREADS``) called on
   pre-built input tensors at serve's batch size (``--max-batch``); eager torch on the same module for
   reference (``torch.set_num_threads`` to the same count).
3. serve end to end on the broker: events in the model's contract
   (:func:`~driftline.streams.records.contract_schema`) are produced beforehand, then serve (in its own
   process, as ``driftline serve`` wires it with :func:`~driftline.streams.serve.build_processor`)
   consumes, decodes, infers and produces predictions, timed from the first event's arrival to the
   commit after the last (as the other bench contenders are).
4. Where serve's time goes: per-batch timers around the loop's stages during that run (consume,
   process and the ``predict_batch`` inside it, produce, delivery), then the parts of
   ``BatchProcessor.process`` re-run on the largest batch the run saw (decode, ``spec.encode``,
   ``model_inputs``, ``session.run``, encode predictions).

Thread counts are the same on both sides: ``--threads`` becomes ``DRIFTLINE_ONNX_THREADS`` for serve's
process and for the direct session, and torch's thread count for the eager reference (serve itself
keeps torch at 1 thread; an exported model does not run in torch there).

    python -m driftline.bench.model_bench serve -b 127.0.0.1:9092 --model DIR --events 40000
runs the instrumented serve contender alone (topics from ``DRIFTLINE_TOPICS__*``) and prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from driftline.bench.contenders import run_until_handled
from driftline.config import Settings, Topics, load_settings
from driftline.models.spec import Classification, InputField, ModelSpec

Log = Callable[[str], None]
MODEL_NAME = "bench-resmlp"
CATEGORICAL_FIELD = "merchant"
EMBEDDING_DIM = 32
CLASSES = ("ok", "fraud")


@dataclass(frozen=True)
class ModelBenchOptions:
    events: int = 40_000
    max_batch: int = 2000
    width: int = 1024
    blocks: int = 4
    numeric: int = 16
    categories: int = 50
    threads: int = 1
    """ONNX Runtime intra-op threads (serve and the direct call) and torch threads (eager reference)."""
    device: str = "cpu"
    """``cuda``: also measure the GPU path (when ONNX Runtime's CUDA provider or torch.cuda is there)."""
    seconds: float = 5.0
    """How long each direct (model's own) measurement runs."""
    timeout_s: float = 300.0


# -- the model -----------------------------------------------------------------------------------


class ResidualMLP(nn.Module):
    """What a user might train on a payments stream: numeric fields plus a categorical embedding, a
    stem, ``blocks`` pre-norm residual blocks (LayerNorm, width x width, ReLU, width x width), logits."""

    def __init__(self, n_numeric: int, n_categories: int, width: int, blocks: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_categories + 1, EMBEDDING_DIM)  # code 0: unseen or null
        self.stem = nn.Linear(n_numeric + EMBEDDING_DIM, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
            for _ in range(blocks)
        )
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, classes))

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(torch.cat([numeric, self.embed(categorical[:, 0])], dim=1)))
        for block in self.blocks:
            h = h + block(h)
        out: torch.Tensor = self.head(h)
        return out


def flops_per_event(opts: ModelBenchOptions) -> int:
    """Multiply-adds of the dense layers, times two (norms, activations and the lookup left out)."""
    stem = (opts.numeric + EMBEDDING_DIM) * opts.width
    blocks = opts.blocks * 2 * opts.width * opts.width
    return 2 * (stem + blocks + opts.width * len(CLASSES))


def bench_spec(opts: ModelBenchOptions) -> ModelSpec:
    rng = np.random.default_rng(7)
    numeric = [
        InputField(name=f"x{j}", mean=float(rng.uniform(-50, 50)), scale=float(rng.uniform(1, 20)))
        for j in range(opts.numeric)
    ]
    merchant = InputField(
        name=CATEGORICAL_FIELD,
        kind="categorical",
        categories=tuple(f"m{k}" for k in range(opts.categories)),
        nullable=True,
    )
    return ModelSpec(inputs=(*numeric, merchant), task=Classification(classes=CLASSES))


def records(spec: ModelSpec, n: int, seed: int, run: str = "mb") -> list[dict[str, Any]]:
    """Events in the model's contract: numeric fields around their means, 5% unseen merchants."""
    rng = np.random.default_rng(seed)
    fields = spec.numeric_fields
    mean = np.asarray([f.mean for f in fields])
    scale = np.asarray([f.scale for f in fields])
    values = rng.normal(mean, scale, (n, len(fields))).tolist()
    categories = spec.categorical_fields[0].categories
    picks = rng.integers(0, len(categories) + len(categories) // 19 + 1, n).tolist()
    now = int(time.time() * 1000)
    names = [f.name for f in fields]
    return [
        {
            "event_id": f"{run}-{i:08d}",
            "event_time": now + i,
            **dict(zip(names, row, strict=True)),
            CATEGORICAL_FIELD: categories[k] if k < len(categories) else "unseen",
        }
        for i, (row, k) in enumerate(zip(values, picks, strict=True))
    ]


def build_and_export(opts: ModelBenchOptions, directory: Path) -> tuple[ResidualMLP, ModelSpec]:
    """The module (seeded) and its artifact at ``directory``, exported with :func:`driftline.export`."""
    import driftline
    from driftline.models.control import PROFILE_FILE

    torch.manual_seed(0)
    spec = bench_spec(opts)
    module = ResidualMLP(opts.numeric, opts.categories, opts.width, opts.blocks, len(CLASSES)).eval()
    with torch.no_grad():  # keep the residual stream's scale steady through the blocks
        for block in module.blocks:
            last = block[3] if isinstance(block, nn.Sequential) else None
            if isinstance(last, nn.Linear):
                last.weight.mul_(0.2)
    with _quiet_exporter():
        driftline.export(module, spec, records(spec, 256, seed=1), directory, name=MODEL_NAME, version="1")
    # export also writes the drift monitor's reference profile, which publish() puts on the registry;
    # serve loads an artifact folder of exactly its three files, so the bench serves the folder without it.
    (directory / PROFILE_FILE).unlink(missing_ok=True)
    return module, spec


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The ONNX exporter logs every optimisation pass at INFO; the bench's own lines are enough."""
    import logging

    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# -- the model's own throughput --------------------------------------------------------------------


@contextlib.contextmanager
def onnx_threads(threads: int) -> Iterator[None]:
    """``DRIFTLINE_ONNX_THREADS`` as serve's process sees it, while a session is built here."""
    before = os.environ.get("DRIFTLINE_ONNX_THREADS")
    os.environ["DRIFTLINE_ONNX_THREADS"] = str(threads)
    try:
        yield
    finally:
        if before is None:
            del os.environ["DRIFTLINE_ONNX_THREADS"]
        else:
            os.environ["DRIFTLINE_ONNX_THREADS"] = before


def timed_loop(
    call: Callable[[], object], batch: int, seconds: float, min_calls: int = 3
) -> dict[str, float]:
    """Events per second of ``call`` (one batch each) after two warm-up calls, run for ``seconds``."""
    for _ in range(2):
        call()
    calls, started = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - started < seconds:
        call()
        calls += 1
    elapsed = time.perf_counter() - started
    return {
        "batch": float(batch),
        "calls": float(calls),
        "seconds": elapsed,
        "eps": calls * batch / elapsed,
        "ms_per_batch": 1000.0 * elapsed / calls,
    }


def model_inputs(spec: ModelSpec, batch: int) -> dict[str, npt.NDArray[Any]]:
    encoded = spec.encode(records(spec, batch, seed=2))
    return spec.model_inputs(encoded.numeric, encoded.codes)


def measure_onnx(
    model_dir: Path, inputs: dict[str, npt.NDArray[Any]], threads: int, device: str, seconds: float
) -> dict[str, float]:
    """``session.run`` on pre-built tensors, with the session serve builds (same checks, same options)."""
    from driftline.models.exported import check_exported

    with onnx_threads(threads):
        _, session = check_exported(model_dir, device)
    batch = len(next(iter(inputs.values())))
    return timed_loop(lambda: session.run(None, inputs), batch, seconds)


def measure_torch(
    module: nn.Module, inputs: dict[str, npt.NDArray[Any]], threads: int, device: str, seconds: float
) -> dict[str, float]:
    """Eager torch on the same module and tensors (results copied back to the host, as serve would)."""
    target = torch.device(device)
    module = module.to(target).eval()
    tensors = [torch.from_numpy(inputs[k]).to(target) for k in ("numeric", "categorical")]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)

    def call() -> object:
        with torch.inference_mode():
            return module(*tensors).cpu()

    try:
        return timed_loop(call, len(tensors[0]), seconds)
    finally:
        torch.set_num_threads(before)
        module.to("cpu")


# -- serve, instrumented (runs in its own process) -----------------------------------------------

Span = tuple[str, float, float, int]


def _timed(spans: list[Span], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            n = len(args[0]) if name in ("process", "predict_batch") and args else 0
            spans.append((name, started, time.monotonic(), n))

    return wrapper


def stage_seconds(spans: Sequence[Span], first: float, last: float) -> dict[str, float]:
    """Seconds of each stage inside ``[first, last]`` (spans clipped to the window)."""
    out: dict[str, float] = {}
    for name, start, end, _ in spans:
        out[name] = out.get(name, 0.0) + max(0.0, min(end, last) - max(start, first))
    return out


def run_serve(
    settings: Settings, model_dir: Path, n_events: int, max_batch: int, device: str, timeout_s: float
) -> dict[str, Any]:
    """serve as :func:`~driftline.bench.contenders.run_serve` runs it, with timers around its stages,
    then the parts of ``process`` timed on the largest batch of the run."""
    from driftline.options import ServeOptions
    from driftline.streams.serve import build_processor

    group = f"bench-model-{uuid.uuid4().hex[:8]}"
    options = ServeOptions(group_id=group, instance_id=group, max_batch=max_batch)
    processor = build_processor(settings, model_dir, options, device=device)
    core, predictor = processor.core, processor.core.predictor
    spans: list[Span] = []
    largest: list[tuple[Any, Any]] = []
    process = core.process

    def keep_largest(messages: Any, arrivals: Any) -> Any:
        if not largest or len(messages) > len(largest[0][0]):
            largest[:] = [(list(messages), list(arrivals))]
        return process(messages, arrivals)

    setattr(core, "process", _timed(spans, "process", keep_largest))  # noqa: B010
    setattr(predictor, "predict_batch", _timed(spans, "predict_batch", predictor.predict_batch))  # noqa: B010
    batcher = processor._batcher
    setattr(batcher, "fill", _timed(spans, "consume", batcher.fill))  # noqa: B010
    setattr(processor, "_produce", _timed(spans, "produce", processor._produce))  # noqa: B010
    setattr(processor, "_await_delivery", _timed(spans, "delivery", processor._await_delivery))  # noqa: B010
    run_until_handled(processor, n_events, timeout_s)
    first, last = processor.first_arrival, processor.last_commit
    if processor.handled < n_events or first is None or last is None:
        raise RuntimeError(f"serve handled only {processor.handled} of {n_events} events")
    seconds = last - first
    batches = [n for name, start, _, n in spans if name == "process" and first <= start <= last]
    for name in ("process", "predict_batch"):  # profile with the plain methods
        delattr(core if name == "process" else predictor, name)
    messages, arrivals = largest[0]
    return {
        "events": float(processor.handled),
        "seconds": seconds,
        "eps": processor.handled / seconds,
        "batches": float(len(batches)),
        "mean_batch": float(np.mean(batches)) if batches else 0.0,
        "stages": stage_seconds(spans, first, last),
        "parts": profile_batch(core, messages, arrivals),
        "profiled_batch": float(len(messages)),
    }


def profile_batch(core: Any, messages: Sequence[Any], arrivals: Sequence[float]) -> dict[str, float]:
    """Median seconds of each part of ``BatchProcessor.process`` on one batch (at least 5 runs, about
    2 s). ``decode_rows`` is split into the per-event Avro decode and ``spec.encode``; its remainder is
    the columnar fast path's probe and the ids and times; ``predict_batch`` into ``model_inputs``,
    ``session.run`` and the softmax."""
    from driftline.streams.records import decode_record, decode_rows

    decoder, features, predictor = core._decoder, core._features, core.predictor
    session, spec = getattr(predictor, "_session", None), predictor.config.input_spec
    times: dict[str, list[float]] = {}

    def clock(name: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = call()
        times.setdefault(name, []).append(time.perf_counter() - started)
        return out

    def once() -> None:
        clock("process", lambda: core.process(messages, arrivals))
        rows, _ = clock("decode_rows", lambda: decode_rows(messages, decoder, features))
        decoded = clock("avro_decode", lambda: [decode_record(m.value(), decoder) for m in messages])
        clock("spec_encode", lambda: features.extract(decoded))
        inputs = clock("model_inputs", lambda: spec.model_inputs(rows.features, rows.codes))
        if session is not None:
            clock("session_run", lambda: session.run(None, inputs))
        scores = clock("predict_batch", lambda: predictor.predict_batch(rows.features, rows.codes))
        waited = np.zeros(len(rows), dtype=np.float64)
        clock("encode_predictions", lambda: core._encode(rows, predictor.config, scores, waited))

    started = time.perf_counter()
    while len(times.get("process", ())) < 5 or time.perf_counter() - started < 2.0:
        once()
    return {name: statistics.median(values) for name, values in times.items()}


def serve_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("contender", choices=["serve"])
    parser.add_argument("-b", "--bootstrap-servers", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    settings = load_settings(bootstrap_servers=args.bootstrap_servers)
    report = run_serve(settings, args.model, args.events, args.max_batch, args.device, args.timeout)
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")


# -- the run -------------------------------------------------------------------------------------


def produce_events(settings: Settings, spec: ModelSpec, n: int, run: str) -> None:
    from driftline.schemas import AvroEncoder
    from driftline.streams import kafka
    from driftline.streams.records import contract_schema

    encoder = AvroEncoder.single_object(contract_schema(MODEL_NAME, spec))
    producer = kafka.producer(settings)
    chunk = 10_000
    for start in range(0, n, chunk):
        rows = records(spec, min(chunk, n - start), seed=100 + start, run=f"{run}-{start}")
        values = [encoder.encode(r) for r in rows]
        keys: list[bytes | None] = [str(r["event_id"]).encode() for r in rows]
        kafka.produce_batch(producer, settings.topics.events, values, keys, [kafka.ANY_PARTITION] * len(rows))
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("events were not acknowledged by the broker")


def cuda_availability() -> tuple[bool, bool]:
    """(ONNX Runtime has its CUDA provider, torch sees a CUDA device)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers(), torch.cuda.is_available()


def _serve_contender(
    settings: Settings, model_dir: Path, opts: ModelBenchOptions, device: str
) -> dict[str, Any]:
    from driftline.bench.runner import _contender

    env = {**os.environ, **settings.topics.environment(), "DRIFTLINE_ONNX_THREADS": str(opts.threads)}
    args = [
        "driftline.bench.model_bench",
        "serve",
        "-b",
        str(settings.bootstrap_servers),
        "--model",
        str(model_dir),
        "--events",
        str(opts.events),
        "--max-batch",
        str(opts.max_batch),
        "--device",
        device,
        "--timeout",
        str(opts.timeout_s),
    ]
    result: dict[str, Any] = _contender(args, opts.timeout_s, env=env)
    return result


def run_model_bench(settings: Settings, opts: ModelBenchOptions, workdir: Path, log: Log) -> dict[str, Any]:
    from driftline.streams import kafka

    run = uuid.uuid4().hex[:6]
    s = settings.model_copy(update={"topics": Topics().scoped(f"bench-{run}.model")})
    t = s.topics
    kafka.create_topics(s, [t.events, t.predictions, t.dead_letters])
    model_dir = workdir / "model"
    flops = flops_per_event(opts)
    log(
        f"exporting a residual MLP (width {opts.width}, {opts.blocks} blocks, "
        f"{flops / 1e6:.1f} MFLOP/event) with driftline.export"
    )
    module, spec = build_and_export(opts, model_dir)
    log(f"producing {opts.events:,} events in the model's contract to {t.events}")
    produce_events(s, spec, opts.events, run)
    log(f"serve end to end ({opts.threads} ONNX Runtime thread(s), batches up to {opts.max_batch})")
    serve = _serve_contender(s, model_dir, opts, "cpu")
    inputs = model_inputs(spec, opts.max_batch)
    log(f"the model's own throughput: session.run on a batch of {opts.max_batch} for {opts.seconds:g}s")
    own = measure_onnx(model_dir, inputs, opts.threads, "cpu", opts.seconds)
    log("eager torch on the same module, same batch and threads")
    eager = measure_torch(module, inputs, opts.threads, "cpu", opts.seconds)
    mean_batch = round(serve["mean_batch"])
    own_at_mean = None
    if 0 < mean_batch < 0.9 * opts.max_batch:
        log(f"serve's batches averaged {mean_batch}: the model's own throughput at that size too")
        own_at_mean = measure_onnx(
            model_dir, model_inputs(spec, mean_batch), opts.threads, "cpu", opts.seconds
        )
    result: dict[str, Any] = {
        "model": {
            "architecture": "residual MLP",
            "numeric_fields": opts.numeric,
            "categories": opts.categories,
            "embedding_dim": EMBEDDING_DIM,
            "width": opts.width,
            "blocks": opts.blocks,
            "classes": len(CLASSES),
            "parameters": sum(p.numel() for p in module.parameters()),
            "flops_per_event": flops,
            "onnx_bytes": (model_dir / "model.onnx").stat().st_size,
        },
        "events": opts.events,
        "max_batch": opts.max_batch,
        "threads": opts.threads,
        "cpus": os.cpu_count(),
        "model_own_eps": own["eps"],
        "model_own_ms_per_batch": own["ms_per_batch"],
        "model_own_gflops": own["eps"] * flops / 1e9,
        "torch_eager_eps": eager["eps"],
        "serve_eps": serve["eps"],
        "serve_seconds": serve["seconds"],
        "serve_batches": serve["batches"],
        "serve_mean_batch": serve["mean_batch"],
        "serve_vs_model_own": serve["eps"] / own["eps"],
        "torch_eager_vs_model_own": eager["eps"] / own["eps"],
        "model_own_at_serve_batch_eps": own_at_mean["eps"] if own_at_mean else None,
        "serve_vs_model_own_at_serve_batch": serve["eps"] / own_at_mean["eps"] if own_at_mean else None,
        "serve_stages": shares(serve["stages"], serve["seconds"]),
        "serve_stage_seconds": serve["stages"],
        "process_parts": process_shares(serve["parts"]),
        "process_part_seconds": serve["parts"],
        "profiled_batch": serve["profiled_batch"],
    }
    result.update(_gpu(s, model_dir, module, spec, opts, log))
    return result


def shares(stages: dict[str, float], seconds: float) -> dict[str, float]:
    """The serve loop's stages as shares of its wall time (``predict_batch`` counted inside
    ``process``, so ``process`` here is only the rest of it: decode, validation, encoding)."""
    infer = stages.get("predict_batch", 0.0)
    out = {
        "consume": stages.get("consume", 0.0),
        "predict_batch": infer,
        "process_other": stages.get("process", 0.0) - infer,
        "produce": stages.get("produce", 0.0),
        "delivery": stages.get("delivery", 0.0),
    }
    out["other"] = seconds - sum(out.values())
    return {k: v / seconds for k, v in out.items()}


def process_shares(parts: dict[str, float]) -> dict[str, float]:
    """The parts of one ``process`` call as shares of it (the same batch, medians)."""
    total = parts["process"]
    run = parts.get("session_run", 0.0)
    out = {
        "avro_decode": parts["avro_decode"],
        "spec_encode": parts["spec_encode"],
        "decode_rows_other": parts["decode_rows"] - parts["avro_decode"] - parts["spec_encode"],
        "model_inputs": parts["model_inputs"],
        "session_run": run,
        "softmax": parts["predict_batch"] - parts["model_inputs"] - run,
        "encode_predictions": parts["encode_predictions"],
    }
    out["process_other"] = total - sum(out.values())
    return {k: v / total for k, v in out.items()}


def _gpu(
    settings: Settings, model_dir: Path, module: nn.Module, spec: ModelSpec, opts: ModelBenchOptions, log: Log
) -> dict[str, Any]:
    if opts.device != "cuda":
        return {"gpu": None, "gpu_skipped": "not asked (--device cuda measures the GPU path)"}
    ort_cuda, torch_cuda = cuda_availability()
    if not ort_cuda and not torch_cuda:
        reason = "no CUDA: ONNX Runtime has no CUDA provider and torch.cuda is not available"
        log(f"GPU path skipped: {reason}")
        return {"gpu": None, "gpu_skipped": reason}
    inputs = model_inputs(spec, opts.max_batch)
    gpu: dict[str, Any] = {}
    if torch_cuda:
        log("GPU: eager torch on CUDA")
        gpu["torch_eager_eps"] = measure_torch(module, inputs, opts.threads, "cuda", opts.seconds)["eps"]
    if not ort_cuda:
        gpu["serve_skipped"] = (
            "ONNX Runtime has no CUDA provider (install onnxruntime-gpu): serve stays on CPU"
        )
        return {"gpu": gpu, "gpu_skipped": None}
    log("GPU: session.run with the CUDA provider, then serve --device cuda")
    own = measure_onnx(model_dir, inputs, opts.threads, "cuda", opts.seconds)
    serve = _serve_contender(settings, model_dir, opts, "cuda")
    gpu.update(
        {
            "model_own_eps": own["eps"],
            "serve_eps": serve["eps"],
            "serve_vs_model_own": serve["eps"] / own["eps"],
            "serve_stages": shares(serve["stages"], serve["seconds"]),
            "process_parts": process_shares(serve["parts"]),
        }
    )
    return {"gpu": gpu, "gpu_skipped": None}


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    m = r["model"]

    def verdict(ratio: float, bar: float) -> str:
        return f"{ratio:.2f}x  ({'meets the bar' if ratio >= bar else 'BELOW the bar'}: {bar}x)"

    def pct(shares_: dict[str, float]) -> str:
        return ", ".join(f"{k} {100 * v:.1f}%" for k, v in shares_.items())

    rows = [
        (
            "model",
            f"residual MLP: {m['numeric_fields']} numeric + 1 categorical ({m['categories']} categories,"
            f" {m['embedding_dim']}-d embedding), width {m['width']} x {m['blocks']} blocks,"
            f" {m['parameters'] / 1e6:.3g}M parameters, {m['flops_per_event'] / 1e6:.3g} MFLOP/event",
        ),
        (
            "threads",
            f"{r['threads']} intra-op thread(s) for ONNX Runtime in serve and in the direct call"
            f" (DRIFTLINE_ONNX_THREADS={r['threads']}); torch eager {r['threads']}; {r['cpus']} CPUs",
        ),
        (
            "model's own (session.run)",
            f"{r['model_own_eps']:,.0f} events/s at batch {r['max_batch']}"
            f" ({r['model_own_ms_per_batch']:.1f} ms/batch, {r['model_own_gflops']:.1f} GFLOP/s)",
        ),
        (
            "torch eager (same module)",
            f"{r['torch_eager_eps']:,.0f} events/s ({r['torch_eager_vs_model_own']:.2f}x ONNX Runtime)",
        ),
        (
            "serve end to end",
            f"{r['serve_eps']:,.0f} events/s ({r['events']:,} events,"
            f" {r['serve_batches']:.0f} batches of {r['serve_mean_batch']:,.0f} on average)",
        ),
        ("serve / model's own", verdict(r["serve_vs_model_own"], 0.9)),
    ]
    if r["serve_vs_model_own_at_serve_batch"] is not None:
        rows.append(
            (
                "serve / model's own at serve's mean batch",
                f"{verdict(r['serve_vs_model_own_at_serve_batch'], 0.9)}"
                f" ({r['model_own_at_serve_batch_eps']:,.0f} events/s)",
            )
        )
    rows += [
        ("serve's wall time", pct(r["serve_stages"])),
        (f"one process() call ({r['profiled_batch']:.0f} events)", pct(r["process_parts"])),
    ]
    gpu = r["gpu"]
    if gpu is None:
        rows.append(("GPU path", f"skipped: {r['gpu_skipped']}"))
    else:
        if "torch_eager_eps" in gpu:
            rows.append(("GPU torch eager", f"{gpu['torch_eager_eps']:,.0f} events/s"))
        if "serve_eps" in gpu:
            rows += [
                ("GPU model's own (CUDA provider)", f"{gpu['model_own_eps']:,.0f} events/s"),
                ("GPU serve --device cuda", f"{gpu['serve_eps']:,.0f} events/s"),
                ("GPU serve / model's own", verdict(gpu["serve_vs_model_own"], 0.85)),
                ("GPU serve's wall time", pct(gpu["serve_stages"])),
            ]
        else:
            rows.append(("GPU serve", f"skipped: {gpu['serve_skipped']}"))
    return rows


if __name__ == "__main__":
    serve_main()
