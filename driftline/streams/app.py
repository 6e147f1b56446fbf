"""``serve`` as a whole: where the model comes from (the registry, or a local artifact), the watcher's
life, and clean shutdown. The CLI parses options and calls :func:`serve_until_stopped`; tests call it
in a thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from driftline.config import Settings
from driftline.health import Health
from driftline.metrics import ServeMetrics
from driftline.models import Predictor
from driftline.models.control import load_trusted_keys
from driftline.options import ServeOptions
from driftline.streams.audit import AuditLog
from driftline.streams.serve import StreamProcessor, build_processor
from driftline.streams.watcher import ModelWatcher, wait_for_live

log = logging.getLogger("driftline")


def serve_until_stopped(
    settings: Settings,
    options: ServeOptions,
    stop: threading.Event,
    *,
    model_dir: Path | None = None,
    model_name: str | None = None,
    device: str = "auto",
    torch_threads: int = 1,
    schemas: Sequence[Path] = (),
    metrics: ServeMetrics | None = None,
    health: Health | None = None,
    on_started: Callable[[StreamProcessor], None] | None = None,
) -> None:
    """Serve until ``stop`` is set. Without ``model_dir``, the live version of ``model_name`` comes from
    the registry topic and later versions are swapped in as they go live."""
    metrics = metrics or ServeMetrics()
    if health is not None:
        health.set("model", False, "loading the live version" if model_dir is None else "loading")
    watcher: ModelWatcher | None = None
    audit: AuditLog | None = None
    try:
        model: Path | Predictor | None = model_dir
        if model_dir is None:
            audit = AuditLog(settings, "serve", options.instance_id)
            watcher = ModelWatcher(
                settings,
                model_name or settings.model_name,
                load_trusted_keys(settings),
                audit,
                device=device,
                on_refused=lambda reason: metrics.refused.labels(reason).inc(),
            ).start()
            first = wait_for_live(watcher, stop)
            if first is None:
                log.info("stopped before any version went live")
                return
            model = first.predictor
            log.info("loaded %s from the registry (offset %d)", _name(first.predictor), first.control_offset)
        assert model is not None  # a directory, or the registry's live version
        processor = build_processor(
            settings,
            model,
            options,
            device=device,
            torch_threads=torch_threads,
            schemas=schemas,
            metrics=metrics,
            watcher=watcher,
            health=health,
        )
        if on_started is not None:
            on_started(processor)
        cfg = processor.core.predictor.config
        processor.run(
            stop,
            on_ready=lambda: log.info(
                "serving %s v%s from %s to %s (group %s, %s)",
                cfg.name,
                cfg.version,
                settings.topics.events,
                settings.topics.predictions,
                options.group_id,
                "exactly-once" if options.exactly_once else "at-least-once",
            ),
        )
    finally:
        if watcher is not None:
            watcher.stop()
        if audit is not None:
            audit.close()


def _name(predictor: Predictor | None) -> str:
    return "nothing" if predictor is None else f"{predictor.config.name} v{predictor.config.version}"
