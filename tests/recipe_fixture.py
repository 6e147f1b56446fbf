"""A team's own training code, as `driftline train --recipe tests.recipe_fixture:fraud_net` runs it."""

from __future__ import annotations

import torch
from torch import nn

from driftline.trainers.recipe import Trained, TrainingContext, TrainingData

CALLS: list[tuple[str, int, list[str]]] = []
"""(version, rows, warm-started weights) of every call, for the tests."""


class FraudNet(nn.Module):
    def __init__(self, categories: int, numeric: int) -> None:
        super().__init__()
        self.country = nn.Embedding(categories + 1, 3)
        self.hidden = nn.Linear(numeric + 3, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden(torch.cat([numeric, self.country(categorical[:, 0])], dim=1)))
        out: torch.Tensor = self.out(h)
        return out


def fraud_net(data: TrainingData, context: TrainingContext) -> Trained:
    country = data.spec.categorical_fields[0]
    module = FraudNet(len(country.categories), len(data.spec.numeric_fields))
    warm = context.warm_start(module)
    numeric, codes = data.tensors()
    target = torch.from_numpy(data.targets)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.02)
    loss = torch.zeros(())
    for step in range(80):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(module(numeric, codes), target)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        context.progress((step + 1) / 80, "training")
    CALLS.append((context.version, len(data), warm))
    return Trained(module, {"final_loss": float(loss.detach())})
