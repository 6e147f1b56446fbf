"""Operators' view: Prometheus metrics for every Driftline service."""

from driftline.monitoring.metrics import BatchHistogram, ServeMetrics

__all__ = ["BatchHistogram", "ServeMetrics"]
