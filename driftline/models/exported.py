"""Users' own models as data: an ONNX graph, checked before it is ever run, served by ONNX Runtime.

An exported artifact is a folder of exactly three files:

* ``config.json``: the :class:`~driftline.models.artifact.ModelConfig` with its
  :class:`~driftline.models.spec.ModelSpec` (architecture ``onnx``);
* ``model.onnx``: the graph and its weights in one protobuf (no external data);
* ``parity.safetensors``: a sample of model inputs and the original module's outputs on them.

Loading never unpickles, evaluates or imports anything the artifact names: JSON is parsed by pydantic,
the graph by protobuf, the sample by safetensors. :func:`check_exported` refuses, with a reason, an
artifact that holds anything else: pickle bytes, external-data references, operators outside
:data:`SUPPORTED_OPS`, inputs that disagree with the spec, outputs that are not finite or do not match
the stored ones on the parity sample, files over the size limit.

>>> import tempfile, torch
>>> from driftline.models.spec import InputField, ModelSpec, Regression
>>> spec = ModelSpec(inputs=[InputField(name="x")], task=Regression(target="y"))
>>> with tempfile.TemporaryDirectory() as d:
...     _ = export(torch.nn.Linear(1, 1), spec, {"numeric": np.zeros((4, 1), np.float32)}, Path(d),
...                name="lin", version="1", quiet=True)
...     p = OnnxPredictor.from_artifact(Path(d), device="cpu")
...     p.predict_batch(np.ones((3, 1), np.float32)).shape
(3, 1)
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save_file as save_tensors

from driftline.errors import ModelError, VerificationError
from driftline.models.artifact import CONFIG_FILE, ONNX_FILE, PARITY_FILE, ModelConfig, load_config
from driftline.models.spec import CATEGORICAL_INPUT, NUMERIC_INPUT, Classification, ModelSpec

FILES = (CONFIG_FILE, ONNX_FILE, PARITY_FILE)
PROFILE_FILE = "reference_profile.json"
"""May lie beside the three files (``driftline.export`` writes it; publishing puts it in the record)."""
ARCHITECTURE = "onnx"
EXPECTED = "expected"
"""The parity file's tensor of the original module's outputs."""
MAX_BYTES = int(os.environ.get("DRIFTLINE_MAX_ARTIFACT_BYTES", str(512 * 1024 * 1024)))
"""Largest artifact file accepted (``DRIFTLINE_MAX_ARTIFACT_BYTES``)."""
PARITY_TOLERANCE = 1e-4
"""Largest absolute difference allowed between ONNX Runtime's and the original module's outputs
(relative to the output's magnitude when that is above 1)."""

SUPPORTED_OPS = frozenset(
    [
        "Abs",
        "Acos",
        "Add",
        "And",
        "ArgMax",
        "ArgMin",
        "Asin",
        "Atan",
        "AveragePool",
        "BatchNormalization",
        "Cast",
        "CastLike",
        "Ceil",
        "Celu",
        "Clip",
        "Concat",
        "Constant",
        "ConstantOfShape",
        "Conv",
        "ConvTranspose",
        "Cos",
        "Cosh",
        "CumSum",
        "Div",
        "Dropout",
        "Einsum",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Expand",
        "Flatten",
        "Floor",
        "Gather",
        "GatherElements",
        "GatherND",
        "Gelu",
        "Gemm",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Greater",
        "GreaterOrEqual",
        "GroupNormalization",
        "HardSigmoid",
        "HardSwish",
        "Identity",
        "InstanceNormalization",
        "IsInf",
        "IsNaN",
        "LayerNormalization",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "LogSoftmax",
        "MatMul",
        "Max",
        "MaxPool",
        "Mean",
        "Min",
        "Mish",
        "Mod",
        "Mul",
        "Neg",
        "Not",
        "OneHot",
        "Or",
        "Pad",
        "Pow",
        "PRelu",
        "Range",
        "Reciprocal",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceProd",
        "ReduceSum",
        "ReduceSumSquare",
        "Relu",
        "Reshape",
        "Round",
        "Selu",
        "Shape",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Size",
        "Slice",
        "Softmax",
        "Softplus",
        "Softsign",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Tan",
        "Tanh",
        "Tile",
        "TopK",
        "Transpose",
        "Trilu",
        "Unsqueeze",
        "Where",
        "Xor",
    ]
)
"""Standard ONNX operators (default domain) a served graph may use: tensor maths only, no control flow,
no custom or contrib operators, nothing that reads files or strings."""

_PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's container, which holds a pickle


def export(
    module: Any,
    spec: ModelSpec,
    sample: Mapping[str, npt.NDArray[Any]],
    directory: Path,
    *,
    name: str,
    version: str,
    metrics: Mapping[str, float] | None = None,
    quiet: bool = False,
) -> Path:
    """Export a ``torch.nn.Module`` to an artifact folder, and check it as a processor would.

    ``sample`` holds the model's input tensors by name (``numeric`` float32, ``categorical`` int64,
    see :mod:`driftline.models.spec`), a few dozen representative rows; they are stored as the
    parity sample, and the export is refused unless ONNX Runtime reproduces the module on them.
    """
    import torch

    names = spec.tensor_names
    if sorted(sample) != sorted(names):
        raise ModelError(
            f"the sample must hold exactly the tensors {names} of the spec, not {sorted(sample)}"
        )
    arrays = {
        key: np.ascontiguousarray(sample[key], dtype=np.float32 if key == NUMERIC_INPUT else np.int64)
        for key in names
    }
    rows = {len(a) for a in arrays.values()}
    if len(rows) != 1 or rows == {0}:
        raise ModelError(f"the sample's tensors need the same, non-zero number of rows, not {sorted(rows)}")
    module = module.eval()
    tensors = tuple(torch.from_numpy(arrays[key]) for key in names)
    with torch.inference_mode():
        expected = module(*tensors).detach().float().cpu().numpy()
    directory.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    with _quiet(quiet):
        program = torch.onnx.export(
            module,
            tensors,
            dynamo=True,
            input_names=names,
            output_names=["output"],
            dynamic_shapes=tuple({0: batch} for _ in names),
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise ModelError("torch.onnx.export returned no program")
    program.save(str(directory / ONNX_FILE), external_data=False)
    save_tensors(
        {**arrays, EXPECTED: np.ascontiguousarray(expected, dtype=np.float32)}, str(directory / PARITY_FILE)
    )
    task = spec.task
    config = ModelConfig(
        name=name,
        version=version,
        architecture=ARCHITECTURE,
        features=[f.name for f in spec.numeric_fields],
        classes=list(task.classes) if isinstance(task, Classification) else [],
        metrics=dict(metrics or {}),
        spec=spec,
    )
    (directory / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    check_exported(directory)
    return directory


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """torch.onnx.export prints its progress to stdout; a notebook may want it, a service does not."""
    if not enabled:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# -- checks --------------------------------------------------------------------------------------


def _refuse(reason: str, detail: str) -> VerificationError:
    return VerificationError(reason, detail)


def check_exported(directory: Path, device: str = "cpu") -> tuple[ModelConfig, Any]:
    """Every check a processor runs before serving an exported artifact; returns its config and an
    ONNX Runtime session. Raises :class:`VerificationError` with a reason on the first failure."""
    present = sorted(p.name for p in directory.iterdir() if p.name != PROFILE_FILE)
    if present != sorted(FILES):
        raise _refuse(
            "bad-artifact", f"an exported artifact holds exactly {sorted(FILES)}, this one {present}"
        )
    beside = (PROFILE_FILE,) if (directory / PROFILE_FILE).exists() else ()  # export's, for the registry
    for name in (*FILES, *beside):
        path = directory / name
        if path.is_symlink() or not path.is_file():
            raise _refuse("bad-artifact", f"{name} is not a regular file")
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _refuse("oversize", f"{name} is {size} bytes, over the {MAX_BYTES}-byte limit")
        head = path.read_bytes()[:4]
        if head.startswith(_PICKLE_MAGIC) or head == _ZIP_MAGIC:
            raise _refuse("pickle", f"{name} is a pickle (or a torch.save archive); artifacts are data only")
    try:
        config = load_config(directory)
    except ModelError as exc:
        raise _refuse("bad-artifact", str(exc)) from exc
    if config.architecture != ARCHITECTURE or config.spec is None:
        raise _refuse("bad-artifact", f"config.json must name architecture {ARCHITECTURE!r} and carry a spec")
    model = _load_graph(directory / ONNX_FILE)
    _check_graph(model, config.spec)
    session = _session(model, device)
    _check_parity(session, directory / PARITY_FILE, config.spec)
    return config, session


def _load_graph(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model_from_string(path.read_bytes())  # never follows external data
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise _refuse("bad-graph", f"{path.name} is not an ONNX model: {exc}") from exc
    _check_contents(model)  # before the checker, which itself looks up external-data paths
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise _refuse("bad-graph", f"{path.name} fails the ONNX checker: {str(exc)[:300]}") from exc
    return model


def _messages(model: Any) -> Iterator[Any]:
    """Every protobuf message in the model: graphs, functions and their nodes, attributes, subgraphs,
    sparse tensors, metadata entries. A TensorProto is yielded but not opened (its data can be large)."""
    import onnx
    from google.protobuf.descriptor import FieldDescriptor

    stack = [model]
    while stack:
        message = stack.pop()
        yield message
        if isinstance(message, onnx.TensorProto):
            continue
        for field, value in message.ListFields():
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                stack.extend(value if _repeated(field) else [value])


def _strings(message: Any) -> Iterator[str | bytes]:
    """The message's own string fields (protobuf hands back bytes for one that is not valid UTF-8)."""
    from google.protobuf.descriptor import FieldDescriptor

    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            yield from (value if _repeated(field) else [value])


def _repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; `label` is gone in 7
    return bool(repeated) if repeated is not None else bool(field.label == field.LABEL_REPEATED)


def _check_contents(model: Any) -> None:
    """No tensor anywhere (functions, sparse and attribute tensors included) refers to external data
    or holds strings, and no text field anywhere holds pickle bytes."""
    import onnx

    for message in _messages(model):
        if isinstance(message, onnx.TensorProto):
            if message.data_location == onnx.TensorProto.EXTERNAL or message.external_data:
                where = {e.key: e.value for e in message.external_data}.get("location", "?")
                raise _refuse(
                    "external-data",
                    f"tensor {message.name!r} refers to external data {where!r}; weights must be inside",
                )
            if message.data_type == onnx.TensorProto.STRING:
                raise _refuse(
                    "bad-graph", f"tensor {message.name!r} holds strings; served graphs hold numbers only"
                )
            texts: Iterator[str | bytes] = iter([message.name, message.doc_string])
        else:
            texts = _strings(message)
        for text in texts:
            raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
            if raw.lstrip()[:2] in _PICKLE_MAGIC:
                kind = type(message).__name__
                raise _refuse("pickle", f"a {kind} in the model holds pickle bytes in a text field")


def _nodes(model: Any) -> Iterator[Any]:
    graphs = [model.graph, *(f for f in model.functions)]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.g.node:
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


def _check_graph(model: Any, spec: ModelSpec) -> None:
    import onnx

    local = {(f.domain, f.name) for f in model.functions}
    for node in _nodes(model):
        if (node.domain, node.op_type) in local:
            continue
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            op = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
            raise _refuse(
                "unsupported-op", f"operator {op} is outside the supported set (driftline.models.exported)"
            )
    initializers = {t.name for t in model.graph.initializer}
    declared = [i for i in model.graph.input if i.name not in initializers]
    names = [i.name for i in declared]
    if names != spec.tensor_names:
        raise _refuse("spec-mismatch", f"the graph's inputs are {names}, the spec's {spec.tensor_names}")
    widths = {NUMERIC_INPUT: len(spec.numeric_fields), CATEGORICAL_INPUT: len(spec.categorical_fields)}
    kinds = {NUMERIC_INPUT: onnx.TensorProto.FLOAT, CATEGORICAL_INPUT: onnx.TensorProto.INT64}
    for graph_input in declared:
        tensor_type = graph_input.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if (
            tensor_type.elem_type != kinds[graph_input.name]
            or len(dims) != 2
            or dims[1] != widths[graph_input.name]
        ):
            want = "float32" if graph_input.name == NUMERIC_INPUT else "int64"
            raise _refuse(
                "spec-mismatch",
                f"input {graph_input.name!r} is {onnx.TensorProto.DataType.Name(tensor_type.elem_type)} "
                f"of shape {dims}; the spec needs {want} (batch, {widths[graph_input.name]})",
            )
    if len(model.graph.output) != 1:
        raise _refuse("spec-mismatch", f"the graph has {len(model.graph.output)} outputs; one is served")


def _session(model: Any, device: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = os.environ.get("DRIFTLINE_ONNX_THREADS")
    if threads:
        options.intra_op_num_threads = int(threads)
        # idle workers sleep instead of spinning: on a few cores they would take CPU from Kafka's threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    wants_cuda = device != "cpu" and "CUDAExecutionProvider" in available
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise ModelError(
            "--device cuda was requested but ONNX Runtime has no CUDA provider (install onnxruntime-gpu)"
        )
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if wants_cuda else ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for invalid graphs
        raise _refuse("bad-graph", f"ONNX Runtime cannot load the graph: {str(exc)[:300]}") from exc


def _check_parity(session: Any, path: Path, spec: ModelSpec) -> None:
    try:
        tensors = load_tensors(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error type for corrupt headers
        raise _refuse("bad-artifact", f"{path.name} is not a safetensors file: {exc}") from exc
    missing = [k for k in [*spec.tensor_names, EXPECTED] if k not in tensors]
    if missing:
        raise _refuse("bad-artifact", f"{path.name} lacks the tensors {missing}")
    inputs = {k: tensors[k] for k in spec.tensor_names}
    try:
        got = np.asarray(session.run(None, inputs)[0], dtype=np.float32)
    except Exception as exc:  # onnxruntime's own error types
        raise _refuse("parity", f"the graph fails on its own parity sample: {str(exc)[:300]}") from exc
    expected = tensors[EXPECTED]
    if not np.isfinite(got).all():
        raise _refuse("non-finite", "the graph returns NaN or infinite outputs on its parity sample")
    if got.shape != expected.shape:
        raise _refuse("parity", f"the graph returns shape {got.shape}, the module returned {expected.shape}")
    diff = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected)))) if got.size else 0.0
    if not diff <= PARITY_TOLERANCE:
        raise _refuse("parity", f"outputs differ from the module's by {diff:.3g} (> {PARITY_TOLERANCE:g})")
    width = spec.outputs
    shape_ok = got.ndim == 2 and got.shape[1] == width if width else got.ndim == 1 or got.shape[1:] == (1,)
    if not shape_ok:
        want = f"(batch, {width})" if width else "(batch,) or (batch, 1)"
        raise _refuse(
            "spec-mismatch", f"the graph returns {got.shape[1:]} per row; the spec's task needs {want}"
        )


def weights(directory: Path) -> dict[str, npt.NDArray[Any]]:
    """An artifact's weights by name, as numpy arrays (to warm-start a new version from): an exported
    graph's initializers (``torch.onnx.export`` names them after the module's ``state_dict``), or a
    built-in model's safetensors tensors. Read as data only."""
    from driftline.models.artifact import WEIGHTS_FILE, layout_of

    if WEIGHTS_FILE in layout_of(directory):
        from safetensors.numpy import load_file

        return dict(load_file(str(directory / WEIGHTS_FILE)))
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string((directory / ONNX_FILE).read_bytes())
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


# -- serving -------------------------------------------------------------------------------------


class OnnxPredictor:
    """An exported artifact served in batches by ONNX Runtime (CUDA provider when present and asked)."""

    def __init__(self, config: ModelConfig, session: Any) -> None:
        assert config.spec is not None  # check_exported guarantees it
        self._config = config
        self._spec = config.spec
        self._session = session
        task = self._spec.task
        self._softmax = isinstance(task, Classification) and task.outputs == "logits"
        self._width = max(self._spec.outputs, 1)

    @classmethod
    def from_artifact(cls, directory: Path, device: str = "auto") -> OnnxPredictor:
        return cls(*check_exported(directory, device))

    @property
    def config(self) -> ModelConfig:
        return self._config

    def predict_batch(
        self, features: npt.NDArray[np.float32], codes: npt.NDArray[np.int64] | None = None
    ) -> npt.NDArray[np.float32]:
        """Class probabilities ``(n, classes)``, or for regression the values ``(n, 1)``."""
        n = len(features)
        if n == 0:
            return np.empty((0, self._width), dtype=np.float32)
        if codes is None:
            codes = np.zeros((n, len(self._spec.categorical_fields)), dtype=np.int64)
        out = np.asarray(
            self._session.run(None, self._spec.model_inputs(features, codes))[0], dtype=np.float32
        )
        out = out.reshape(n, self._width)
        if self._softmax:
            with np.errstate(over="ignore", invalid="ignore"):
                shifted = np.exp(out - out.max(axis=1, keepdims=True))
                out = shifted / shifted.sum(axis=1, keepdims=True)
        return out

    def warm_up(self, batch_size: int = 64) -> None:
        self.predict_batch(
            np.zeros((batch_size, len(self._spec.numeric_fields)), dtype=np.float32),
            np.zeros((batch_size, len(self._spec.categorical_fields)), dtype=np.int64),
        )
