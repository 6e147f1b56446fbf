"""Following the registry while serving: new versions are fetched, verified, loaded and warmed up in a
background thread, then handed to the serving loop, which swaps them in between two batches.

The watcher reads the registry through a :class:`~driftline.models.follower.RegistryFollower` for its
model (from the beginning: no local state; records that do not verify are left out). Whenever the live
or shadow version differs from the one it last prepared, it prepares the new one and offers a
:class:`Handoff`. Anything that fails (signature, hash, chunks, mismatch between record and artifact)
is refused: logged, counted, written to the audit topic, and the processor keeps what it serves.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from driftline.config import Settings
from driftline.errors import DriftlineError, VerificationError
from driftline.models.control import materialize
from driftline.models.follower import Refusal, RegistryFollower, log_refusal
from driftline.models.registry import Record
from driftline.models.runtime import Predictor, load_predictor
from driftline.streams.audit import AuditLog

log = logging.getLogger(__name__)

Role = Literal["live", "shadow"]


@dataclass(frozen=True)
class Handoff:
    """A version ready to serve (or, for a shadow with no predictor, the end of shadowing)."""

    role: Role
    predictor: Predictor | None
    record: Record | None
    control_offset: int
    control_time_ms: int
    """Broker timestamp of the record that asked for this version (wall-clock milliseconds)."""
    load_seconds: float


class ModelWatcher:
    """Follows the registry topic for one model in a daemon thread."""

    def __init__(
        self,
        settings: Settings,
        model_name: str,
        trusted_keys: Mapping[str, bytes],
        audit: AuditLog,
        *,
        device: str = "auto",
        on_refused: Callable[[str], None] | None = None,
        poll_seconds: float = 0.2,
    ) -> None:
        self.settings = settings
        self.model_name = model_name
        self._trusted = dict(trusted_keys)
        self.audit = audit
        self._device = device
        self._on_refused = on_refused
        self._poll = poll_seconds
        self._prepared: dict[Role, tuple[str, str] | None] = {"live": None, "shadow": None}
        """(version, sha256) last prepared or refused per role, so a version is tried once."""
        self._handoffs: list[Handoff] = []
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._workdir = tempfile.TemporaryDirectory(prefix="driftline-models-")
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    # -- the serving loop's side ------------------------------------------------------------------

    def start(self) -> ModelWatcher:
        self._thread.start()
        return self

    def wait_caught_up(self, timeout: float = 60.0) -> None:
        """Block until the registry has been read up to where it ended at start-up."""
        if not self._caught_up.wait(timeout):
            self._raise_failure()
            raise VerificationError(
                "registry-timeout",
                f"{self.settings.topics.model_versions} was not read to its end within {timeout:.0f}s",
            )
        self._raise_failure()

    def take(self) -> list[Handoff]:
        """The handoffs prepared since the last call (oldest first); cheap enough for every batch."""
        if not self._handoffs:
            self._raise_failure()
            return []
        with self._lock:
            ready, self._handoffs = self._handoffs, []
        return ready

    def requeue(self, handoffs: list[Handoff]) -> None:
        """Put taken handoffs back, ahead of newer ones."""
        with self._lock:
            self._handoffs[:0] = handoffs

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._workdir.cleanup()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise DriftlineError(f"the model watcher stopped: {self._failure}") from self._failure

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        follower: RegistryFollower | None = None
        try:
            follower = RegistryFollower.connect(
                self.settings,
                self._trusted,
                model_name=self.model_name,
                on_refused=self._refused,
                group_id=f"driftline-watcher-{self.model_name}",
            )
            follower.catch_up(timeout=60)
            while not self._stop.is_set():
                self._reconcile(follower)
                self._caught_up.set()
                follower.read(self._poll)
        except BaseException as exc:  # surfaced in the serving loop by take()
            log.exception("model watcher failed")
            self._failure = exc
            self._caught_up.set()
        finally:
            if follower is not None:
                follower.close()

    def _refused(self, refusal: Refusal) -> None:
        if refusal.record is None:  # not a version of anything: nothing to count or audit
            log_refusal(refusal)
        else:
            self.refuse(refusal.offset, refusal.version, refusal.reason, refusal.detail)

    def _reconcile(self, follower: RegistryFollower) -> None:
        state = follower.ledger.state(self.model_name)
        self._prepare(follower, "live", state.live)
        self._prepare(follower, "shadow", state.shadow)

    def _prepare(self, follower: RegistryFollower, role: Role, record: Record | None) -> None:
        identity = None if record is None else (str(record["version"]), str(record["sha256"]))
        if identity == self._prepared[role]:
            return
        self._prepared[role] = identity
        if record is None:
            if role == "shadow":
                self._offer(Handoff("shadow", None, None, -1, int(time.time() * 1000), 0.0))
            else:
                log.warning("%s has no live version on the registry; serving what is loaded", self.model_name)
            return
        origin, started = follower.origin(record), time.monotonic()
        try:
            directory = Path(self._workdir.name) / f"{record['version']}-{record['sha256'][:12]}"
            predictor = load_predictor(materialize(self.settings, record, directory), self._device)
            predictor.warm_up()
        except VerificationError as exc:
            self.refuse(origin.offset, str(record["version"]), exc.reason, exc.detail)
            return
        except DriftlineError as exc:  # an artifact that does not load is refused like a forged one
            self.refuse(origin.offset, str(record["version"]), "bad-artifact", str(exc))
            return
        except Exception as exc:  # an artifact is untrusted input: whatever it makes a loader raise,
            log.exception("loading %s v%s failed unexpectedly", self.model_name, record["version"])
            self.refuse(origin.offset, str(record["version"]), "bad-artifact", f"{type(exc).__name__}: {exc}")
            return  # serving goes on with what is loaded
        handoff = Handoff(
            role, predictor, record, origin.offset, origin.timestamp_ms, time.monotonic() - started
        )
        self._offer(handoff)

    def _offer(self, handoff: Handoff) -> None:
        with self._lock:
            self._handoffs.append(handoff)

    def refuse(self, offset: int, version: str, reason: str, detail: str) -> None:
        """Log, count and audit a refused version; serving goes on with what is loaded."""
        log.error(
            "REFUSED %s v%s (registry offset %d): %s: %s; still serving what was loaded",
            self.model_name,
            version,
            offset,
            reason,
            detail,
        )
        if self._on_refused is not None:
            self._on_refused(reason)
        self.audit.record("REFUSED", self.model_name, version, reason, detail, offset)


def wait_for_live(
    watcher: ModelWatcher, stop: threading.Event, announce_after: float = 2.0
) -> Handoff | None:
    """The first live version, once prepared; ``None`` if ``stop`` is set first. Says once, after
    ``announce_after`` seconds, what it is waiting for and how to provide it."""
    watcher.wait_caught_up()
    started, announced = time.monotonic(), False
    while not stop.is_set():
        handoffs = watcher.take()
        live = [h for h in handoffs if h.role == "live"]
        if live:
            watcher.requeue([h for h in handoffs if h.role == "shadow"])
            return live[-1]
        watcher.requeue(handoffs)
        if not announced and time.monotonic() - started > announce_after:
            log.warning(
                "no live version of %s on %s yet; waiting. Publish one with "
                "`driftline models publish DIR --live` (or `driftline train --once`).",
                watcher.model_name,
                watcher.settings.topics.model_versions,
            )
            announced = True
        stop.wait(0.1)
    return None
