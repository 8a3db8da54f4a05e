"""The benchmark suites run: every part of tools.benchmark and every case of
tools.accelerator_benchmark at tiny sizes (numbers, never timed assertions), a failing part
costs only itself, and the protocol projection is the arithmetic it claims."""

import json

import pytest

from tools import accelerator_benchmark

from conftest import run_module


def test_every_benchmark_part_runs_at_tiny_sizes(tmp_path):
    out = tmp_path / "benchmark.json"
    done = run_module("tools.benchmark", "--tiny", "--output_json", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    parts = ["simulation", "conversion", "pipeline", "training_step", "serving", "update"]
    assert list(results) == parts + ["alerts"]
    assert not [name for name, r in results.items() if "error" in r]
    assert results["conversion"]["exposures_per_second"] > 0
    assert results["pipeline"]["sequences_per_second"] > 0
    assert all(c["sequences_per_second"] > 0 for c in results["serving"]["configurations"].values())
    streams = results["alerts"]["configurations"]
    assert sorted(streams) == ["onnx", "savedmodel"]
    assert all(c["packets_per_second"] > 0 and c["packets"] > 100 for c in streams.values())
    for name in ("step:cpu", "serve:cpu", "update:cpu", "pipeline", "alerts:onnx"):
        assert name in done.stdout


def test_a_failing_part_is_reported_and_the_others_still_run(tmp_path):
    out, empty = tmp_path / "benchmark.json", tmp_path / "empty"
    empty.mkdir()
    done = run_module(
        "tools.benchmark",
        "--tiny",
        "--parts",
        "conversion,simulation",
        "--workdir",
        str(empty),
        "--output_json",
        str(out),
    )
    assert done.returncode != 0 and "benchmark parts failed: conversion" in done.stderr
    results = json.loads(out.read_text())["results"]
    assert "error" in results["conversion"]
    assert results["simulation"]["exposures_per_second"] > 0
    assert "FAILED" in done.stdout and "simulation" in done.stdout


def test_accelerator_benchmark_runs_every_case_without_tensorflow_at_tiny_sizes(tmp_path):
    out = tmp_path / "accelerator.json"
    done = run_module(
        "tools.accelerator_benchmark", "--tiny", "--output_json", str(out), timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["device"].startswith("cpu")
    keys = [case.key for case in accelerator_benchmark.tiny_cases()]
    assert list(payload["results"]) == keys
    assert all(r["per_second"] > 0 for r in payload["results"].values())
    assert payload["projection"]["today"]["total"] > 0
    assert "paper schedule at cpu-preset rates" in done.stdout


def _result(stage, batch, per_second, preset="paper"):
    return {
        "preset": preset,
        "stage": stage,
        "precision": "mixed_bfloat16",
        "batch": batch,
        "per_second": per_second,
    }


def test_projection_is_epochs_times_examples_over_measured_rates():
    results = {
        "a": _result("densenet", 64, 1000.0),
        "b": _result("densenet", 512, 2000.0),
        "c": _result("gru_frozen", 32, 300.0),
        "d": _result("joint", 8, 100.0),
        "e": _result("features", 1024, 10_000.0),
        "f": _result("gru_cached", 256, 20_000.0),
    }
    p = accelerator_benchmark.project(results, "paper", 36_000, feature_draws=2)
    # the paper schedule: 60 / 30 / 20 epochs
    assert p["today"]["densenet"] == pytest.approx(60 * 36_000 / 1000 / 3600, abs=1e-3)
    assert p["levers"]["densenet"] == pytest.approx(60 * 36_000 / 2000 / 3600, abs=1e-3)
    assert p["today"]["gru"] == pytest.approx(30 * 36_000 / 300 / 3600, abs=1e-3)
    cached = (2 * 36_000 * 17 / 10_000 + 30 * 36_000 / 20_000) / 3600
    assert p["levers"]["gru"] == pytest.approx(cached, abs=1e-3)
    assert p["today"]["total"] == pytest.approx(
        p["today"]["densenet"] + p["today"]["gru"] + p["today"]["joint"], abs=2e-3
    )
    missing = accelerator_benchmark.project({"a": results["a"]}, "paper", 36_000, 2)
    assert missing["today"]["total"] is None and missing["today"]["joint"] is None
