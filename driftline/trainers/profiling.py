"""A reference profile for an artifact folder, from labelled events read back from Kafka.

What ``driftline models profile`` runs: the first (or last) ``rows`` records of the events and labels
topics are read and joined as the trainer joins them (:func:`~driftline.trainers.dataset.labelled_rows`),
the model runs on the joined rows, and :func:`~driftline.monitoring.build_profile.reference_profile`
summarises its outputs and errors there. The profile is written beside the artifact, where
``driftline models publish`` puts it into the version's record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from driftline.config import Settings
from driftline.models.artifact import load_config
from driftline.models.control import PROFILE_FILE
from driftline.models.runtime import load_predictor
from driftline.monitoring.build_profile import MIN_ROWS, reference_profile
from driftline.monitoring.profile import Profile
from driftline.streams import kafka
from driftline.trainers.dataset import TrainingDataError, labelled_rows, share_rows


@dataclass(frozen=True)
class BuiltProfile:
    """What :func:`profile_from_topics` wrote, and from what."""

    profile: Profile
    path: Path
    rows: int
    """Labelled rows the profile was built from."""
    unused: Mapping[str, int]
    """Events and labels read but not used, by reason."""


def profile_from_topics(
    settings: Settings,
    directory: Path,
    rows: int = 2000,
    *,
    from_end: bool = False,
    schemas: Sequence[Path] = (),
    timeout: float = 60.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> BuiltProfile:
    """Build and write the reference profile of the artifact at ``directory`` from up to ``rows``
    records of each of the events and labels topics (the first ones, or the last with ``from_end``).
    Raises :class:`~driftline.trainers.dataset.TrainingDataError` when too few events have a label."""
    config = load_config(directory)
    named = settings.model_copy(update={"model_name": config.name})  # the contract's schema name
    t = settings.topics
    data = labelled_rows(
        named,
        held_windows(settings, t.events, rows, from_end),
        held_windows(settings, t.labels, rows, from_end),
        config.spec or list(config.features),
        schemas=schemas,
        timeout=timeout,
        on_progress=on_progress,
    )
    if len(data) < MIN_ROWS:
        why = ", ".join(f"{n} {reason}" for reason, n in data.unused.items()) or "none"
        which = "last" if from_end else "first"
        raise TrainingDataError(
            f"only {len(data)} labelled rows came from the {which} {rows} records of {t.events} and "
            f"{t.labels}, {MIN_ROWS} needed (not used: {why}); send labels for more events, or raise --rows"
        )
    codes = data.codes if data.codes is not None else np.zeros((len(data), 0), dtype=np.int64)
    outputs = load_predictor(directory, "cpu").predict_batch(np.ascontiguousarray(data.x), codes)
    try:
        profile = reference_profile(
            config.input_spec,
            data.x,
            codes,
            outputs,
            data.y,
            nulls=data.nulls,
            with_fields=config.spec is not None,
        )
    except ValueError as exc:
        raise TrainingDataError(f"no reference profile for {directory}: {exc}") from exc
    path = directory / PROFILE_FILE
    path.write_text(profile.to_json())
    return BuiltProfile(profile, path, len(data), dict(data.unused))


def held_windows(settings: Settings, topic: str, rows: int, from_end: bool) -> list[dict[str, Any]]:
    """Windows of the first (or last) ``rows`` records ``topic`` holds now, spread over its partitions
    as :func:`~driftline.trainers.dataset.share_rows` spreads them; none that are still to come."""
    marks = kafka.watermarks(settings, [topic])[topic]
    held = [high - low for low, high in marks.values()]
    sizes = share_rows(min(rows, sum(held)), held)
    return [
        {
            "topic": topic,
            "partition": p,
            "start_offset": high - n if from_end else low,
            "end_offset": high if from_end else low + n,
            "start_time": None,
            "end_time": None,
        }
        for (p, (low, high)), n in zip(marks.items(), sizes, strict=True)
    ]
