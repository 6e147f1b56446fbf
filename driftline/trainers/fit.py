"""Fit a registered architecture on a labelled matrix.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(400, 2)).astype(np.float32)
>>> y = (x[:, 0] > 0).astype(np.int64)
>>> res = fit_classifier(x, y, features=["a", "b"], classes=["neg", "pos"], name="toy", version="1",
...                      architecture="logistic", epochs=30, lr=0.05, device="cpu")
>>> res.config.metrics["holdout_accuracy"] > 0.9
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from driftline.models.architectures import MLP, Logistic
from driftline.models.artifact import ModelConfig, build_module
from driftline.models.runtime import resolve_device
from driftline.monitoring.profile import ReferenceProfile

PROFILE_MIN_ROWS = 200
"""Fewest held-out rows for a reference profile (its sketches have 16 bins)."""


@dataclass(frozen=True)
class FitResult:
    config: ModelConfig
    module: nn.Module
    reference_profile: str | None = None
    """JSON :class:`~driftline.monitoring.profile.ReferenceProfile` of the held-out rows, for the
    drift monitor (``None`` when there are too few)."""


def fit_classifier(
    x: npt.NDArray[np.float32],
    y: npt.NDArray[np.int64],
    *,
    features: Sequence[str],
    classes: Sequence[str],
    name: str,
    version: str,
    architecture: str = "mlp",
    params: dict[str, Any] | None = None,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 3e-3,
    holdout: float = 0.2,
    seed: int = 0,
    device: str = "auto",
    on_epoch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train with Adam on shuffled mini-batches; report accuracy on a held-out tail of the data."""
    torch.manual_seed(seed)
    config = ModelConfig(
        name=name,
        version=version,
        architecture=architecture,
        features=list(features),
        classes=list(classes),
        params=params or {},
    )
    dev = resolve_device(device)
    split = int(len(x) * (1 - holdout))
    xt, yt = torch.from_numpy(x[:split]), torch.from_numpy(y[:split])
    module = build_module(config)
    if isinstance(module, MLP | Logistic):
        module.standardize.fit(xt)
    module.to(dev).train()
    xt, yt = xt.to(dev), yt.to(dev)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen).to(dev)
        total = 0.0
        for start in range(0, len(xt), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if on_epoch is not None:
            on_epoch(epoch, total / max(1, len(xt)))
    module.eval()
    metrics = {"train_rows": float(split)}
    profile = None
    if split < len(x):
        with torch.inference_mode():
            scores = torch.softmax(module(torch.from_numpy(x[split:]).to(dev)), dim=1).cpu().numpy()
        metrics["holdout_accuracy"] = float((scores.argmax(axis=1) == y[split:]).mean())
        if len(x) - split >= PROFILE_MIN_ROWS:
            profile = ReferenceProfile.from_training(x[split:], scores, list(features), y[split:]).to_json()
    config = config.model_copy(update={"metrics": metrics})
    return FitResult(config, module.cpu(), profile)
