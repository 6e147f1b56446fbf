"""examples/notebook.py, run as a user runs it, against the session's broker: River's Phishing data set,
a custom module trained in process, exported, published, served and monitored; every held-out row is
predicted, and the served accuracy is the in-process one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from driftline.config import Settings

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "notebook.py"
HELD_OUT = 450
TIMEOUT_S = 150


def run_script(settings: Settings, tmp_path: Path) -> tuple[int, str]:
    """The script in a process group of its own (with the serve and monitor it starts), all of it
    stopped if it overruns."""
    env = {
        **os.environ,
        **settings.topics.environment(),  # this test's topics, as `--configured-topics` reads them
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    for key in ("DRIFTLINE_CONFIG", "DRIFTLINE_SIGNING__PRIVATE_KEY", "DRIFTLINE_SIGNING__PUBLIC_KEYS"):
        env.pop(key, None)  # keys: the script makes its own, in its workdir
    command = [
        sys.executable,
        str(SCRIPT),
        "--bootstrap-servers",
        str(settings.bootstrap_servers),
        "--home",
        str(tmp_path / "home"),
        "--workdir",
        str(tmp_path / "work"),
        "--configured-topics",
        "--timeout",
        "60",
        "--json",
        str(tmp_path / "summary.json"),
    ]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script unwinds and stops serve and monitor
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate(timeout=10)
        pytest.fail(f"examples/notebook.py ran over {TIMEOUT_S} s:\n{out.decode(errors='replace')[-4000:]}")
    finally:
        if proc.poll() is None:  # an error (or Ctrl-C) in this test while the script runs
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode, out.decode(errors="replace")


def logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {log.name}:\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted((tmp_path / "work").glob("*.log"))
    )


def test_the_notebook_example_serves_the_phishing_model_it_trains(settings: Settings, tmp_path: Path) -> None:
    code, out = run_script(settings, tmp_path)
    assert code == 0, f"exit code {code}:\n{out[-4000:]}\n{logs(tmp_path)}"

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["train_rows"] == 800
    assert summary["held_out_rows"] == HELD_OUT
    assert summary["predictions"] == HELD_OUT  # every held-out row, once
    assert summary["same_class"] == HELD_OUT  # served class == the module's class, row by row
    assert summary["served_accuracy"] == summary["in_process_accuracy"]
    assert summary["served_accuracy"] > 0.8  # chance is 0.53 (the majority class)
    assert summary["max_score_difference"] <= 1e-4
    assert summary["labels_joined_by_monitor"] == HELD_OUT
    assert {e["predicted"] for e in summary["examples"]} <= {"legitimate", "phishing"}
    assert f"predictions received: {HELD_OUT} of {HELD_OUT}" in out
    assert (tmp_path / "work" / "keys" / "signing.pub").is_file()  # no key configured: made one
    assert "Traceback" not in out
