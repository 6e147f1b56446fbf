"""Operators' and users' view: Prometheus metrics, drift detectors, reference profiles and the monitor."""

from driftline.monitoring.detectors import (
    BernoulliGLR,
    DriftDetector,
    ExpectedErrorDrift,
    FeatureDrift,
    FeatureImpactDrift,
    ScoreDrift,
)
from driftline.monitoring.metrics import BatchHistogram, MonitorMetrics, ServeMetrics
from driftline.monitoring.monitor import DriftMonitor, MonitorPolicy
from driftline.monitoring.profile import ReferenceProfile

__all__ = [
    "BatchHistogram",
    "BernoulliGLR",
    "DriftDetector",
    "DriftMonitor",
    "ExpectedErrorDrift",
    "FeatureDrift",
    "FeatureImpactDrift",
    "MonitorMetrics",
    "MonitorPolicy",
    "ReferenceProfile",
    "ScoreDrift",
    "ServeMetrics",
]
