"""A model version's reference profile from labelled rows and the model's outputs on them.

One function for every place that builds one: ``driftline.export`` (the sample), the trainer (the
held-out rows) and ``driftline models profile`` (labelled events read back from Kafka). The rows come
as the spec reads them: raw numeric values (imputed, not standardised) and categorical codes.

>>> from driftline.models.spec import InputField, ModelSpec, Regression
>>> spec = ModelSpec(inputs=[InputField(name="km"), InputField(name="zone", kind="categorical",
...                  categories=["a", "b"])], task=Regression(target="minutes"))
>>> rng = np.random.default_rng(0)
>>> km, zone = rng.uniform(0, 10, (200, 1)), rng.integers(1, 3, (200, 1))
>>> prof = reference_profile(spec, km, zone, 3 * km, targets=3 * km[:, 0] + rng.normal(0, 1, 200))
>>> round(prof.mae, 1), [f.name for f in prof.fields], prof.fields[1].codes
(0.8, ['km', 'zone'], (0.0, 0.495, 0.505))
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from driftline.models.spec import Classification, ModelSpec
from driftline.monitoring.profile import FieldReference, Profile, ReferenceProfile, RegressionProfile

MIN_ROWS = 32
"""Fewest rows a profile is built from (its sketches have 16 bins)."""


def reference_profile(
    spec: ModelSpec,
    numeric: npt.ArrayLike,
    codes: npt.ArrayLike,
    outputs: npt.ArrayLike,
    targets: npt.ArrayLike | None = None,
    nulls: npt.ArrayLike | None = None,
    with_fields: bool = True,
) -> Profile:
    """The profile of ``spec``'s model from its ``outputs`` on the rows (scores, or ``(n, 1)`` values).

    ``targets``: class indices (optional: without them a classifier's errors are its expected ones)
    or a regression model's true values (required). ``nulls``: which input values were null,
    ``(n, inputs)`` in the spec's order (``None``: unknown, taken as none). ``with_fields``: keep each
    input field's reference (models with a spec; built-in architectures' profiles have none).
    Raises ``ValueError`` when the rows cannot make one."""
    x = np.asarray(numeric, dtype=np.float64)
    c = np.asarray(codes, dtype=np.int64).reshape(len(x), -1)
    if len(x) < MIN_ROWS:
        raise ValueError(f"a reference profile needs at least {MIN_ROWS} rows, {len(x)} given")
    if targets is not None and len(np.asarray(targets)) != len(x):
        raise ValueError(f"{len(np.asarray(targets))} targets for {len(x)} rows")
    profile: Profile
    if isinstance(spec.task, Classification):
        if not spec.numeric_fields:
            raise ValueError("a classifier's reference profile needs numeric inputs")
        names = [f.name for f in spec.numeric_fields]
        profile = ReferenceProfile.from_training(x, outputs, names, targets)
    elif targets is None:
        raise ValueError("a regression model's reference profile needs the targets of its rows")
    else:
        profile = RegressionProfile.from_training(np.asarray(outputs).reshape(len(x), -1)[:, 0], targets)
    fields = field_references(spec, c, nulls, x)
    return dataclasses.replace(profile, fields=fields) if with_fields else profile


def field_references(
    spec: ModelSpec,
    codes: npt.NDArray[np.int64],
    nulls: npt.ArrayLike | None = None,
    numeric: npt.ArrayLike | None = None,
) -> tuple[FieldReference, ...]:
    """Each input field's null rate, each numeric field's range (from ``numeric``, the raw values in
    the order of ``spec.numeric_fields``) and each categorical field's code shares, for the monitor's
    data-quality and categorical-drift checks (``nulls`` unknown: null rates 0)."""
    known = None if nulls is None else np.asarray(nulls, dtype=np.bool_)
    if known is None or known.shape != (len(codes), len(spec.inputs)):
        known = np.zeros((len(codes), len(spec.inputs)), dtype=np.bool_)
    values = None if numeric is None else np.asarray(numeric, dtype=np.float64).reshape(len(codes), -1)
    category = {f.name: j for j, f in enumerate(spec.categorical_fields)}
    number = {f.name: j for j, f in enumerate(spec.numeric_fields)}
    return tuple(
        FieldReference.of_codes(f.name, codes[:, category[f.name]], known[:, i], len(f.categories))
        if f.kind == "categorical"
        else FieldReference.of_values(
            f.name, f.kind, known[:, i], None if values is None else values[:, number[f.name]]
        )
        for i, f in enumerate(spec.inputs)
    )
