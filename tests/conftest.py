"""Shared test helpers: REPO (the repository root, for subprocesses), and the fixtures of a tiny
simulated survey and its conversion, built once per test session."""

import os
import subprocess
import sys

import pytest

from tools.conversion import convert
from tools.simulation import survey

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trainer_command(records, out, *flags, task="multiclass"):
    """The command line of trainers.<task> on `records` into `out`, with more flags."""
    return [
        sys.executable,
        "-m",
        f"trainers.{task}",
        "--data",
        str(records),
        "--output",
        str(out),
        *flags,
    ]


TINY_SURVEY = survey.SurveyConfig(
    num_objects=16,
    seed=7,
    class_mix=tuple((c, 1.0) for c in ("BZ", "AGN", "CV", "OTHER", "SN", "NT")),
    median_nights=7.0,
    missing_max_fraction=0.3,
    few_dates_fraction=0.1,
)


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory):
    """A 16-object simulated survey (uniform classes, some objects made to be dropped)."""
    out = tmp_path_factory.mktemp("survey")
    survey.simulate_survey(str(out), TINY_SURVEY, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_records(tiny_survey, tmp_path_factory):
    """The tiny survey converted with default options; returns (output dir, manifest)."""
    out = tmp_path_factory.mktemp("records")
    manifest = convert.convert(
        [str(tiny_survey)], str(out), convert.ConvertOptions(workers=2), progress=False
    )
    return out, manifest


@pytest.fixture(scope="session")
def trained_run(tiny_records, tmp_path_factory):
    """trainers.multiclass, all three stages for an epoch or two, on the tiny records (S=5)."""
    records, _ = tiny_records
    out = tmp_path_factory.mktemp("run")
    subprocess.run(
        trainer_command(
            records,
            out,
            "--epochs_densenet",
            "2",
            "--epochs_gru",
            "1",
            "--epochs_joint",
            "1",
            "--batch_size",
            "4",
            "--sequence_length",
            "5",
            "--epoch_fraction",
            "0.2",
        ),
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out
