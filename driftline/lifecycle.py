"""SIGTERM and SIGINT, from the first instant of a Driftline process to its last.

:func:`install` runs first thing when the command line is imported, before any heavy import. From
then on a signal is never lost:

- **while a command starts up** (imports, waiting for the cluster, loading a model), and for the whole
  of a one-shot command, the handler raises :class:`Interrupted`, so the work unwinds through its
  ``finally`` blocks and the process exits with 128 + the signal's number and a line saying why;
- **once a service runs its loop**, it calls :func:`stop_event`; from then on a signal only sets that
  event, and the loop finishes its work in hand, commits and leaves (a signal that arrived before is
  kept: the event is already set).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

STOP = threading.Event()
_DEFERRED = threading.Event()
"""Set once a service has taken over the stop: signals then only set :data:`STOP`."""


class Interrupted(BaseException):
    """A signal arrived before the service was ready to finish its work in hand (a ``BaseException``,
    like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        self.name = signal.Signals(signum).name
        super().__init__(self.name)
        self.signum = signum


def _handle(signum: int, _frame: FrameType | None) -> None:
    STOP.set()
    if not _DEFERRED.is_set():
        raise Interrupted(signum)


def exit_interrupted(exc: Interrupted) -> NoReturn:
    """End the process as an interrupted start-up does: one line, exit code 128 + the signal."""
    sys.stderr.write(f"stopped by {exc.name} before the work was done\n")
    sys.exit(128 + exc.signum)


def install() -> None:
    """Handle SIGTERM and SIGINT from now on (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _handle)


def stop_event() -> threading.Event:
    """The event SIGTERM and SIGINT set from now on, instead of interrupting."""
    _DEFERRED.set()
    return STOP
