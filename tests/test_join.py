"""The label join: late and out-of-order labels meet their predictions; strangers expire."""

from __future__ import annotations

import numpy as np

from driftline.monitoring.join import LabelJoin


def test_late_out_of_order_labels_are_joined_with_their_predictions() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    ids = [f"e{i}" for i in range(n)]
    predicted = rng.integers(0, 2, n)
    truth = rng.integers(0, 2, n)
    times = np.arange(n, dtype=np.int64) * 10
    join = LabelJoin(ttl_ms=10**9)
    got: dict[str, tuple[int, int]] = {}
    order = rng.permutation(n)  # labels in random order, some before their prediction is read
    for chunk_p, chunk_l in zip(np.array_split(np.arange(n), 10), np.array_split(order, 10), strict=True):
        for joined in (
            join.add_labels([ids[i] for i in chunk_l], truth[chunk_l], times[chunk_l]),
            join.add_predictions(
                [ids[i] for i in chunk_p], predicted[chunk_p], ["1"] * len(chunk_p), times[chunk_p]
            ),
        ):
            for j, event_id in enumerate(joined.event_ids):
                assert event_id not in got
                got[event_id] = (int(joined.predicted[j]), int(joined.labels[j]))
    assert len(got) == n
    assert all(got[ids[i]] == (predicted[i], truth[i]) for i in range(n))
    assert join.pending == (0, 0)


def test_labels_for_unknown_events_expire_and_memory_stays_bounded() -> None:
    join = LabelJoin(ttl_ms=1000, max_pending=10_000)
    for step in range(50):
        base = step * 1000
        ids = [f"stranger-{base + i}" for i in range(1000)]
        join.add_labels(ids, np.ones(1000, dtype=np.int64), np.arange(base, base + 1000, dtype=np.int64))
        join.expire(now_ms=base + 1000)
        assert sum(join.pending) <= 2000
    assert join.expired >= 48_000


def test_the_cap_bounds_memory_even_with_wrong_event_times() -> None:
    join = LabelJoin(ttl_ms=1000, max_pending=100)
    join.add_predictions(
        [f"p{i}" for i in range(500)], np.zeros(500, dtype=np.int64), ["1"] * 500, np.full(500, 10**15)
    )
    assert join.pending == (100, 0)
    assert join.expired == 400
