"""Liveness and readiness of a service, and the HTTP endpoints that report them with its metrics.

- **live**: the service's loop turned within ``stall_after_s`` (a stuck process is not live; a
  process manager should restart it);
- **ready**: live, the cluster reachable, and every check the service set is passing (partitions
  assigned, a model loaded, state restored...). A service that has not reached the cluster for
  ``unreachable_after_s`` says so once in its log and turns not-ready; with
  ``exit_after_unreachable_s`` it exits (:meth:`Health.beat` raises).

Whether the cluster is reachable comes from librdkafka's own statistics (``stats_cb``, once a
second): a broker connection in state ``UP``. Pass :meth:`Health.client_settings` to a client.

>>> from driftline.testing import ManualClock
>>> clock = ManualClock()
>>> health = Health(unreachable_after_s=10, stall_after_s=60, clock=clock)
>>> health.set("assigned", False, "waiting for partitions")
>>> health.on_stats('{"brokers": {"b1": {"nodeid": 1, "state": "UP"}}}')
>>> health.ready()
(False, {'live': 'ok', 'cluster': 'ok', 'assigned': 'waiting for partitions'})
>>> health.set("assigned", True)
>>> health.ready()[0]
True
>>> health.on_stats('{"brokers": {"b1": {"nodeid": 1, "state": "DOWN"}}}'); clock.advance(11)
>>> health.beat(); health.ready()
(False, {'live': 'ok', 'cluster': 'unreachable for 11s', 'assigned': 'ok'})
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from driftline.config import Http
from driftline.errors import KafkaUnavailableError

log = logging.getLogger(__name__)


class Health:
    """What a service knows of its own health; updated by its loop and its Kafka clients."""

    def __init__(
        self,
        unreachable_after_s: float = 15.0,
        stall_after_s: float = 120.0,
        exit_after_unreachable_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unreachable_after_s = unreachable_after_s
        self.stall_after_s = stall_after_s
        self.exit_after_unreachable_s = exit_after_unreachable_s
        self._clock = clock
        self._lock = threading.Lock()
        self._checks: dict[str, tuple[bool, str]] = {}
        self._last_beat = clock()
        self._down_since: float | None = None
        self._said_unreachable = False
        self._working: str | None = None

    @classmethod
    def from_settings(cls, http: Http) -> Health:
        """From the ``http`` section of :class:`~driftline.config.Settings`."""
        return cls(http.unreachable_after_s, http.stall_after_s, http.exit_after_unreachable_s)

    # -- what the service reports ----------------------------------------------------------------

    def set(self, check: str, ok: bool, detail: str = "") -> None:
        with self._lock:
            self._checks[check] = (ok, detail or ("ok" if ok else "failing"))

    def beat(self) -> None:
        """The loop turned. Logs (once) when the cluster has been unreachable too long, and raises
        :class:`KafkaUnavailableError` once it has been for ``exit_after_unreachable_s``."""
        now = self._clock()
        self._last_beat = now
        down = self.unreachable_for(now)
        if down >= self.unreachable_after_s and not self._said_unreachable:
            self._said_unreachable = True
            log.error("cannot reach the Kafka cluster for %.0fs: not ready until it returns", down)
        if self.exit_after_unreachable_s and down >= self.exit_after_unreachable_s:
            raise KafkaUnavailableError(
                f"The Kafka cluster was unreachable for {down:.0f}s (exit_after_unreachable_s); "
                "check the brokers and the network, then start the service again."
            )

    @contextlib.contextmanager
    def working(self, what: str) -> Iterator[None]:
        """A long job in the loop (training): live while it runs, though the loop does not turn."""
        self._working = what
        try:
            yield
        finally:
            self._working = None
            self.beat()

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: the cluster is reachable while some broker connection is UP."""
        brokers = json.loads(stats_json).get("brokers", {}).values()
        up = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers)
        now = self._clock()
        if up:
            if self._said_unreachable:
                log.warning("the Kafka cluster is reachable again")
            self._down_since, self._said_unreachable = None, False
        elif self._down_since is None:
            self._down_since = now

    def client_settings(self) -> dict[str, Any]:
        """librdkafka settings that feed :meth:`on_stats` once a second."""
        return {"statistics.interval.ms": 1000, "stats_cb": self.on_stats}

    # -- what the endpoints answer ---------------------------------------------------------------

    def unreachable_for(self, now: float | None = None) -> float:
        since = self._down_since
        return 0.0 if since is None else (self._clock() if now is None else now) - since

    def live(self) -> tuple[bool, str]:
        idle = self._clock() - self._last_beat
        if self._working is not None:
            return True, f"working: {self._working}"
        if idle > self.stall_after_s:
            return False, f"the loop has not turned for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, dict[str, str]]:
        live, why = self.live()
        down = self.unreachable_for()
        report = {
            "live": why,
            "cluster": "ok" if down < self.unreachable_after_s else f"unreachable for {down:.0f}s",
        }
        ok = live and down < self.unreachable_after_s
        with self._lock:
            for check, (passing, detail) in self._checks.items():
                report[check] = detail
                ok = ok and passing
        return ok, report


