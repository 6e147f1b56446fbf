"""The registry of model architectures an artifact may name.

An artifact's config names one of these; nothing is ever imported or unpickled from an artifact.
Every architecture takes ``n_features`` and ``n_classes`` plus its own keyword parameters, and its
``forward`` maps a float32 ``(batch, n_features)`` tensor to ``(batch, n_classes)`` logits.
Input standardisation lives inside the module (as buffers) so the weights file is self-contained.

>>> net = build("mlp", n_features=3, n_classes=2, hidden=[8])
>>> tuple(net(torch.zeros(5, 3)).shape)
(5, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from driftline.errors import ModelError


class Standardize(nn.Module):
    """``(x - mean) / scale`` with statistics stored as buffers (saved with the weights)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale

    def fit(self, x: torch.Tensor) -> None:
        self.mean.copy_(x.mean(dim=0))
        self.scale.copy_(x.std(dim=0).clamp_min(1e-6))


class MLP(nn.Module):
    """Standardised inputs, ReLU hidden layers, linear output logits."""

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(self.standardize(x))
        return out


class Logistic(nn.Module):
    """Multinomial logistic regression on standardised inputs."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(self.standardize(x))
        return out


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mlp": MLP, "logistic": Logistic}


def build(architecture: str, *, n_features: int, n_classes: int, **params: Any) -> nn.Module:
    """Instantiate a registered architecture."""
    factory = ARCHITECTURES.get(architecture)
    if factory is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ModelError(f"Unknown architecture {architecture!r}; known architectures: {known}.")
    try:
        return factory(n_features=n_features, n_classes=n_classes, **params)
    except TypeError as exc:
        raise ModelError(f"Bad parameters for architecture {architecture!r}: {exc}") from exc
