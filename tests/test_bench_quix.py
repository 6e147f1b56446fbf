"""The Quix Streams contender: its own virtualenv, its per-message scoring, and a bench run in which it
and every other contender answer every event."""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from driftline.bench import quix_env
from driftline.bench.quix_agent import Run, Scorer
from driftline.bench.runner import BenchOptions, measure_throughput
from driftline.config import Settings, load_settings
from driftline.schemas import AvroDecoder, AvroEncoder, builtin_store
from driftline.streams import kafka
from driftline.streams.produce import event_id

EVENTS = 1500


def _pypi_answers() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/quixstreams/", timeout=10):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def quix_python() -> Path:
    """The Quix venv's interpreter, built on first use (needs PyPI or the pip index once)."""
    try:
        return quix_env.ensure_venv(load_settings().cache_dir, print)
    except quix_env.QuixEnvError as exc:
        if not _pypi_answers():
            pytest.skip(f"PyPI is unreachable, so the Quix Streams venv cannot be built: {exc}")
        raise


def test_the_quix_venv_imports_its_own_client_first(quix_python: Path) -> None:
    """quixstreams and its confluent-kafka (< 2.13) come from the Quix venv, driftline from here."""
    versions = quix_env.check(quix_python)
    assert versions["quixstreams"] == quix_env.QUIXSTREAMS_VERSION
    major, minor = (int(part) for part in versions["confluent_kafka"].split(".")[:2])
    assert (major, minor) < (2, 13)


def test_the_apply_callback_scores_one_event_and_skips_junk(model_dir: Path) -> None:
    """What ``sdf.apply(run.handle, metadata=True)`` does per message, without Quix or a broker."""
    store = builtin_store()
    event = AvroEncoder.single_object(store.latest("io.driftline.InputEvent")).encode(
        {"event_id": "e1", "event_time": 7, "features": [1.0] * 9, "source": None}
    )
    where = SimpleNamespace(topic="events", partition=0, offset=3)
    run = Run(Scorer(model_dir), n_events=2, context=lambda: where)
    scored = run.handle(event, b"e1", 7, None)
    assert scored is not None
    assert AvroDecoder(store).decode(scored)["event_id"] == "e1"
    assert run.handle(b"junk", b"e2", 8, None) is None
    assert (run.consumed, run.skipped) == (2, 1)
    assert run.first_in is not None


@pytest.mark.kafka
def test_every_contender_answers_every_event(settings: Settings, model_dir: Path, quix_python: Path) -> None:
    """passthrough, serve, serve --exactly-once, faust, Quix and the monitor, on the same events."""
    run = uuid.uuid4().hex[:6]
    opts = BenchOptions(events=EVENTS, faust_events=EVENTS, quix_events=EVENTS, device="cpu", timeout_s=120)
    figures = measure_throughput(settings, model_dir, opts, run, print, quix_python)
    assert set(figures) == {"passthrough", "serve", "serve_eos", "monitor", "monitor_half", "faust", "quix"}
    for name in ("passthrough", "serve", "serve_eos", "monitor", "faust", "quix"):
        assert figures[name]["events"] == EVENTS, name
        assert figures[name]["eps"] > 0, name
    events = settings.topics.scoped(f"bench-{run}.tput").events
    assert len(kafka.read_topic(settings, f"{events}.passthrough", EVENTS, 30, settle=0.5)) == EVENTS
    decoder, wanted = AvroDecoder(builtin_store()), sorted(event_id(run, i) for i in range(EVENTS))
    for name in ("serve", "serve_eos", "faust", "quix"):
        committed = name == "serve_eos"
        outputs = kafka.read_topic(
            settings, f"{events}.{name}", EVENTS, 30, read_committed=committed, settle=0.5
        )
        assert sorted(decoder.decode(m.value())["event_id"] for m in outputs) == wanted, name
