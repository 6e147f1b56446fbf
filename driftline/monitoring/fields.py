"""The per-field detectors of a model with a spec: data quality and categorical drift.

:class:`FieldChecks` holds, for one live version, a :class:`~driftline.monitoring.quality.FieldRates`
per problem (null values of every input field; numeric values outside the reference range; unseen
categories) and a :class:`~driftline.monitoring.categorical.CategoryDrift` over the categorical
fields, and turns a batch of rows into each one's input. The reference levels come from the version's
profile where it has them (null rates, category shares, the range of each numeric field; older
classifiers' profiles: the range of their feature sketches), else the rates are held against 0 and
the range and category checks that need a reference are left out.

>>> from driftline.models.spec import InputField, ModelSpec, Regression
>>> spec = ModelSpec(inputs=[InputField(name="tip", nullable=True, impute=0.0),
...                          InputField(name="country", kind="categorical", categories=["DE", "FR"])],
...                  task=Regression(target="minutes"))
>>> checks = FieldChecks.build(spec, None)
>>> [(issue, rates.names) for issue, rates in checks.rates]
[('null', ('tip', 'country')), ('unseen-category', ('country',))]
>>> checks.observe(np.zeros((300, 1)), np.ones((300, 1), np.int64), np.ones((300, 2), bool))
>>> [(issue, field) for issue, field, rate in checks.gauges() if rate == 1.0]
[('null', 'tip'), ('null', 'country')]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from driftline.models.spec import ModelSpec
from driftline.monitoring.categorical import CategoryDrift
from driftline.monitoring.profile import Profile, ReferenceProfile
from driftline.monitoring.quality import NULLS, OUT_OF_RANGE, UNSEEN, FieldRates, quality_flags


@dataclass
class FieldChecks:
    """Data quality and categorical drift of one version's input fields."""

    rates: list[tuple[str, FieldRates]]
    """(issue, detector): nulls always, out of range and unseen categories where they apply."""
    categories: CategoryDrift | None
    numeric_inputs: list[int]
    categorical_inputs: list[int]
    ranged: list[int]
    """The numeric columns checked against the reference range, with their bounds."""
    low: list[float]
    high: list[float]

    @classmethod
    def build(cls, spec: ModelSpec, profile: Profile | None) -> FieldChecks:
        inputs = list(spec.inputs)
        numeric = [i for i, f in enumerate(inputs) if f.kind != "categorical"]
        categorical = [i for i, f in enumerate(inputs) if f.kind == "categorical"]
        refs = [profile.field(f.name) if profile is not None else None for f in inputs]
        rates = [(NULLS, FieldRates([f.name for f in inputs], [r.null_rate if r else 0.0 for r in refs]))]
        ranged: list[int] = []
        low: list[float] = []
        high: list[float] = []
        for j, i in enumerate(numeric):  # each numeric field's range on the reference rows
            ref = refs[i]
            if inputs[i].kind == "numeric" and ref is not None and None not in (ref.low, ref.high):
                ranged.append(j)
                low.append(float(ref.low or 0.0))
                high.append(float(ref.high or 0.0))
        scored = profile if isinstance(profile, ReferenceProfile) else None  # older: the sketches' ranges
        same = scored is not None and [inputs[i].name for i in numeric] == list(scored.feature_names)
        if not ranged and scored is not None and same:
            ranged = [j for j, i in enumerate(numeric) if inputs[i].kind == "numeric"]
            low, high = [scored.features[j].low for j in ranged], [scored.features[j].high for j in ranged]
        if ranged and profile is not None:
            outside = 2.0 / (profile.n + 1)  # a new value from the reference falls outside its range so often
            names = [inputs[numeric[j]].name for j in ranged]
            rates.append((OUT_OF_RANGE, FieldRates(names, [outside] * len(ranged))))
        if categorical:
            unseen = [r.unseen_rate if (r := refs[i]) else 0.0 for i in categorical]
            rates.append((UNSEEN, FieldRates([inputs[i].name for i in categorical], unseen)))
        shares = [r for i in categorical if (r := refs[i]) and len(r.codes) == len(inputs[i].categories) + 1]
        fits = profile is not None and categorical and len(shares) == len(categorical)
        categories = CategoryDrift(shares, profile.n) if fits and profile is not None else None
        return cls(rates, categories, numeric, categorical, ranged, low, high)

    def flags(
        self, numeric: npt.ArrayLike, codes: npt.ArrayLike, nulls: npt.ArrayLike | None
    ) -> list[npt.NDArray[np.bool_]]:
        """Each rate detector's input for a batch of rows (in the order of :attr:`rates`)."""
        f = quality_flags(
            numeric,
            codes,
            nulls,
            self.numeric_inputs,
            self.categorical_inputs,
            self.ranged,
            self.low,
            self.high,
        )
        by_issue = {NULLS: f.nulls, OUT_OF_RANGE: f.out_of_range, UNSEEN: f.unseen}
        return [by_issue[issue] for issue, _ in self.rates]

    def observe(self, numeric: npt.ArrayLike, codes: npt.ArrayLike, nulls: npt.ArrayLike | None) -> None:
        """Feed a batch to every detector (the monitor feeds them itself, to raise alerts)."""
        for (_, rates), flags in zip(self.rates, self.flags(numeric, codes, nulls), strict=True):
            rates.update_batch(flags)
        if self.categories is not None:
            self.categories.update_batch(codes)

    def gauges(self) -> list[tuple[str, str, float]]:
        """(issue, field, recent rate) of every field and problem, for Prometheus (NaN before any)."""
        return [
            (issue, name, float(rate))
            for issue, rates in self.rates
            for name, rate in zip(rates.names, rates.rates, strict=True)
        ]
