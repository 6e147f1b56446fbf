"""Detector runtime state as JSON, for the monitor's checkpoints (nothing is pickled).

Following River's contract, a detector's runtime state is what ``_reset()`` rebuilds; parameters
and anything derived from the reference profile are rebuilt by the constructor. So the state is
found, without a list per class, as the attributes that a reset copy holds other objects for (and
the private scalars).
Arrays travel as base64 of their bytes with dtype and shape.

>>> import json
>>> from driftline.monitoring.detectors import BernoulliGLR
>>> a = BernoulliGLR()
>>> _ = a.update_batch(np.random.default_rng(0).random(3000) < 0.3)
>>> b = BernoulliGLR()
>>> load_detector_state(b, json.loads(json.dumps(detector_state(a))))
>>> b.n_seen == a.n_seen, b.statistic == a.statistic
(True, True)
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from typing import Any

import numpy as np


def runtime_fields(detector: Any) -> list[str]:
    """The names of the attributes ``_reset()`` rebuilds, plus every private scalar (a reset may
    assign a cached small int or ``False`` that looks the same; constant scalars cost nothing)."""
    fresh = copy.copy(detector)
    fresh._reset()
    return [
        n
        for n, v in vars(detector).items()
        if n.startswith("_") and (vars(fresh).get(n) is not v or isinstance(v, int | float | np.generic))
    ]


def runtime_copy(detector: Any, fields: list[str]) -> dict[str, Any]:
    """A copy of the runtime state, to go back to with :func:`load_detector_state`."""
    return {n: copy.copy(getattr(detector, n)) for n in fields}


def detector_state(detector: Any) -> dict[str, Any]:
    """The runtime state, JSON-ready."""
    return {name: _encode(getattr(detector, name)) for name in runtime_fields(detector)}


def load_detector_state(detector: Any, state: Mapping[str, Any]) -> None:
    known = vars(detector)
    for name, value in state.items():
        if name not in known:
            raise ValueError(
                f"{type(detector).__name__} has no state field {name!r}: a checkpoint of other code?"
            )
        setattr(detector, name, _decode(value))


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
