"""Detector runtime state as JSON, for the monitor's checkpoints (nothing is pickled).

Following River's contract, a detector's parameters are its constructor arguments, stored under their
own names, and its runtime state is exactly the attributes that ``_reset()`` assigns. A checkpoint holds
only that state: the parameters, and what the constructor derives from them and from the reference
profile (thresholds, grids, bets), come from the code and configuration of the process that restores
it. So a restart with a recalibrated threshold runs with the new threshold on the old evidence.
The state fields are found without a list per class, by recording what ``_reset()`` assigns on a
copy (so ``_reset()`` must assign its fields anew, never mutate shared objects in place).
Arrays travel as base64 of their bytes with dtype and shape.

Loading is forgiving where it is safe and strict where it is not:

* keys that name no state field but an attribute of the detector (a parameter or something derived
  from one: checkpoints written before this rule carried ``_threshold``) are ignored: the detector
  keeps its own parameters;
* a state that does not fit the detector (a missing or unknown field, an array of another dtype or
  shape, e.g. ``BernoulliGLR(max_window=...)`` changed or a profile with other features) is not
  loaded at all: the detector starts fresh, a warning says why, and the load returns ``False``.

>>> import json
>>> from driftline.monitoring.detectors import BernoulliGLR
>>> a = BernoulliGLR()
>>> _ = a.update_batch(np.random.default_rng(0).random(3000) < 0.3)
>>> saved = json.loads(json.dumps(detector_state(a)))
>>> sorted(saved)
['_cumulative', '_drift_detected', '_errors', '_n', '_statistic']
>>> b = BernoulliGLR(threshold=14.0)
>>> load_detector_state(b, saved)
True
>>> b.n_seen == a.n_seen, b.statistic == a.statistic, b.threshold
(True, True, 14.0)
"""

from __future__ import annotations

import base64
import copy
import functools
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


_ASSIGNED = "__assigned__"


def fresh_state(detector: Any) -> dict[str, Any]:
    """What ``_reset()`` assigns, name by name, run on a shallow copy of ``detector`` (which it leaves
    alone): the runtime state, as it is after a reset."""
    probe = copy.copy(detector)
    probe.__class__ = _recording(detector.__class__)
    probe._reset()
    assigned: dict[str, Any] = vars(probe).get(_ASSIGNED, {})
    return assigned


@functools.cache
def _recording(cls: type) -> type:
    """A subclass of ``cls`` whose instances note every attribute assigned to them (in their own dict)."""
    set_attribute: Any = cls.__setattr__  # the class's own, unbound

    def record(self: Any, name: str, value: Any) -> None:
        vars(self).setdefault(_ASSIGNED, {})[name] = value
        set_attribute(self, name, value)

    return type(f"_Recording{cls.__name__}", (cls,), {"__setattr__": record})


def runtime_fields(detector: Any) -> list[str]:
    """The names of the attributes ``_reset()`` assigns: the detector's runtime state."""
    return list(fresh_state(detector))


def runtime_copy(detector: Any, fields: list[str]) -> dict[str, Any]:
    """A copy of the runtime state, to go back to with :func:`load_detector_state`."""
    return {n: copy.copy(getattr(detector, n)) for n in fields}


def detector_state(detector: Any) -> dict[str, Any]:
    """The runtime state, JSON-ready (no parameters)."""
    return {name: _encode(getattr(detector, name)) for name in runtime_fields(detector)}


def load_detector_state(detector: Any, state: Mapping[str, Any]) -> bool:
    """Set ``detector``'s runtime state from ``state`` and keep its parameters; return whether it was
    loaded (``False``: it did not fit, the detector was reset and a warning logged)."""
    fresh = fresh_state(detector)
    values = {name: _decode(state[name]) for name in fresh if name in state}
    problems = [f"{n} is missing" for n in fresh if n not in state]
    problems += [f"{n} is unknown" for n in state if n not in fresh and not hasattr(detector, n)]
    problems += [
        f"{n} does not fit ({_describe(v)} where {_describe(fresh[n])} is expected)"
        for n, v in values.items()
        if not _fits(v, fresh[n])
    ]
    if problems:
        log.warning(
            "%s starts fresh: its checkpointed state does not fit its parameters (%s)",
            type(detector).__name__,
            "; ".join(problems),
        )
        detector._reset()
        return False
    for name, value in values.items():
        setattr(detector, name, value)
    return True


def _fits(value: Any, fresh: Any) -> bool:
    """Whether a restored value can stand where ``_reset()`` put ``fresh``: an array of the same dtype
    and shape (an axis that ``_reset()`` leaves empty is a buffer and may have any length), a number for
    a number, else a value of the same type."""
    if isinstance(fresh, np.ndarray):
        return (
            isinstance(value, np.ndarray)
            and value.dtype == fresh.dtype
            and value.ndim == fresh.ndim
            and all(n in (0, v) for v, n in zip(value.shape, fresh.shape, strict=True))
        )
    if isinstance(fresh, int | float | np.generic):
        return isinstance(value, int | float | np.generic)
    return type(value) is type(fresh)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {
            "ndarray": base64.b64encode(data.tobytes()).decode(),
            "dtype": data.dtype.str,
            "shape": data.shape,
        }
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "ndarray" in value:
        raw = base64.b64decode(value["ndarray"])
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    return value
