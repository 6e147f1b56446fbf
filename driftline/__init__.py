"""Driftline: machine-learning models in production on Kafka.

Events in, batched PyTorch predictions out, with drift monitoring and retraining around them.
"""

__version__ = "0.1.0"
