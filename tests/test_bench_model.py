"""``driftline bench model``: serve against the model's own batch throughput, run tiny."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.config import Settings

pytestmark = pytest.mark.kafka


def test_bench_model_reports_serve_against_the_model_own_throughput(settings: Settings) -> None:
    result = CliRunner().invoke(
        main,
        [
            "-b",
            str(settings.bootstrap_servers),
            "bench",
            "model",
            "--events",
            "3000",
            "--max-batch",
            "500",
            "--width",
            "64",
            "--blocks",
            "1",
            "--seconds",
            "0.3",
            "--device",
            "cuda",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{") :])
    for key in ("model_own_eps", "torch_eager_eps", "serve_eps", "serve_mean_batch", "model_own_gflops"):
        assert figures[key] > 0, key
    assert figures["model"]["flops_per_event"] == 2 * ((16 + 32) * 64 + 2 * 64 * 64 + 64 * 2)
    assert figures["serve_vs_model_own"] == pytest.approx(figures["serve_eps"] / figures["model_own_eps"])
    assert figures["threads"] == 1
    # every stage of serve's loop and every part of process() is there, and they add up
    stages = {"consume", "predict_batch", "process_other", "produce", "delivery"}
    assert set(figures["serve_stages"]) >= stages
    assert sum(figures["serve_stages"].values()) == pytest.approx(1.0)
    assert figures["serve_stages"]["predict_batch"] > 0
    assert sum(figures["process_parts"].values()) == pytest.approx(1.0)
    for part in ("avro_decode", "spec_encode", "model_inputs", "session_run", "encode_predictions"):
        assert figures["process_parts"][part] > 0, part
    # CI has no GPU: the CUDA path says why it was skipped; with one, its figures are there
    if figures["gpu"] is None:
        assert "CUDA" in figures["gpu_skipped"]
    elif "serve_eps" in figures["gpu"]:
        assert figures["gpu"]["serve_vs_model_own"] == pytest.approx(
            figures["gpu"]["serve_eps"] / figures["gpu"]["model_own_eps"]
        )
