"""The first model: trained on River's synthetic stream and written as an artifact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from driftline.models import ModelConfig, save_artifact
from driftline.models.control import PROFILE_FILE
from driftline.streams.synthetic import generate
from driftline.trainers.fit import fit_classifier


def bootstrap_model(
    out: Path,
    generator: str = "agrawal",
    *,
    count: int = 20000,
    seed: int = 7,
    epochs: int = 10,
    architecture: str = "mlp",
    name: str | None = None,
    device: str = "auto",
    on_epoch: Callable[[int, float], None] | None = None,
) -> ModelConfig:
    """Fit ``architecture`` on ``count`` rows of ``generator`` and save it to ``out``; return its config."""
    data = generate(generator, count, seed=seed)
    fit = fit_classifier(
        data.x,
        data.y,
        features=data.features,
        classes=data.classes,
        name=name or generator,
        version="1",
        architecture=architecture,
        epochs=epochs,
        device=device,
        on_epoch=on_epoch,
    )
    save_artifact(out, fit.config, fit.module)
    if fit.reference_profile is not None:  # beside the artifact; `models publish` puts it in the record
        (out / PROFILE_FILE).write_text(fit.reference_profile)
    return fit.config
