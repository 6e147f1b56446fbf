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

from pydantic import BaseModel, Field, ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from driftline.errors import ModelError
from driftline.models.architectures import build

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class ModelConfig(BaseModel):
    """What a processor must know to load and serve a model."""

    name: str
    version: str
    architecture: str
    features: list[str] = Field(min_length=1, description="Input feature names, in order.")
    classes: list[str] = Field(min_length=2, description="Class labels, in score order.")
    params: dict[str, Any] = Field(default_factory=dict, description="Architecture parameters.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Evaluation metrics.")


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
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelError(
            f"{directory} is not a model artifact: it needs {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(create one with `driftline models bootstrap`)."
        )
    try:
        return ModelConfig.model_validate(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise ModelError(f"{config_path} is not a valid model config: {exc}") from exc


def load_artifact(directory: Path) -> tuple[ModelConfig, nn.Module]:
    """Read an artifact directory into a config and an eval-mode module on the CPU."""
    config = load_config(directory)
    weights_path = directory / WEIGHTS_FILE
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
    shutil.copyfile(source / WEIGHTS_FILE, target / WEIGHTS_FILE)
    (target / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    return target
