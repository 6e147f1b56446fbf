"""What the local broker runs on: Java 17+ and Kafka's runtime jars from Maven Central.

The jars are resolved once with Maven from the ``pom.xml`` beside this module and cached under
``cache_dir/kafka-jars/<hash of the pom>``; a later call finds them there without Maven.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from driftline.errors import BrokerError


def resolve_jars(cache_dir: Path, log: Callable[[str], None] = lambda _: None) -> Path:
    """The folder of runtime jars, resolved with Maven on first use and cached by pom hash."""
    pom = resources.files("driftline.broker").joinpath("pom.xml").read_bytes()
    lib = cache_dir / "kafka-jars" / hashlib.sha256(pom).hexdigest()[:16]
    if (lib / ".complete").exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven (`mvn`) is needed once to fetch the Kafka jars: install it "
            "(apt-get install maven), or pass --bootstrap-servers to use an existing cluster."
        )
    log(f"Resolving Apache Kafka jars from Maven Central into {lib} (once)...")
    staging = lib.with_name(lib.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    (staging / "pom.xml").write_bytes(pom)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(staging / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging / 'lib'}",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError("Maven took over 15 minutes to fetch the Kafka jars; try again.") from exc
    if done.returncode != 0:
        raise BrokerError(
            f"Maven could not fetch the Kafka jars:\n{done.stdout[-3000:]}{done.stderr[-2000:]}"
        )
    (staging / "lib" / ".complete").touch()
    if lib.exists():  # another process won the race
        shutil.rmtree(staging, ignore_errors=True)
    else:
        (staging / "lib").rename(lib)
        shutil.rmtree(staging, ignore_errors=True)
    return lib


def check_java() -> str:
    """The path of a Java 17+ ``java``; raises :class:`BrokerError` naming the fix if there is none."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java 17+ is needed to run the local broker: install a JDK "
            "(apt-get install openjdk-17-jre-headless), or pass --bootstrap-servers."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False).stderr
    match = re.search(r'version "(\d+)', out)
    if match is None or int(match.group(1)) < 17:
        raise BrokerError(f"Kafka 4 needs Java 17 or newer; `java -version` says: {out.strip()}")
    return java
