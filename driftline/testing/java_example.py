"""Build and run the Java example (``examples/java``: kafka-clients and Apache Avro talking to Driftline).

The first :func:`build_jar` runs Maven (``-q -B``, local repository ``<cache_dir>/m2``) outside the
checkout and keeps the fat jar as ``<cache_dir>/java-example-<key>/example.jar``, where ``key`` hashes
the pom, the example's sources and Driftline's ``.avsc`` files (the jar bundles them); a later call,
or a later CI run with the same cache, finds it there without Maven. :func:`run_example` builds (or
reuses) the jar and runs one command of it with a timeout; :func:`run_jar` runs a jar at hand.

>>> len(source_key())
16
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from driftline.errors import DriftlineError

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "java"
"""The Maven project, in the checkout."""

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
"""Driftline's ``.avsc`` files, which the jar bundles."""


class JavaExampleError(DriftlineError):
    """The Java example could not be built or did not finish."""


def _sources(example_dir: Path, schema_dir: Path) -> list[tuple[str, Path]]:
    """Everything the jar is built from, each under a stable name, in a stable order."""
    files = [("pom.xml", example_dir / "pom.xml")]
    files += [
        (p.relative_to(example_dir).as_posix(), p)
        for p in sorted((example_dir / "src").rglob("*"))
        if p.is_file()
    ]
    files += [(f"schemas/{p.name}", p) for p in sorted(schema_dir.glob("*.avsc"))]
    return files


def source_key(example_dir: Path = EXAMPLE_DIR, schema_dir: Path = SCHEMA_DIR) -> str:
    """16 hex digits of the SHA-256 over the example's pom, sources and Driftline's schemas."""
    digest = hashlib.sha256()
    for name, path in _sources(example_dir, schema_dir):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _tool(name: str, why: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise JavaExampleError(f"`{name}` is not on the PATH: {why}")
    return found


def build_jar(
    cache_dir: Path,
    *,
    example_dir: Path = EXAMPLE_DIR,
    schema_dir: Path = SCHEMA_DIR,
    timeout: float = 900.0,
) -> Path:
    """The example's fat jar: the cached one for these sources, else built once with Maven."""
    home = cache_dir / f"java-example-{source_key(example_dir, schema_dir)}"
    jar = home / "example.jar"
    if jar.is_file():
        return jar
    mvn = _tool("mvn", "Maven builds the Java example once; install it (apt-get install maven).")
    staging = home.with_name(f"{home.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        f"-Dmaven.repo.local={cache_dir / 'm2'}",
        f"-Dexample.buildDir={staging / 'target'}",
        f"-Ddriftline.schemas={schema_dir}",
        "-f",
        str(example_dir / "pom.xml"),
        "package",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise JavaExampleError(
                f"Maven could not build the Java example ({' '.join(command)}):\n"
                f"{done.stdout[-3000:]}{done.stderr[-2000:]}"
            )
        (staging / "target" / "example.jar").rename(staging / "example.jar")
        shutil.rmtree(staging / "target")
        if not jar.is_file():  # else another process built it meanwhile
            shutil.rmtree(home, ignore_errors=True)  # an incomplete leftover
            staging.rename(home)
    except subprocess.TimeoutExpired as exc:
        raise JavaExampleError(f"Maven took over {timeout:.0f} s to build the Java example: retry.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return jar


def run_jar(jar: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``java -jar JAR ARGS``; the child is killed after ``timeout`` seconds, and then
    :class:`JavaExampleError` carries what it had printed."""
    java = _tool("java", "the Java example needs Java 17+; install a JDK (apt-get install openjdk-17-jdk).")
    try:
        return subprocess.run(
            [java, "-jar", str(jar), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise JavaExampleError(
            f"the Java example ({' '.join(args[:1])}) did not finish within {timeout:.0f} s; "
            f"it printed:\n{_text(exc.stdout)}{_text(exc.stderr)}"
        ) from exc


def run_example(cache_dir: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Build the jar (or reuse the cached one), then :func:`run_jar` it with ``args``."""
    return run_jar(build_jar(cache_dir), *args, timeout=timeout)


def summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON summary a ``--json`` run printed as its last line.

    >>> summary(subprocess.CompletedProcess([], 0, '{"ok": true}\\n', ""))
    {'ok': True}
    """
    lines = done.stdout.strip().splitlines()
    try:
        parsed = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise JavaExampleError(
            f"the Java example printed no JSON summary (exit code {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-3000:]}"
        ) from exc
    if not isinstance(parsed, dict):
        raise JavaExampleError(f"the Java example's summary is not a JSON object: {lines[-1][:200]}")
    return parsed


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
