"""``driftline bench soak``: a very short soak on the session's broker, and its figures offline."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from driftline.bench.soak_report import SERVICES, Sample, format_sample, jsonable, summarise
from driftline.cli import main
from driftline.config import Settings


def _sample(t_s: float, rss: float, p99: float | None = 50.0, ready: bool = True) -> Sample:
    return Sample(
        t_s=t_s,
        sent=int(t_s * 100),
        sent_per_s=100.0,
        served_per_s=100.0,
        predictions=int(t_s * 100),
        dead_letters=0,
        serve_lag=3.0,
        monitor_lag=None,
        p50_ms=10.0,
        p99_ms=p99,
        rss_mb={"serve": rss, "monitor": 2 * rss, "train": math.nan},
        ready={"serve": ready, "monitor": True, "train": True},
    )


def test_the_summary_fits_rss_slopes_and_skips_missing_figures() -> None:
    samples = [
        _sample(0.0, 100.0),
        _sample(1800.0, 110.0, p99=None, ready=False),
        _sample(3600.0, 120.0, 70.0),
    ]
    s = summarise(samples)
    assert s["rss"]["serve"] == {
        "start_mb": 100.0,
        "end_mb": 120.0,
        "max_mb": 120.0,
        "slope_mb_per_hour": 20.0,
        "late_slope_mb_per_hour": 20.0,
    }
    assert s["rss"]["monitor"]["slope_mb_per_hour"] == 40.0
    assert s["rss"]["train"]["max_mb"] is None
    assert (s["p99_ms_max"], s["p99_ms_median"], s["serve_lag_max"], s["monitor_lag_max"]) == (
        70.0,
        60.0,
        3.0,
        None,
    )
    assert s["not_ready_samples"] == {"serve": 1, "monitor": 0, "train": 0}
    assert jsonable(samples[0])["rss_mb"]["train"] is None  # strict JSON: no NaN
    assert "n/a" in format_sample(samples[1])


@pytest.mark.kafka
def test_a_short_soak_reports_every_sample_and_loses_nothing(settings: Settings, tmp_path: Path) -> None:
    chart = tmp_path / "soak.png"
    args = ["bench", "soak", "--minutes", "0.3", "--share", "0.2", "--interval-s", "3"]
    args += ["--saturation-events", "5000", "--warmup", "2000", "--malformed-every", "500", "--device", "cpu"]
    args += ["--json", "--chart", str(chart), "--logs", str(tmp_path / "logs")]
    started = time.monotonic()
    result = CliRunner().invoke(main, ["-b", str(settings.bootstrap_servers), *args])
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((tmp_path / "logs").glob("*.log"))
    )
    assert result.exit_code == 0, result.output + logs
    r = json.loads(result.stdout)
    print(f"soak took {time.monotonic() - started:.0f} s:", json.dumps(r["summary"], indent=1))
    assert r["saturation_eps"] > 0
    assert r["target_eps"] == pytest.approx(0.2 * r["saturation_eps"])
    assert 0 < r["sent"] <= r["target_eps"] * 18 + 1  # fewer where the producer cannot keep up
    assert len(r["samples"]) >= 4  # 18 s every 3 s, and one after the drain
    for sample in r["samples"]:
        assert set(sample["rss_mb"]) == set(SERVICES)
        assert all(isinstance(mb, float) and 0 < mb < math.inf for mb in sample["rss_mb"].values()), sample
        assert set(sample["ready"]) == set(SERVICES)
    last = r["samples"][-1]
    assert r["events"] == r["warmup"] + r["sent"]
    assert r["dead_letters"] == r["malformed_sent"] > 0
    assert r["predictions"] == r["events"] - r["dead_letters"] == last["predictions"]
    assert r["lost"] == 0
    assert last["monitor_lag"] == 0
    assert all(r["summary"]["rss"][name]["max_mb"] > 0 for name in SERVICES)
    assert r["summary"]["p99_ms_max"] is not None
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
