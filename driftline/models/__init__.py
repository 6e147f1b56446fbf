"""Models: a registry of architectures, safetensors artifacts and the batched-inference contract."""

from driftline.models.artifact import ModelConfig, build_module, load_artifact, save_artifact
from driftline.models.runtime import Predictor, TorchPredictor, resolve_device

__all__ = [
    "ModelConfig",
    "Predictor",
    "TorchPredictor",
    "build_module",
    "load_artifact",
    "resolve_device",
    "save_artifact",
]
