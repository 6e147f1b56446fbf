"""The Quix Streams contender's own virtualenv, created once and cached.

quixstreams pins ``confluent-kafka<2.13`` and an older pydantic, so it cannot live in Driftline's
virtualenv (confluent-kafka 2.16). The contender runs on the interpreter of a second virtualenv,
``<cache>/quix-venv-<key>``, holding ``quixstreams==QUIXSTREAMS_VERSION`` and its own dependencies. A
``.pth`` file in it adds Driftline's site-packages *after* its own, so quixstreams, confluent-kafka and
pydantic come from the Quix venv while numpy, torch and driftline itself come from Driftline's.

The key covers the pinned version, the interpreter and the path of Driftline's site-packages; the venv
is built under a file lock (as ``./dev`` builds the main one) and marked ``.complete`` when done, so
concurrent benches wait for one build and a failed build is redone. Building needs PyPI (or the
configured pip index) once; afterwards nothing is downloaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import driftline
from driftline.errors import DriftlineError

QUIXSTREAMS_VERSION = "3.28.1"
"""The Quix Streams release the contender runs (its venv is keyed on it)."""
BUILD_TIMEOUT_S = 900.0
"""Longest wait for the venv: another process's build (the lock), then ours (venv, pip install)."""
CHECK_TIMEOUT_S = 120.0
"""Longest wait for the import check of a built venv."""
PTH_NAME = "zz-driftline-main-venv.pth"

Log = Callable[[str], None]

_CHECK = """
import json, confluent_kafka, pydantic, quixstreams, driftline
print(json.dumps({m.__name__: [getattr(m, "__version__", ""), m.__file__]
                  for m in (quixstreams, confluent_kafka, pydantic, driftline)}))
print(json.dumps(confluent_kafka.libversion()[0]))
"""


class QuixEnvError(DriftlineError):
    """The Quix Streams contender's virtualenv could not be built or does not import as it should."""


def main_site_packages() -> list[str]:
    """The site-packages of the running (Driftline's) interpreter, in its own order."""
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def venv_dir(cache_dir: Path) -> Path:
    """Where the Quix venv for this interpreter and this Driftline venv lives (it may not exist yet).

    >>> venv_dir(Path("/cache")).parent, venv_dir(Path("/cache")).name.startswith("quix-venv-")
    (PosixPath('/cache'), True)
    """
    parts = [QUIXSTREAMS_VERSION, sys.version, sys.base_prefix, *main_site_packages()]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return cache_dir / f"quix-venv-{key}"


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(cache_dir: Path, log: Log) -> Path:
    """The Quix venv's interpreter, building the venv first if no complete one exists."""
    venv = venv_dir(cache_dir)
    if (venv / ".complete").is_file():
        return python_of(venv)
    cache_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    with (cache_dir / ".quix-venv.lock").open("w") as lock:
        _lock(lock.fileno(), deadline)
        if not (venv / ".complete").is_file():
            log(f"building the Quix Streams venv {venv} (once: quixstreams=={QUIXSTREAMS_VERSION})")
            _build(venv, deadline)
    return python_of(venv)


def _lock(fd: int, deadline: float) -> None:
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise QuixEnvError("Timed out waiting for another process building the Quix venv.") from None
            time.sleep(0.5)


def _build(venv: Path, deadline: float) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    try:
        _build_in(venv, deadline)
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)  # no half-built venv is left behind
        raise


def _build_in(venv: Path, deadline: float) -> None:
    _run([sys.executable, "-m", "venv", str(venv)], deadline, "create the venv")
    python = str(python_of(venv))
    pip = [python, "-m", "pip", "install", "-q", "--progress-bar", "off", "--disable-pip-version-check"]
    _run([*pip, f"quixstreams=={QUIXSTREAMS_VERSION}"], deadline, "install quixstreams")
    (_own_site_packages(python, deadline) / PTH_NAME).write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in main_site_packages())
    )
    check(python_of(venv))
    (venv / ".complete").touch()


def _own_site_packages(python: str, deadline: float) -> Path:
    found = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], deadline, "locate")
    return Path(found.strip())


def _run(cmd: list[str], deadline: float, what: str) -> str:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()), check=False
        )
    except subprocess.TimeoutExpired:
        raise QuixEnvError(
            f"Quix venv: {what} timed out; run the bench again (the build restarts)."
        ) from None
    if done.returncode != 0:
        raise QuixEnvError(
            f"Quix venv: could not {what} ({done.returncode}). It needs PyPI or the configured pip index "
            f"once; `driftline bench --quix-events 0` skips the contender.\n{done.stderr[-2000:]}"
        )
    return done.stdout


def check(python: Path) -> dict[str, str]:
    """Import quixstreams, confluent_kafka, pydantic and driftline in the Quix venv; raise unless the
    first three come from the venv itself and driftline from this checkout. Returns their versions."""
    done = subprocess.run(
        [str(python), "-c", _CHECK],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        check=False,
        env=agent_env(),
    )
    if done.returncode != 0:
        raise QuixEnvError(f"The Quix venv does not import: {done.stderr[-2000:]}")
    modules, librdkafka = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    venv = python.parent.parent
    for name in ("quixstreams", "confluent_kafka", "pydantic"):
        if not Path(modules[name][1]).resolve().is_relative_to(venv.resolve()):
            raise QuixEnvError(f"In the Quix venv {name} comes from {modules[name][1]}, not from {venv}.")
    ours = Path(driftline.__file__).resolve().parent
    if Path(modules["driftline"][1]).resolve().parent != ours:
        raise QuixEnvError(f"In the Quix venv driftline comes from {modules['driftline'][1]}, not {ours}.")
    return {
        "quixstreams": modules["quixstreams"][0],
        "confluent_kafka": modules["confluent_kafka"][0],
        "librdkafka": librdkafka,
        "pydantic": modules["pydantic"][0],
    }


def agent_env() -> dict[str, str]:
    """The environment for the Quix venv's interpreter: driftline from this checkout (put first on
    ``PYTHONPATH`` when it is a source checkout, not a site-packages install), and no ``Quix__*``
    variables, so that the app talks to the bench's broker only, never to Quix Cloud."""
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("quix__")}
    root = str(Path(driftline.__file__).resolve().parent.parent)
    if root not in {str(Path(p).resolve()) for p in main_site_packages()}:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env
