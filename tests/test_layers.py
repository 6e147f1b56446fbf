"""The layers hold: ``serve`` loads no drift logic, and the drift logic imports no Kafka."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import driftline

MONITORING = Path(driftline.__file__).parent / "monitoring"
# Everything `driftline serve` imports, at start-up and in its command.
SERVE_CHAIN = (
    "driftline.cli",
    "driftline.cli.stream",
    "driftline.metrics",
    "driftline.streams.app",
    "driftline.streams.kafka",
    "driftline.streams.serve",
)
# What the drift logic must not import: the Kafka client, the I/O layer, the model control plane.
NOT_IN_MONITORING = ("confluent_kafka", "driftline.streams", "driftline.models.control")


def imports(path: Path) -> Iterator[tuple[int, set[str]]]:
    """Each import statement of a file (at the top or inside a function): its line and the modules it
    may load (``from a import b`` gives ``a`` and ``a.b``, since ``b`` may be a module)."""
    package = "driftline.monitoring"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield node.lineno, {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this file is in
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            yield node.lineno, {base} | {f"{base}.{alias.name}" for alias in node.names}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_serve_loads_no_drift_logic() -> None:
    code = (
        f"import sys, {', '.join(SERVE_CHAIN)}; "
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('driftline.monitoring'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    drift = [m for m in out.split() if m != "driftline.monitoring"]  # the package itself is light
    assert not drift, f"serve's imports load the drift logic: {drift}"


def test_monitoring_imports_no_kafka_and_no_io_layer() -> None:
    files = sorted(MONITORING.glob("*.py"))
    assert files
    offending = sorted(
        (path.name, line)
        for path in files
        for line, modules in imports(path)
        if any(_within(module, banned) for module in modules for banned in NOT_IN_MONITORING)
    )
    assert not offending, f"driftline/monitoring/ must import no Kafka and no I/O layer: {offending}"


def test_the_import_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "from confluent_kafka import Consumer\n"
        "def f() -> None:\n"
        "    from driftline.streams import kafka\n"
        "    from ..models import control\n"
        "    from . import profile\n"
    )
    found = set().union(*(modules for _, modules in imports(source)))
    assert {"confluent_kafka", "driftline.streams.kafka", "driftline.models.control"} <= found
    assert "driftline.monitoring.profile" in found
