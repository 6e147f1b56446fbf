"""Hostile exported artifacts (issue 10): each one is built from a good export and refused with a
precise reason, and nothing in it is ever unpickled, evaluated or imported. On a real broker, a
hostile version made LIVE is refused (log, metric, audit record) while `serve` goes on with the
version it had."""

from __future__ import annotations

import io
import pickle
import shutil
import sys
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from google.protobuf.internal.encoder import _VarintBytes
from onnx import TensorProto, helper
from prometheus_client import generate_latest
from safetensors.numpy import load_file as load_tensors
from safetensors.numpy import save_file as save_tensors

from driftline.config import Settings
from driftline.errors import ModelError, VerificationError
from driftline.metrics import ServeMetrics
from driftline.models import control, exported
from driftline.models.artifact import CONFIG_FILE, ONNX_FILE, PARITY_FILE, copy_as_version, load_artifact
from driftline.models.exported import EXPECTED, check_exported, export
from driftline.models.packing import unpack_artifact
from driftline.models.runtime import load_predictor
from driftline.models.spec import Classification, InputField, ModelSpec
from driftline.options import ServeOptions
from driftline.streams.app import serve_until_stopped
from tests.helpers import MODEL, produce_events, read_topic
from tests.test_hot_swap import audit_records, predicted_versions, wait_until

SPEC = ModelSpec(
    inputs=(InputField(name="a"), InputField(name="b", mean=1.0, scale=2.0)),
    task=Classification(classes=("x", "y")),
)
OUTSIDE = "../../etc/passwd"


class Canary:
    """Unpickling this creates ``marker``: proof that something was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def test_the_canary_is_live(tmp_path: Path) -> None:
    """Unpickling the payload really would leave the marker (so its absence below means something)."""
    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(Canary(marker)))
    assert marker.exists()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good exported artifact: a tiny MLP classifier."""
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    sample = {"numeric": np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)}
    directory = tmp_path_factory.mktemp("good")
    return export(module, SPEC, sample, directory, name="m", version="1", quiet=True)


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call to an unpickler or torch.load while a check runs (recorded, not raised:
    the checks turn exceptions from their libraries into refusals, which would hide a call)."""
    calls: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def called(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return called

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, spy(f"pickle.{name}", getattr(pickle, name)))
    monkeypatch.setattr(torch, "load", spy("torch.load", torch.load))
    return calls


# -- building hostile artifacts ------------------------------------------------------------------

Mutation = Callable[[Path, Path], None]
"""Makes the artifact folder (first argument) hostile; the second is the canary's marker path."""


def graph_edit(edit: Callable[[onnx.ModelProto], None]) -> Mutation:
    def mutate(directory: Path, _marker: Path) -> None:
        model = onnx.load_model_from_string((directory / ONNX_FILE).read_bytes())
        edit(model)
        (directory / ONNX_FILE).write_bytes(model.SerializeToString())

    return mutate


def raw_append(field: int, payload: bytes) -> Mutation:
    """Append a length-delimited field to model.onnx's protobuf bytes as they are: protobuf's own
    setters only take valid UTF-8 for string fields, a hostile writer is not bound by that."""

    def mutate(directory: Path, _marker: Path) -> None:
        path = directory / ONNX_FILE
        path.write_bytes(
            path.read_bytes() + _VarintBytes(field << 3 | 2) + _VarintBytes(len(payload)) + payload
        )

    return mutate


def pickled(name: str, protocol: int = pickle.HIGHEST_PROTOCOL) -> Mutation:
    def mutate(directory: Path, marker: Path) -> None:
        (directory / name).write_bytes(pickle.dumps(Canary(marker), protocol=protocol))

    return mutate


def torch_saved(directory: Path, marker: Path) -> None:
    torch.save({"weight": torch.zeros(2), "payload": Canary(marker)}, directory / ONNX_FILE)