def serve_endpoints(
    port: int, host: str, registry: CollectorRegistry, health: Health | None = None
) -> ThreadingHTTPServer:
    """``/metrics``, ``/livez`` and ``/readyz`` on ``host:port``, in a daemon thread."""
    if health is not None:
        gauge = Gauge("driftline_ready", "1 while the service is ready (see /readyz).", registry=registry)
        gauge.set_function(lambda: float(health.ready()[0]))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/livez", "/readyz") and health is not None:
                if path == "/livez":
                    ok, detail = health.live()
                    body: Any = {"live": detail}
                else:
                    ok, body = health.ready()
                self._answer(200 if ok else 503, json.dumps(body).encode(), "application/json")
            else:
                self._answer(404, b"not found: try /metrics, /livez or /readyz\n", "text/plain")

        def _answer(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # health checks every few seconds would flood the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="driftline-http", daemon=True).start()
    return server


class Watchdog:
    """Ends the process when its loop is stuck inside a Kafka call that ignores its timeout.

    librdkafka can block a transactional call for good when a coordinator dies (seen with
    ``send_offsets_to_transaction`` after a SIGKILLed broker; librdkafka issues #5456, #5511). Python
    cannot interrupt a C call, so a thread watches the loop: when it has not turned for
    ``stall_after_s``, or not finished ``grace_s`` after a stop was asked, the watchdog logs why and
    exits with code 70. Nothing past the stuck batch was committed, so it is replayed after the
    restart (the process manager's, or docker-compose's ``restart: unless-stopped``).

    >>> from driftline.testing import ManualClock
    >>> clock, exits = ManualClock(), []
    >>> health = Health(stall_after_s=60, clock=clock)
    >>> dog = Watchdog(health, threading.Event(), grace_s=30, exit=exits.append, clock=clock)
    >>> clock.advance(61); dog.check(); exits
    [70]
    """

    EXIT_CODE = 70

    def __init__(
        self,
        health: Health,
        stop: threading.Event,
        grace_s: float,
        exit: Callable[[int], object] = os._exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._health, self._stop, self._grace = health, stop, grace_s
        self._exit, self._clock = exit, clock
        self._stopped_at: float | None = None
        self._done = threading.Event()

    def check(self) -> None:
        """One look at the loop (the thread does this every second)."""
        now = self._clock()
        if self._stop.is_set() and self._stopped_at is None:
            self._stopped_at = now
        live, why = self._health.live()
        if not live:
            self._give_up(f"{why}: stuck in a Kafka call")
        elif self._stopped_at is not None and now - self._stopped_at > self._grace:
            self._give_up(f"not stopped {now - self._stopped_at:.0f}s after the stop was asked")

    def _give_up(self, why: str) -> None:
        log.critical(
            "%s; exiting with code %d without committing: the batch in hand is replayed after a restart",
            why,
            self.EXIT_CODE,
        )
        logging.shutdown()
        self._exit(self.EXIT_CODE)

    def start(self) -> Watchdog:
        threading.Thread(target=self._watch, name="driftline-watchdog", daemon=True).start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(1.0):
            self.check()

    def close(self) -> None:
        self._done.set()
