"""The training area: fitting models on labelled data (GPU when present), never inside a processor."""

from driftline.trainers.bootstrap import bootstrap_model
from driftline.trainers.fit import FitResult, fit_classifier

__all__ = ["FitResult", "bootstrap_model", "fit_classifier"]
