"""Driftline: machine-learning models in production on Kafka.

Events in, batched predictions out, with drift monitoring and retraining around them. From Python
(a notebook, a script)::

    import driftline
    spec = driftline.ModelSpec(inputs=[...], task=driftline.Classification(classes=["ok", "fraud"]))
    driftline.export(module, spec, sample_rows, "fraud-1", name="fraud", version="1")
    driftline.publish("fraud-1", live=True)
    client = driftline.Client("fraud")
    client.send(rows)
    client.predictions(len(rows))

Names are imported on first use, so ``import driftline`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelSpec": "driftline.models.spec",
    "InputField": "driftline.models.spec",
    "EventTime": "driftline.models.spec",
    "Classification": "driftline.models.spec",
    "Regression": "driftline.models.spec",
    "export": "driftline.api",
    "publish": "driftline.api",
    "Client": "driftline.api",
    "Settings": "driftline.config",
}
__all__ = [
    "Classification",
    "Client",
    "EventTime",
    "InputField",
    "ModelSpec",
    "Regression",
    "Settings",
    "export",
    "publish",
]

if TYPE_CHECKING:
    from driftline.api import Client as Client
    from driftline.api import export as export
    from driftline.api import publish as publish
    from driftline.config import Settings as Settings
    from driftline.models.spec import Classification as Classification
    from driftline.models.spec import EventTime as EventTime
    from driftline.models.spec import InputField as InputField
    from driftline.models.spec import ModelSpec as ModelSpec
    from driftline.models.spec import Regression as Regression


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'driftline' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