def extra_file(name: str) -> Mutation:
    def mutate(directory: Path, marker: Path) -> None:
        (directory / name).write_bytes(pickle.dumps(Canary(marker)))

    return mutate


def symlinked(name: str, target: str | None) -> Mutation:
    def mutate(directory: Path, _marker: Path) -> None:
        path = directory / name
        if target is None:  # a link to a copy of the real file, outside the folder
            aside = directory.parent / f"aside-{name}"
            shutil.move(path, aside)
            path.symlink_to(aside)
        else:
            path.unlink()
            path.symlink_to(target)

    return mutate


def directory_instead(directory: Path, _marker: Path) -> None:
    (directory / ONNX_FILE).unlink()
    (directory / ONNX_FILE).mkdir()


def externalize(tensor: onnx.TensorProto, location: str) -> None:
    """Point ``tensor``'s (float32) data at a file, as onnx's external-data writer does."""
    length = 4 * int(np.prod(tensor.dims))
    for field in ("raw_data", "float_data", "int64_data"):
        tensor.ClearField(field)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def external_initializer(location: str) -> Mutation:
    return graph_edit(lambda model: externalize(model.graph.initializer[0], location))


def then(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Append ``node`` (one input: the graph's output, one output) as the graph's new last step."""
    node.input.insert(0, model.graph.output[0].name)
    model.graph.node.append(node)
    model.graph.output[0].name = node.output[0]


def sparse_constant(location: str, used: bool = True) -> Mutation:
    """A Constant whose sparse value's data lives in a file; the graph adds it to its output (or,
    unused, it only sits in the graph)."""

    def edit(model: onnx.ModelProto) -> None:
        values = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
        externalize(values, location)
        sparse = helper.make_sparse_tensor(values, helper.make_tensor("i", TensorProto.INT64, [1], [0]), [2])
        model.graph.node.insert(0, helper.make_node("Constant", [], ["sparse"], sparse_value=sparse))
        if used:
            then(model, helper.make_node("Add", ["sparse"], ["added"]))

    return graph_edit(edit)


def local_function(*body: onnx.NodeProto, domains: tuple[str, ...] = ()) -> Mutation:
    """The graph's output goes through a model-local function ``com.local::Wrap`` (x -> y)."""

    def edit(model: onnx.ModelProto) -> None:
        opsets = [helper.make_opsetid(d, 1) for d in domains]
        model.functions.append(
            helper.make_function(
                "com.local", "Wrap", ["x"], ["y"], list(body), [helper.make_opsetid("", 20), *opsets]
            )
        )
        model.opset_import.extend([helper.make_opsetid("com.local", 1), *opsets])
        then(model, helper.make_node("Wrap", [], ["wrapped"], domain="com.local"))

    return graph_edit(edit)


def function_constant(value: onnx.TensorProto) -> Mutation:
    return local_function(
        helper.make_node("Constant", [], ["k"], value=value), helper.make_node("Identity", ["x"], ["y"])
    )


def external_constant(location: str) -> onnx.TensorProto:
    value = helper.make_tensor("k", TensorProto.FLOAT, [2], [1.0, 1.0])
    externalize(value, location)
    return value


def custom_op(declare_domain: bool) -> Mutation:
    def edit(model: onnx.ModelProto) -> None:
        if declare_domain:
            model.opset_import.append(helper.make_opsetid("com.evil", 1))
        then(model, helper.make_node("Exec", [], ["ran"], domain="com.evil", command="touch /tmp/owned"))

    return graph_edit(edit)


def standard_op(op: str, domain: str = "", **attributes: Any) -> Mutation:
    def edit(model: onnx.ModelProto) -> None:
        if domain:
            model.opset_import.append(helper.make_opsetid(domain, 3))
        then(model, helper.make_node(op, [], [f"{op.lower()}_out"], domain=domain, **attributes))

    return graph_edit(edit)


def if_node(model: onnx.ModelProto) -> None:
    model.graph.initializer.append(helper.make_tensor("cond", TensorProto.BOOL, [], [True]))
    out = helper.make_tensor_value_info("branch", TensorProto.FLOAT, None)
    source = model.graph.output[0].name
    branches = {
        f"{name}_branch": helper.make_graph([helper.make_node(op, [source], ["branch"])], name, [], [out])
        for name, op in (("then", "Identity"), ("else", "Neg"))
    }
    model.graph.node.append(helper.make_node("If", ["cond"], ["chosen"], **branches))
    model.graph.output[0].name = "chosen"


def rename_input(model: onnx.ModelProto) -> None:
    model.graph.input[0].name = "evil"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == "numeric":
                node.input[i] = "evil"


def input_as_double(model: onnx.ModelProto) -> None:
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.DOUBLE


def config_edit(edit: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(directory: Path, _marker: Path) -> None:
        import json

        config = json.loads((directory / CONFIG_FILE).read_text())
        edit(config)
        (directory / CONFIG_FILE).write_text(json.dumps(config))

    return mutate


def one_more_input(config: dict[str, Any]) -> None:
    config["spec"]["inputs"].append({"name": "c"})
    config["features"].append("c")


def architecture(name: str) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["architecture"] = name

    return edit


def parity_edit(edit: Callable[[dict[str, np.ndarray[Any, Any]]], None]) -> Mutation:
    def mutate(directory: Path, _marker: Path) -> None:
        tensors = load_tensors(str(directory / PARITY_FILE))
        edit(tensors)
        save_tensors(tensors, str(directory / PARITY_FILE))

    return mutate


def shifted_expected(tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    tensors[EXPECTED] = tensors[EXPECTED] + np.float32(0.5)


def nan_expected(tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    tensors[EXPECTED] = np.full_like(tensors[EXPECTED], np.nan)


def infinite_inputs(tensors: dict[str, np.ndarray[Any, Any]]) -> None:
    tensors["numeric"] = np.full_like(tensors["numeric"], np.inf)


def nan_graph(directory: Path, _marker: Path) -> None:
    """A graph whose outputs are NaN (export refuses such a module, so the graph is written by hand),
    with a parity file that claims plausible outputs."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [2], [float("nan"), 0.0])
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["numeric", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["output"]),
        ],
        "nan",
        [helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    onnx.checker.check_model(model)
    (directory / ONNX_FILE).write_bytes(model.SerializeToString())
    numeric = np.ones((4, 2), np.float32)
    save_tensors({"numeric": numeric, EXPECTED: numeric.copy()}, str(directory / PARITY_FILE))


def strings(name: str) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.array([b"rm -rf /"], dtype=object), name)


def strings_initializer(model: onnx.ModelProto) -> None:
    model.graph.initializer.append(strings("s"))


PICKLE = pickle.dumps({"payload": 1}, protocol=4)
METADATA_ENTRY = b"\x0a\x01x\x12" + _VarintBytes(len(PICKLE)) + PICKLE  # StringStringEntryProto{key, value}


def node_doc_string(model: onnx.ModelProto) -> None:
    """Pickle bytes as a node's doc string (protobuf's setter refuses invalid UTF-8, so the field is
    spliced in as bytes: NodeProto.doc_string is field 6)."""
    node = model.graph.node[0]
    spliced = node.SerializeToString() + b"\x32" + _VarintBytes(len(PICKLE)) + PICKLE
    node.ParseFromString(spliced)


CASES: dict[str, tuple[Mutation, str]] = {
    # (a), (b), (d): pickles and torch.save archives in place of a file
    "pickle-as-model.onnx": (pickled(ONNX_FILE), "pickle"),
    "pickle-protocol-2-as-model.onnx": (pickled(ONNX_FILE, 2), "pickle"),
    "pickle-protocol-0-as-model.onnx": (pickled(ONNX_FILE, 0), "bad-graph"),  # no magic: not protobuf
    "torch.save-as-model.onnx": (torch_saved, "pickle"),
    "pickle-as-parity.safetensors": (pickled(PARITY_FILE), "pickle"),
    "pickle-protocol-0-as-parity.safetensors": (pickled(PARITY_FILE, 0), "bad-artifact"),
    "pickle-as-config.json": (pickled(CONFIG_FILE), "pickle"),
    # (c) anything besides the three files
    "extra-payload.pkl": (extra_file("payload.pkl"), "bad-artifact"),
    "extra-hidden-file": (extra_file(".payload"), "bad-artifact"),
    # (e) external data, wherever the tensor is
    "external-data-outside": (external_initializer(OUTSIDE), "external-data"),
    "external-data-absolute": (external_initializer("/etc/passwd"), "external-data"),
    "external-data-beside": (external_initializer("weights.bin"), "external-data"),
    "external-data-in-a-function": (function_constant(external_constant(OUTSIDE)), "external-data"),
    "external-data-in-a-sparse-constant": (sparse_constant(OUTSIDE), "external-data"),
    "external-data-beside-in-a-sparse-constant": (sparse_constant("weights.bin"), "external-data"),
    "external-data-in-an-unused-sparse-constant": (
        sparse_constant("weights.bin", used=False),
        "external-data",
    ),
    # (f) operators
    "custom-domain-op": (custom_op(declare_domain=True), "unsupported-op"),
    "custom-domain-op-undeclared": (custom_op(declare_domain=False), "bad-graph"),  # the ONNX checker's
    "custom-op-in-a-function": (
        local_function(helper.make_node("Exec", ["x"], ["y"], domain="com.evil"), domains=("com.evil",)),
        "unsupported-op",
    ),
    "if": (graph_edit(if_node), "unsupported-op"),
    "hardmax": (standard_op("Hardmax", axis=1), "unsupported-op"),
    "onnx-ml-op": (standard_op("Normalizer", "ai.onnx.ml", norm="MAX"), "unsupported-op"),
    # (g) inputs that disagree with the spec
    "spec-has-another-input": (config_edit(one_more_input), "spec-mismatch"),
    "graph-input-renamed": (graph_edit(rename_input), "spec-mismatch"),
    "graph-input-double": (graph_edit(input_as_double), "spec-mismatch"),
    # (h), (i) the parity sample
    "nan-outputs": (nan_graph, "non-finite"),
    "infinite-parity-inputs": (parity_edit(infinite_inputs), "non-finite"),
    "expected-shifted": (parity_edit(shifted_expected), "parity"),
    "expected-nan": (parity_edit(nan_expected), "parity"),
    # (k) pickle bytes inside the graph's text fields (ModelProto: doc_string 6, metadata_props 14)
    "pickle-in-metadata_props": (raw_append(14, METADATA_ENTRY), "pickle"),
    "pickle-as-doc_string": (raw_append(6, PICKLE), "pickle"),
    "pickle-as-a-node-doc_string": (graph_edit(node_doc_string), "pickle"),
    # (l) links and other non-files
    "symlink-to-a-copy": (symlinked(PARITY_FILE, None), "bad-artifact"),
    "symlink-to-etc-passwd": (symlinked(CONFIG_FILE, "/etc/passwd"), "bad-artifact"),
    "directory-as-model.onnx": (directory_instead, "bad-artifact"),
    # (m) strings
    "string-initializer": (graph_edit(strings_initializer), "bad-graph"),
    "string-constant-in-a-function": (
        function_constant(strings("k")),
        "bad-graph",
    ),
    # code the artifact names is never looked up
    "architecture-names-code": (config_edit(architecture("os.system")), "bad-artifact"),
}


def hostile_copy(good: Path, tmp_path: Path, mutate: Mutation) -> tuple[Path, Path]:
    directory = tmp_path / "artifact"
    shutil.copytree(good, directory)
    marker = tmp_path / "unpickled"
    mutate(directory, marker)
    return directory, marker


@pytest.mark.parametrize(("mutate", "reason"), CASES.values(), ids=CASES.keys())
def test_a_hostile_artifact_is_refused_with_its_reason(
    mutate: Mutation,
    reason: str,
    good: Path,
    tmp_path: Path,
    watched: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory, marker = hostile_copy(good, tmp_path, mutate)
    monkeypatch.chdir(tmp_path)  # where a relative external-data path would resolve: make it resolve
    (tmp_path / "weights.bin").write_bytes(np.ones(64, np.float32).tobytes())
    with pytest.raises(VerificationError) as refused:
        check_exported(directory)
    assert refused.value.reason == reason, refused.value.detail
    assert not marker.exists(), "something was unpickled"
    assert watched == [], "an unpickler was called"


def test_serve_loads_through_the_same_checks(good: Path, tmp_path: Path, watched: list[str]) -> None:
    directory, marker = hostile_copy(good, tmp_path, pickled(ONNX_FILE))
    with pytest.raises(VerificationError, match="pickle"):
        load_predictor(directory, "cpu")
    assert not marker.exists()
    assert watched == []


def test_an_oversize_file_is_refused(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, _ = hostile_copy(good, tmp_path, lambda _d, _m: None)
    check_exported(directory)  # the copy itself is fine
    monkeypatch.setattr(exported, "MAX_BYTES", (directory / ONNX_FILE).stat().st_size - 1)
    with pytest.raises(VerificationError) as refused:
        check_exported(directory)
    assert refused.value.reason == "oversize"
    assert ONNX_FILE in refused.value.detail


def test_a_config_that_is_not_json_is_refused(good: Path, tmp_path: Path) -> None:
    def not_json(directory: Path, _marker: Path) -> None:
        (directory / CONFIG_FILE).write_text("__import__('os').system('touch /tmp/owned')")

    directory, _ = hostile_copy(good, tmp_path, not_json)
    with pytest.raises(ModelError, match="not a valid model config"):
        check_exported(directory)


def test_names_in_an_artifact_are_never_imported(
    good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module on the path, named by the artifact as a pickle global, an operator domain, its
    metadata and its architecture, is never imported."""
    module = "driftline_evil_payload"
    imported = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(f"open({str(imported)!r}, 'w').close()\ndef run(): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def name_it(model: onnx.ModelProto) -> None:
        model.opset_import.append(helper.make_opsetid(module, 1))
        model.metadata_props.add(key="class", value=f"{module}.run")
        then(model, helper.make_node("run", [], ["ran"], domain=module))

    global_pickle = f"\x80\x02c{module}\nrun\n)R.".encode("latin-1")  # GLOBAL, EMPTY_TUPLE, REDUCE, STOP
    for mutate in (
        graph_edit(name_it),
        config_edit(architecture(module)),
        lambda d, _m: (d / ONNX_FILE).write_bytes(global_pickle),
        lambda d, _m: (d / PARITY_FILE).write_bytes(global_pickle),
    ):
        shutil.rmtree(tmp_path / "artifact", ignore_errors=True)
        directory, _ = hostile_copy(good, tmp_path, mutate)
        with pytest.raises(VerificationError):
            check_exported(directory)
    assert module not in sys.modules
    assert not imported.exists()


# -- packing --------------------------------------------------------------------------------------


def tar(good: Path, extra: tarfile.TarInfo | None = None, content: bytes = b"", skip: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name in (CONFIG_FILE, ONNX_FILE, PARITY_FILE):
            if name != skip:
                data = (good / name).read_bytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra.size = len(content) if extra.isreg() else 0
            archive.addfile(extra, io.BytesIO(content) if extra.isreg() else None)
    return out.getvalue()


def link(name: str, kind: bytes, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("extra", "skip"),
    [
        (tarfile.TarInfo("payload.pkl"), ""),
        (tarfile.TarInfo("../model.onnx"), ONNX_FILE),
        (link(PARITY_FILE, tarfile.SYMTYPE, "/etc/passwd"), PARITY_FILE),
        (link(PARITY_FILE, tarfile.LNKTYPE, CONFIG_FILE), PARITY_FILE),
        (link("model", tarfile.DIRTYPE, ""), ""),
        (tarfile.TarInfo(ONNX_FILE), ""),  # a second model.onnx after the first
    ],
    ids=["extra-member", "path-traversal", "symlink-member", "hardlink-member", "directory", "duplicate"],
)
def test_unpacking_an_exported_artifact_refuses_anything_else(
    extra: tarfile.TarInfo, skip: str, good: Path, tmp_path: Path
) -> None:
    assert sorted(p.name for p in unpack_artifact(tar(good), tmp_path / "ok").iterdir()) == sorted(
        [CONFIG_FILE, ONNX_FILE, PARITY_FILE]
    )
    with pytest.raises(VerificationError) as refused:
        unpack_artifact(tar(good, extra, PICKLE, skip), tmp_path / "out")
    assert refused.value.reason == "bad-artifact"
    assert not (tmp_path / "out").exists()


# -- on a real broker ------------------------------------------------------------------------------


def refusals(metrics: ServeMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("driftline_model_versions_refused_total{")
    }


@pytest.mark.kafka
def test_hostile_live_versions_are_refused_while_serve_goes_on(
    registry: Settings, model_dir: Path, keys: Path, tmp_path: Path
) -> None:
    private = (keys / "signing.key").read_bytes()
    config, module = load_artifact(model_dir)
    spec = ModelSpec(
        inputs=tuple(InputField(name=f) for f in config.features),
        task=Classification(classes=tuple(config.classes)),
    )
    sample = {
        "numeric": np.random.default_rng(1).uniform(0, 1, size=(32, len(config.features))).astype(np.float32)
    }
    v1 = export(module, spec, sample, tmp_path / "v1", name=MODEL, version="1", quiet=True)
    control.publish_version(registry, v1, private)
    control.promote(registry, private, MODEL, "1")

    metrics, stop, started = ServeMetrics(), threading.Event(), threading.Event()
    options = ServeOptions(group_id="g-hostile", instance_id="hostile", max_batch=200, max_wait_ms=5)
    thread = threading.Thread(
        target=serve_until_stopped,
        args=(registry, options, stop),
        kwargs={"device": "cpu", "metrics": metrics, "on_started": lambda _p: started.set()},
    )
    thread.start()
    try:
        assert started.wait(60), "serve did not start"
        before = produce_events(registry, 100, run_id="before")
        assert set(
            predicted_versions(read_topic(registry, registry.topics.predictions, len(before))).values()
        ) == {"1"}
        # v2: a pickle in place of model.onnx; v3: pickle bytes in the graph's metadata. Both go LIVE.
        marker = tmp_path / "unpickled"
        v2 = copy_as_version(v1, tmp_path / "v2", "2")
        pickled(ONNX_FILE)(v2, marker)
        v3 = copy_as_version(v1, tmp_path / "v3", "3")
        raw_append(14, METADATA_ENTRY)(v3, marker)
        for count, (version, directory) in enumerate((("2", v2), ("3", v3)), start=1):
            control.publish_version(registry, directory, private)
            control.promote(registry, private, MODEL, version)
            wait_until(lambda n=count: sum(refusals(metrics).values()) >= n)
        assert refusals(metrics) == {"pickle": 2.0}
        assert thread.is_alive(), "serve stopped"
        after = produce_events(registry, 100, run_id="after", seed=2)
        predictions = read_topic(registry, registry.topics.predictions, len(before) + len(after))
        versions = predicted_versions(predictions)
        assert {versions[i] for i in after} == {"1"}
        assert len(versions) == len(before) + len(after)
        audit = audit_records(registry, expected=2)
        assert [(r["action"], r["version"], r["reason"]) for r in audit] == [
            ("REFUSED", "2", "pickle"),
            ("REFUSED", "3", "pickle"),
        ]
        assert not marker.exists()
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
