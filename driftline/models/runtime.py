"""Batched inference: one float32 matrix in, one score matrix out.

The model contract is small: :class:`Predictor` has an identity (name, version), the feature names it
needs, its classes, and ``predict_batch``. :class:`TorchPredictor` runs a module under
``torch.inference_mode()`` on CUDA when present, else the CPU.

>>> from driftline.models.artifact import ModelConfig, build_module
>>> cfg = ModelConfig(name="m", version="1", architecture="logistic", features=["a"], classes=["x", "y"])
>>> p = TorchPredictor(cfg, build_module(cfg), device="cpu")
>>> p.predict_batch(np.zeros((4, 1), dtype=np.float32)).shape
(4, 2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from driftline.errors import ModelError
from driftline.models.artifact import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, layout_of, load_artifact

Matrix = npt.NDArray[np.float32]
Codes = npt.NDArray[np.int64]


class Predictor(Protocol):
    """What the stream processor needs from a model."""

    @property
    def config(self) -> ModelConfig: ...

    def predict_batch(self, features: Matrix, codes: Codes | None = None) -> Matrix:
        """Class probabilities ``(len(features), len(config.classes))``; for regression the values
        ``(len(features), 1)``. ``codes`` are the categorical inputs (see :mod:`driftline.models.spec`)."""
        ...

    def warm_up(self, batch_size: int = 64) -> None:
        """Run one batch so the first real batch does not pay for lazy initialisation."""
        ...


def load_predictor(directory: Path, device: str = "auto") -> Predictor:
    """The predictor for an artifact folder of either layout (built-in weights or an exported graph)."""
    if layout_of(directory) == (CONFIG_FILE, WEIGHTS_FILE):
        return TorchPredictor.from_artifact(directory, device)
    from driftline.models.exported import OnnxPredictor  # onnxruntime only when an exported model is served

    return OnnxPredictor.from_artifact(directory, device)


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was requested but no CUDA device is available; use --device cpu.")
    return device


class TorchPredictor:
    """A PyTorch module served in batches."""

    def __init__(self, config: ModelConfig, module: nn.Module, device: str = "auto") -> None:
        self._config = config
        self.device = resolve_device(device)
        self._module = module.to(self.device).eval()
        self._pin = self.device.type == "cuda"

    @classmethod
    def from_artifact(cls, directory: Path, device: str = "auto") -> TorchPredictor:
        config, module = load_artifact(directory)
        return cls(config, module, device)

    @property
    def config(self) -> ModelConfig:
        return self._config

    def predict_batch(self, features: Matrix, codes: Codes | None = None) -> Matrix:
        if features.shape[0] == 0:
            return np.empty((0, len(self._config.classes)), dtype=np.float32)
        with torch.inference_mode():
            x = torch.from_numpy(features)
            if self._pin:
                x = x.pin_memory().to(self.device, non_blocking=True)
            scores = torch.softmax(self._module(x), dim=1)
            out: Matrix = scores.to("cpu").numpy()
        return out

    def warm_up(self, batch_size: int = 64) -> None:
        """Run one batch so the first real batch does not pay for lazy initialisation."""
        self.predict_batch(np.zeros((batch_size, len(self._config.features)), dtype=np.float32))
