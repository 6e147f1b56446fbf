"""Training recipes: the team's own training code, run by ``driftline train`` (the training area,
never inside serve).

A recipe is a function ``recipe(data, context)`` named by import path (``package.module:function``)
or by an entry point in the group ``driftline.recipes``. It gets the training rows shaped by the
model's :class:`~driftline.models.spec.ModelSpec` (:class:`TrainingData`) and a
:class:`TrainingContext` (the live version's weights to warm-start from, the device, a seed, a
progress callback), and returns a ``torch.nn.Module`` (or :class:`Trained`, a module and metrics).
Driftline does everything else: export to ONNX and the parity check, the evaluation against the
live version on held-out rows by the task's metric, the reference profile, the signature, the
publication and the promotion gate.

>>> import numpy as np
>>> from driftline.models.spec import InputField, ModelSpec, Regression
>>> spec = ModelSpec(inputs=[InputField(name="x", mean=1.0, scale=2.0)], task=Regression(target="y"))
>>> data = TrainingData(spec, np.array([[3.0]], np.float32), np.zeros((1, 0), np.int64),
...                     np.array([1.0]), np.array([0]))
>>> data.inputs()["numeric"].tolist(), data.records()
([[1.0]], [{'x': 3.0}])
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftline.errors import ConfigError
from driftline.models.spec import ModelSpec

ENTRY_POINTS = "driftline.recipes"


@dataclass(frozen=True)
class TrainingData:
    """Labelled rows in event-time order, as the model's contract reads them."""

    spec: ModelSpec
    numeric: npt.NDArray[np.float32]
    """Raw numeric and boolean values (nulls imputed, not standardised), ``(n, numeric fields)``."""
    codes: npt.NDArray[np.int64]
    """Categorical codes, ``(n, categorical fields)``: 0 for unseen or null, ``k`` for ``categories[k-1]``."""
    targets: npt.NDArray[Any]
    """Class indices (classification) or target values (regression)."""
    event_times: npt.NDArray[np.int64]
    windows: list[dict[str, Any]] = field(default_factory=list)
    """Where the rows came from: topic, partition, start and end offsets (the version's lineage)."""

    def __len__(self) -> int:
        return len(self.targets)

    def inputs(self) -> dict[str, npt.NDArray[Any]]:
        """The tensors the model takes, by name (``numeric`` standardised by the spec, ``categorical``)."""
        return self.spec.model_inputs(self.numeric, self.codes)

    def tensors(self, device: Any = "cpu") -> tuple[Any, ...]:
        """:meth:`inputs` as torch tensors in the module's argument order."""
        import torch

        inputs = self.inputs()
        return tuple(torch.from_numpy(inputs[name]).to(device) for name in self.spec.tensor_names)

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts of field names (e.g. ``pandas.DataFrame(data.records())``); categorical
        fields hold their category (None for unseen or null)."""
        numeric = [f.name for f in self.spec.numeric_fields]
        categorical = self.spec.categorical_fields
        out = [dict(zip(numeric, row, strict=True)) for row in self.numeric.tolist()]
        for j, f in enumerate(categorical):
            names = (None, *f.categories)
            for row, code in zip(out, self.codes[:, j].tolist(), strict=True):
                row[f.name] = names[code]
        return out

    def slice(self, start: int, stop: int | None = None) -> TrainingData:
        part = slice(start, stop)
        return TrainingData(
            self.spec,
            self.numeric[part],
            self.codes[part],
            self.targets[part],
            self.event_times[part],
            self.windows,
        )


@dataclass(frozen=True)
class TrainingContext:
    name: str
    version: str
    """The version being trained."""
    device: str
    seed: int
    live_version: str | None = None
    live_weights: Mapping[str, npt.NDArray[Any]] = field(default_factory=dict)
    """The live version's weights by name (an exported graph's initializers carry the module's
    ``state_dict`` names), to warm-start from; empty without a live version."""
    progress: Callable[[float, str], None] = lambda _fraction, _message: None
    """Report progress: the fraction done (0 to 1) and a short message."""

    def warm_start(self, module: Any) -> list[str]:
        """Copy every live weight whose name and shape match into ``module``; return their names."""
        import torch

        state = module.state_dict()
        loaded = {
            name: torch.from_numpy(np.array(value))
            for name, value in self.live_weights.items()
            if name in state and tuple(state[name].shape) == tuple(np.shape(value))
        }
        module.load_state_dict(loaded, strict=False)
        return sorted(loaded)


@dataclass(frozen=True)
class Trained:
    module: Any
    metrics: Mapping[str, float] = field(default_factory=dict)
    """The recipe's own figures (training loss, ...), stored in the record prefixed ``recipe_``."""


Recipe = Callable[[TrainingData, TrainingContext], Any]


def load_recipe(reference: str) -> Recipe:
    """A recipe by ``package.module:function`` or by entry-point name (group ``driftline.recipes``)."""
    if ":" not in reference:
        found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS) if ep.name == reference]
        if not found:
            raise ConfigError(
                f"no recipe {reference!r}: name it as package.module:function, or install a package "
                f"with a {ENTRY_POINTS!r} entry point of that name"
            )
        loaded: Any = found[0].load()
    else:
        module_name, _, attribute = reference.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"recipe {reference!r}: cannot import {module_name!r}: {exc}") from exc
        loaded = getattr(module, attribute, None)
        if loaded is None:
            raise ConfigError(f"recipe {reference!r}: {module_name} has no {attribute!r}")
    if not callable(loaded):
        raise ConfigError(f"recipe {reference!r} is not callable")
    recipe: Recipe = loaded
    return recipe


def run_recipe(recipe: Recipe, data: TrainingData, context: TrainingContext) -> Trained:
    """Call the recipe and check what it returned."""
    import torch

    torch.manual_seed(context.seed)
    out = recipe(data, context)
    trained = out if isinstance(out, Trained) else Trained(out)
    if not isinstance(trained.module, torch.nn.Module):
        raise ConfigError(
            f"a recipe returns a torch.nn.Module or Trained, not {type(trained.module).__name__}"
        )
    return Trained(trained.module.eval().cpu(), {k: float(v) for k, v in trained.metrics.items()})
