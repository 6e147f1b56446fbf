"""Driftline's default training recipe: an MLP for any spec (``driftline.trainers.recipes:mlp``).

Numeric inputs are standardised inside the module (statistics of the training rows, kept as buffers,
so they travel with the exported graph), each categorical field gets a small embedding, and the
task decides the head: class logits with cross-entropy, or one value with squared error on a
standardised target. It warm-starts from the live version when that one was trained by this recipe
on the same fields.

>>> import numpy as np
>>> from driftline.models.spec import InputField, ModelSpec, Classification
>>> from driftline.trainers.recipe import TrainingContext, TrainingData
>>> spec = ModelSpec(inputs=[InputField(name="x")], task=Classification(classes=["lo", "hi"]))
>>> x = np.linspace(-1, 1, 200, dtype=np.float32)[:, None]
>>> data = TrainingData(spec, x, np.zeros((200, 0), np.int64), (x[:, 0] > 0).astype(np.int64), np.zeros(200))
>>> trained = mlp(data, TrainingContext("m", "1", "cpu", seed=0))
>>> float(trained.metrics["train_loss"]) < 0.3
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from driftline.models.spec import Classification, ModelSpec
from driftline.trainers.recipe import Trained, TrainingContext, TrainingData

EPOCHS = 20
BATCH = 256
LEARNING_RATE = 3e-3
HIDDEN = (64, 64)


class SpecMLP(nn.Module):
    """Standardised numeric inputs and categorical embeddings into an MLP."""

    mean: torch.Tensor
    scale: torch.Tensor
    target_mean: torch.Tensor
    target_scale: torch.Tensor

    def __init__(self, spec: ModelSpec, hidden: Sequence[int] = HIDDEN) -> None:
        super().__init__()
        self.has_numeric = bool(spec.numeric_fields)
        self.has_categorical = bool(spec.categorical_fields)
        n = len(spec.numeric_fields)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("target_mean", torch.zeros(1))
        self.register_buffer("target_scale", torch.ones(1))
        widths = [max(2, math.ceil(math.sqrt(len(f.categories) + 1))) for f in spec.categorical_fields]
        sizes = [len(f.categories) + 1 for f in spec.categorical_fields]
        self.embeddings = nn.ModuleList(nn.Embedding(k, w) for k, w in zip(sizes, widths, strict=True))
        width = n + sum(widths)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        outputs = len(spec.task.classes) if isinstance(spec.task, Classification) else 1
        layers.append(nn.Linear(width, outputs))
        self.body = nn.Sequential(*layers)
        self.regression = outputs == 1 and not isinstance(spec.task, Classification)

    def run(self, numeric: torch.Tensor | None, categorical: torch.Tensor | None) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        if numeric is not None:
            parts.append((numeric - self.mean) / self.scale)
        if categorical is not None:
            parts += [embedding(categorical[:, j]) for j, embedding in enumerate(self.embeddings)]
        out: torch.Tensor = self.body(torch.cat(parts, dim=1))
        return out * self.target_scale + self.target_mean if self.regression else out

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.run(numeric, categorical)


class _NumericOnly(SpecMLP):
    def forward(self, numeric: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.run(numeric, None)


class _CategoricalOnly(SpecMLP):
    def forward(self, categorical: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.run(None, categorical)


def spec_mlp(spec: ModelSpec, hidden: Sequence[int] = HIDDEN) -> SpecMLP:
    """A :class:`SpecMLP` whose ``forward`` takes exactly the spec's tensors (what ONNX export needs)."""
    if not spec.categorical_fields:
        return _NumericOnly(spec, hidden)
    if not spec.numeric_fields:
        return _CategoricalOnly(spec, hidden)
    return SpecMLP(spec, hidden)


def mlp(data: TrainingData, context: TrainingContext) -> Trained:
    """The default recipe (see the module's docstring)."""
    device = torch.device("cuda" if context.device != "cpu" and torch.cuda.is_available() else "cpu")
    module = spec_mlp(data.spec)
    inputs = data.tensors()
    if module.has_numeric:
        module.mean.copy_(inputs[0].mean(dim=0))
        module.scale.copy_(inputs[0].std(dim=0).nan_to_num(1.0).clamp_min(1e-6))
    regression = module.regression
    target = torch.from_numpy(data.targets.astype("float32" if regression else "int64"))
    if regression:
        module.target_mean.fill_(float(target.mean()))
        module.target_scale.fill_(float(target.std().nan_to_num(1.0).clamp_min(1e-6)))
    warm = context.warm_start(module)
    module.to(device).train()
    inputs = tuple(t.to(device) for t in inputs)
    target = target.to(device)
    optimiser = torch.optim.Adam(module.parameters(), lr=LEARNING_RATE / (3 if warm else 1))
    generator = torch.Generator().manual_seed(context.seed)
    loss_total = 0.0
    for epoch in range(EPOCHS):
        order = torch.randperm(len(target), generator=generator).to(device)
        loss_total = 0.0
        for start in range(0, len(target), BATCH):
            index = order[start : start + BATCH]
            optimiser.zero_grad(set_to_none=True)
            out = module(*(t[index] for t in inputs))
            if regression:
                scaled = (out[:, 0] - module.target_mean) / module.target_scale
                loss = nn.functional.mse_loss(
                    scaled, (target[index] - module.target_mean) / module.target_scale
                )
            else:
                loss = nn.functional.cross_entropy(out, target[index])
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            loss_total += float(loss.detach()) * len(index)
        context.progress((epoch + 1) / EPOCHS, f"epoch {epoch + 1}/{EPOCHS}")
    return Trained(
        module.eval().cpu(),
        {"train_loss": loss_total / max(1, len(target)), "warm_started_weights": float(len(warm))},
    )
