"""Model artifacts: ``config.json`` (architecture, features, classes, identity) + ``model.safetensors``.

Weights are safetensors, never pickle: loading an artifact cannot run code.

>>> import tempfile
>>> cfg = ModelConfig(name="demo", version="1", architecture="logistic", features=["a", "b"],
...                   classes=["no", "yes"])
>>> with tempfile.TemporaryDirectory() as d:
...     _ = save_artifact(Path(d), cfg, build_module(cfg))
...     load_artifact(Path(d))[0].features
['a', 'b']
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from driftline.errors import ModelError
from driftline.models.architectures import build
from driftline.models.spec import ModelSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
PARITY_FILE = "parity.safetensors"
LAYOUTS = ((CONFIG_FILE, WEIGHTS_FILE), (CONFIG_FILE, ONNX_FILE, PARITY_FILE))
"""The two artifact layouts: a built-in architecture's weights, or an exported ONNX graph and its
parity sample (:mod:`driftline.models.exported`)."""


def layout_of(directory: Path) -> tuple[str, ...]:
    """The artifact files ``directory`` holds, or a :class:`ModelError` saying what an artifact is."""
    for layout in LAYOUTS:
        if all((directory / name).is_file() for name in layout):
            return layout
    raise ModelError(
        f"{directory} is not a model artifact: it needs {CONFIG_FILE} and {WEIGHTS_FILE} (a built-in "
        f"architecture, `driftline models bootstrap`) or {ONNX_FILE} and {PARITY_FILE} (your own model, "
        "`driftline.export`)."
    )


class ModelConfig(BaseModel):
    """What a processor must know to load and serve a model."""

    name: str
    version: str
    architecture: str
    features: list[str] = Field(
        min_length=0,
        description="Numeric (and boolean) input names, in the order of the model's numeric matrix.",
    )
    classes: list[str] = Field(description="Class labels, in score order (none for regression).")
    params: dict[str, Any] = Field(default_factory=dict, description="Architecture parameters.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Evaluation metrics.")
    spec: ModelSpec | None = Field(
        None,
        description="The full input and task contract; without one, numeric features and class indices.",
    )

    @model_validator(mode="after")
    def _matches_spec(self) -> ModelConfig:
        spec = self.input_spec
        if self.features != [f.name for f in spec.numeric_fields]:
            raise ValueError(f"features {self.features} disagree with the spec's numeric inputs")
        if spec.outputs and self.classes != list(spec.task.classes):  # type: ignore[union-attr]
            raise ValueError(f"classes {self.classes} disagree with the spec's classes")
        if not spec.outputs and self.classes:
            raise ValueError("a regression model has no classes")
        return self

    @property
    def input_spec(self) -> ModelSpec:
        """The model's contract (for built-in architectures: its numeric features and class indices)."""
        if self.spec is not None:
            return self.spec
        if len(self.features) < 1 or len(self.classes) < 2:
            raise ValueError("a model without a spec needs at least one feature and two classes")
        return ModelSpec.numeric(self.features, self.classes)


def build_module(config: ModelConfig) -> nn.Module:
    return build(
        config.architecture,
        n_features=len(config.features),
        n_classes=len(config.classes),
        **config.params,
    )


def save_artifact(directory: Path, config: ModelConfig, module: nn.Module) -> Path:
    """Write an artifact directory and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    return directory


def load_config(directory: Path) -> ModelConfig:
    """Read and validate an artifact directory's config."""
    layout_of(directory)
    config_path = directory / CONFIG_FILE
    try:
        return ModelConfig.model_validate(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelError(f"{config_path} is not a valid model config: {exc}") from exc


def load_artifact(directory: Path) -> tuple[ModelConfig, nn.Module]:
    """Read an artifact directory into a config and an eval-mode module on the CPU."""
    config = load_config(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelError(f"{directory} holds an exported model ({config.architecture}), not built-in weights")
    module = build_module(config)
    try:
        module.load_state_dict(load_file(str(weights_path)))
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"{weights_path} does not fit architecture {config.architecture!r}: {exc}") from exc
    return config, module.eval()


def copy_as_version(source: Path, target: Path, version: str, name: str | None = None) -> Path:
    """A copy of an artifact under another version (and name): same weights, its own config and hash."""
    config = load_config(source).model_copy(
        update={"version": version, "name": name or load_config(source).name}
    )
    target.mkdir(parents=True, exist_ok=True)
    for file in layout_of(source)[1:]:
        shutil.copyfile(source / file, target / file)
    (target / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    return target
