"""What ``driftline bench soak`` reads from the running services: their ``/metrics`` and ``/readyz`` on
loopback, their RSS (``/proc/PID/status``) and the high watermarks of the monitor's inputs, turned
into :class:`~driftline.bench.soak_report.Sample` s."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from driftline.bench.soak_report import SERVICES, Sample, Scrape, interval_quantile, parse_metrics
from driftline.config import Settings
from driftline.streams import kafka
from driftline.streams.kafka import TopicPartition

LATENCY = "driftline_end_to_end_latency_seconds"


class Probe:
    """Reads the services' ``/metrics`` and ``/readyz`` (on loopback) and the inputs' high watermarks."""

    def __init__(self, settings: Settings, ports: dict[str, int]) -> None:
        t = settings.topics
        self._ports = ports
        self._consumer = kafka.consumer(settings, f"soak-probe-{uuid.uuid4().hex[:8]}")
        self._inputs = [
            TopicPartition(topic, p)
            for topic in (t.events, t.predictions, t.labels)
            for p in range(t.partitions)
        ]

    def scrape(self, name: str) -> Scrape | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._ports[name]}/metrics", timeout=5) as r:
                return parse_metrics(r.read().decode())
        except OSError:
            return None

    def ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._ports[name]}/readyz", timeout=5) as r:
                return int(r.status) == 200
        except urllib.error.HTTPError as exc:
            return exc.code == 200
        except OSError:
            return False

    def input_records(self) -> int:
        """Records in the monitor's three inputs (their high watermarks; the topics are the run's own)."""
        return sum(
            self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self._inputs
        )

    def monitor_lag(self, monitor: Scrape | None) -> float | None:
        if monitor is None:
            return None
        read = monitor.get("driftline_monitor_records_total")  # scraped first: the lag is never negative
        return max(0.0, self.input_records() - read)

    def close(self) -> None:
        self._consumer.close()


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (NaN where ``/proc`` does not say: not Linux, exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class Sampler:
    """Turns scrapes into :class:`Sample` s; keeps the previous one for the interval's deltas."""

    def __init__(self, probe: Probe, pids: dict[str, int]) -> None:
        self.probe, self.pids = probe, pids
        self.started = time.monotonic()
        self._last = (self.started, 0, probe.scrape("serve") or Scrape())

    def sample(self, sent: int) -> Sample:
        now = time.monotonic()
        scrapes = {name: self.probe.scrape(name) for name in SERVICES}
        then, sent_then, before = self._last
        serve = scrapes["serve"] or before
        dt = max(now - then, 1e-9)
        p50, p99 = (
            interval_quantile(before.buckets.get(LATENCY, {}), serve.buckets.get(LATENCY, {}), q)
            for q in (0.5, 0.99)
        )
        consumed = "driftline_events_consumed_total"
        self._last = (now, sent, serve)
        return Sample(
            t_s=round(now - self.started, 3),
            sent=sent,
            sent_per_s=(sent - sent_then) / dt,
            served_per_s=(serve.get(consumed) - before.get(consumed)) / dt,
            predictions=int(serve.get("driftline_predictions_produced_total")),
            dead_letters=int(serve.get("driftline_dead_letters_total")),
            serve_lag=None if scrapes["serve"] is None else serve.get("driftline_consumer_lag"),
            monitor_lag=self.probe.monitor_lag(scrapes["monitor"]),
            p50_ms=None if p50 is None else 1000.0 * p50,
            p99_ms=None if p99 is None else 1000.0 * p99,
            rss_mb={name: rss_mb(pid) for name, pid in self.pids.items()},
            ready={name: self.probe.ready(name) for name in SERVICES},
        )


def drained(probe: Probe, expected: int) -> bool:
    """``serve`` has predicted or dead-lettered ``expected`` events, the monitor has read everything."""
    serve = probe.scrape("serve")
    if serve is None:
        return False
    accounted = serve.get("driftline_predictions_produced_total") + serve.get("driftline_dead_letters_total")
    return accounted >= expected and probe.monitor_lag(probe.scrape("monitor")) == 0
