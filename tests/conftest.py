"""Shared test helpers: REPO (the repository root, for subprocesses), pack (records as a
serving request), and the fixtures of a tiny simulated survey, its conversion, a run trained
on it and that run's SavedModel, built once per test session."""

import json
import os
import subprocess
import sys

import pytest

from tools.conversion import convert
from tools.simulation import survey

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(*args, check=False, timeout=600, env=None):
    """`python -m ARGS` in the repository root, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=check,
        timeout=timeout,
        env=env,
    )


def call_update(served, state, previous_images, previous_mjd, images, mjd, counts):
    """One call of a SavedModel's `update` signature with the inputs cast to its dtypes."""
    from tao_keras import alert_stream

    return alert_stream.call_update(
        served.signatures["update"], state, previous_images, previous_mjd, images, mjd, counts
    )


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


# The trained_run fixture's schedule: every stage for an epoch or two, S=5.
TINY_RUN_FLAGS = (
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
)


@pytest.fixture(scope="session")
def trained_run(tiny_records, tmp_path_factory):
    """trainers.multiclass, all three stages for an epoch or two, on the tiny records (S=5)."""
    records, _ = tiny_records
    out = tmp_path_factory.mktemp("run")
    subprocess.run(
        trainer_command(records, out, *TINY_RUN_FLAGS),
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="session")
def served(trained_run):
    """The trained run's SavedModel (joint stage), loaded."""
    import tensorflow as tf

    return tf.saved_model.load(str(trained_run / "export" / "taonet_multiclass" / "1"))


@pytest.fixture(scope="session")
def objects(trained_run):
    """(records dir, serialized records, decoded records) of the train split, in evaluation
    order."""
    import tensorflow as tf

    from tao_keras import classes
    from tfrecords import manifest as manifest_file
    from tfrecords import parser

    records_dir = json.load(open(trained_run / "config.json"))["records"]
    shards = classes.task_shards(
        manifest_file.load(records_dir), records_dir, "train", "multiclass"
    )
    paths = [p for label in sorted(shards) for p, _ in shards[label]]
    serialized = [s.numpy() for s in tf.data.TFRecordDataset(paths)]
    return records_dir, serialized, [parser.decode(s) for s in serialized]


def pack(records, pad=2):
    """Records -> serving_default inputs, padded with NaN images and zero times beyond each
    object."""
    from tools import replay_nights

    return replay_nights.padded_requests(records, 64, pad)
