"""The exported SavedModel: same probabilities as the Keras model through both signatures in a
process that has tensorflow only; metadata; every kind of bad request."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tao_keras import calibration, classes, contract, export
from tao_keras.pipeline import datasets
from tao_keras.training import precision

from conftest import REPO, pack

SEQUENCE_LENGTH = 5  # the trained_run fixture's S


def trained_pipeline(run_dir, stage, batch_size):
    """The evaluation pipeline a stage of the run was scored with (its crop, per-date rule,
    normalization; whole sequences), unaugmented."""
    import dataclasses

    from tao_keras.training import config as train_config
    from tao_keras.training import protocol

    config = train_config.from_dict(json.load(open(run_dir / "config.json")))
    saved = contract.load(run_dir / stage / "contract.json")
    pipeline = protocol.pipeline_config(config, stage, saved)
    return dataclasses.replace(protocol.evaluation_config(pipeline), batch_size=batch_size)


def call_raw(served, images, mjd, num_exposures):
    return served.signatures["serving_default"](
        images=tf.constant(images, tf.float32),
        mjd=tf.constant(mjd),
        num_exposures=tf.constant(num_exposures, tf.int32),
    )


def test_fresh_tensorflow_only_process_reproduces_keras_probabilities(
    trained_run, objects, tmp_path
):
    records_dir, serialized, records = objects
    trained = keras.saving.load_model(str(trained_run / "joint" / "model.keras"), compile=False)
    model = precision.float32_copy(trained)  # what is exported: same weights, float32 compute
    config = trained_pipeline(trained_run, "joint", batch_size=4)
    expected = np.concatenate(
        [
            model(f, training=False)["probabilities"].numpy()
            for f, _ in datasets.evaluation_dataset(records_dir, config, split="train")
        ]
    )
    assert expected.shape == (len(records), 6)
    as_trained = np.concatenate(
        [
            trained(f, training=False)["probabilities"].numpy()
            for f, _ in datasets.evaluation_dataset(records_dir, config, split="train")
        ]
    )
    np.testing.assert_allclose(
        as_trained, expected, atol=0.02
    )  # bfloat16 training compute, if used

    images, mjd, num_exposures = pack(records)
    np.savez(tmp_path / "inputs.npz", images=images, mjd=mjd, num_exposures=num_exposures)
    with tf.io.TFRecordWriter(str(tmp_path / "objects.tfrecord")) as writer:
        for s in serialized:
            writer.write(s)
    model_dir = trained_run / "export" / "taonet_multiclass" / "1"
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tests", "serving_client.py"),
            str(model_dir),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "objects.tfrecord"),
            str(tmp_path / "out.npz"),
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = np.load(tmp_path / "out.npz")
    assert out["loaded"].size == 0
    metadata = json.loads(str(out["metadata"]))
    # served probabilities are the model's, calibrated by the temperature fitted on validation
    expected = calibration.apply_temperature(expected, metadata["calibration"]["temperature"])
    np.testing.assert_allclose(out["raw"], expected, atol=1e-5)
    np.testing.assert_allclose(out["serialized"], expected, atol=1e-5)
    assert list(out["class_name"]) == [classes.CLASS_NAMES[i] for i in expected.argmax(axis=1)]
    assert metadata["task"] == "multiclass" and metadata["class_names"] == list(classes.CLASS_NAMES)
    # trained on at most S dates, served like it was scored: every date, none from a centre
    assert metadata["sequence_length"] is None and metadata["dates_used"] == "all"
    assert metadata["training_config"]["sequence_length"] == SEQUENCE_LENGTH
    assert metadata["schema_version"] == 1
    assert metadata["training_config"]["joint"]["epochs"] == 1


def test_outputs_and_metadata_file(served, objects, trained_run):
    _, _, records = objects
    out = call_raw(served, *pack(records[:3]))
    assert out["probabilities"].shape == (3, 6)
    assert out["class_names"].numpy().shape == (3, 6)
    np.testing.assert_array_equal(out["num_dates"].numpy(), [r.num_dates for r in records[:3]])
    np.testing.assert_array_equal(
        out["class_id"].numpy(), out["probabilities"].numpy().argmax(axis=1)
    )
    asset = (
        trained_run / "export" / "taonet_multiclass" / "1" / "assets.extra" / export.METADATA_FILE
    )
    assert json.loads(asset.read_text()) == json.loads(served.metadata()["json"].numpy())


def test_padding_order_and_empty_exposures_do_not_change_the_answer(served, objects):
    _, _, records = objects
    images, mjd, num_exposures = pack(records[:2], pad=3)
    reference = call_raw(served, images, mjd, num_exposures)["probabilities"].numpy()
    rng = np.random.default_rng(1)
    garbage = images.copy()
    garbage[0, num_exposures[0] :] = rng.normal(1e4, 1e3, garbage[0, num_exposures[0] :].shape)
    changed = mjd.copy()
    changed[0, num_exposures[0] :] = 1e9
    np.testing.assert_allclose(
        call_raw(served, garbage, changed, num_exposures)["probabilities"], reference, atol=1e-6
    )
    order = [rng.permutation(n) for n in num_exposures]  # exposures in any time order
    shuffled_images, shuffled_mjd = images.copy(), mjd.copy()
    for i, p in enumerate(order):
        shuffled_images[i, : len(p)], shuffled_mjd[i, : len(p)] = images[i, p], mjd[i, p]
    np.testing.assert_allclose(
        call_raw(served, shuffled_images, shuffled_mjd, num_exposures)["probabilities"],
        reference,
        atol=1e-6,
    )
    blank = images.copy()  # an all-NaN exposure, not the first of its date: as if absent
    second = int(np.flatnonzero(np.diff(mjd[1, : num_exposures[1]]) < 0.5)[0]) + 1
    blank[1, second] = np.nan
    keep = np.arange(images.shape[1]) != second
    absent_images, absent_mjd = images.copy(), mjd.copy()
    absent_images[1, :-1], absent_mjd[1, :-1] = images[1, keep], mjd[1, keep]
    fewer = num_exposures - np.array([0, 1], np.int32)
    np.testing.assert_allclose(
        call_raw(served, blank, mjd, num_exposures)["probabilities"],
        call_raw(served, absent_images, absent_mjd, fewer)["probabilities"],
        atol=1e-6,
    )


def assert_invalid(served, match, images, mjd, num_exposures):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        call_raw(served, images, mjd, num_exposures)


def test_bad_requests_fail_with_a_message(served, objects):
    _, serialized, records = objects
    images, mjd, num_exposures = pack(records[:2])
    assert_invalid(served, "mjd has shape", images, mjd[:, :-1], num_exposures)
    assert_invalid(served, "num_exposures has 1 rows", images, mjd, num_exposures[:1])
    assert_invalid(served, "must lie in", images, mjd, num_exposures + 100)
    assert_invalid(served, "must lie in", images, mjd, -num_exposures)
    bad_time = mjd.copy()
    bad_time[1, 0] = np.nan
    assert_invalid(served, "batch row 1: mjd has NaN", images, bad_time, num_exposures)
    blank = images.copy()
    blank[0] = np.nan
    assert_invalid(served, "batch row 0: 0 observation date", blank, mjd, num_exposures)
    two_dates = np.searchsorted(records[1].date_index, 2)  # exposures of dates 0 and 1
    assert_invalid(
        served,
        "batch row 1: 2 observation date",
        images,
        mjd,
        np.array([num_exposures[0], two_dates]),
    )
    assert_invalid(
        served,
        r"it must be \[batch, exposures, 64, 64\]",
        images[:, :, :32, :32],
        mjd,
        num_exposures,
    )
    with pytest.raises(tf.errors.InvalidArgumentError):
        served.signatures["serialized"](records=tf.constant([serialized[0], b"not a record"]))


def test_export_cli_versions_and_refuses_triplet_models(trained_run, objects, tmp_path):
    for expected in ("1", "2"):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "tools.export_savedmodel",
                "--run",
                str(trained_run),
                "--output",
                str(tmp_path),
                "--stage",
                "gru",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert (tmp_path / "taonet_multiclass" / expected / "saved_model.pb").exists()
    gru = tf.saved_model.load(str(tmp_path / "taonet_multiclass" / "1"))
    assert (
        json.loads(gru.metadata()["json"].numpy())["sequence_length"] is None
    )  # all dates, padded
    records_dir, serialized, _ = objects
    model = precision.float32_copy(
        keras.saving.load_model(str(trained_run / "gru" / "model.keras"), compile=False)
    )
    config = trained_pipeline(trained_run, "gru", batch_size=5)
    expected = np.concatenate(
        [
            model(f, training=False)["probabilities"].numpy()
            for f, _ in datasets.evaluation_dataset(records_dir, config, split="train")
        ]
    )
    got = gru.signatures["serialized"](records=tf.constant(serialized))["probabilities"].numpy()
    temperature = json.loads(gru.metadata()["json"].numpy())["calibration"]["temperature"]
    fitted = json.load(open(trained_run / "gru" / "scores.json"))["temperature"]
    assert temperature == pytest.approx(fitted)  # the gru stage's own temperature
    np.testing.assert_allclose(got, calibration.apply_temperature(expected, temperature), atol=1e-5)
    densenet_model = keras.saving.load_model(
        str(trained_run / "densenet" / "model.keras"), compile=False
    )
    with pytest.raises(ValueError, match="only TAO-Net"):
        saved = contract.load(trained_run / "densenet" / "contract.json")
        export.export_model(densenet_model, str(tmp_path / "x"), saved)
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.export_savedmodel",
            "--run",
            str(tmp_path),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "config.json" in missing.stderr


def _edited(serialized, **fields):
    """A serialized record with some fields replaced: name -> raw bytes, or a list of ints."""
    example = tf.train.Example.FromString(serialized)
    for name, value in fields.items():
        feature = example.features.feature[name]
        if isinstance(value, bytes):
            feature.bytes_list.value[:] = [value]
        else:
            feature.int64_list.value[:] = list(value)
    return example.SerializeToString()


def _call_records(served, records):
    return served.signatures["serialized"](records=tf.constant(records, tf.string))


def test_serialized_requests_are_checked_like_raw_ones(served, objects):
    _, serialized, records = objects
    good, record = serialized[0], records[0]
    nan_time = record.mjd.copy()
    nan_time[1] = np.nan
    unsorted = record.mjd[::-1].copy()
    blank = np.full_like(record.images, np.nan)
    cases = [
        (
            _edited(good, mjd=nan_time.astype(np.float64).tobytes()),
            "batch row 1: record mjd has NaN",
        ),
        (_edited(good, mjd=unsorted.astype(np.float64).tobytes()), "record mjd is not sorted"),
        (_edited(good, date_index=record.date_index + 1), "date_index does not describe"),
        (_edited(good, num_dates=[record.num_dates + 5]), "date_index does not describe"),
        (_edited(good, images=blank.astype(np.float32).tobytes()), "0 observation date"),
        (_edited(good, mjd=record.mjd[:-1].astype(np.float64).tobytes()), "record has"),
    ]
    for bad, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            _call_records(served, [good, bad])
    with pytest.raises(tf.errors.InvalidArgumentError):
        _call_records(served, [good, b"not a record at all"])


def test_empty_batches_give_empty_outputs(served):
    out = _call_records(served, [])
    assert out["probabilities"].shape == (0, 6) and out["class_name"].shape == (0,)
    out = call_raw(
        served, np.zeros((0, 4, 64, 64), np.float32), np.zeros((0, 4)), np.zeros(0, np.int32)
    )
    assert out["probabilities"].shape == (0, 6) and out["num_dates"].shape == (0,)


def test_large_batches_are_classified_chunk_by_chunk_with_the_same_answers(served, objects):
    _, serialized, _ = objects
    many = (serialized * 19)[:19]  # more than two chunks of 8, the last one partial
    together = _call_records(served, many)["probabilities"].numpy()
    alone = np.concatenate(
        [_call_records(served, [s])["probabilities"].numpy() for s in serialized]
    )
    expected = alone[np.arange(19) % len(serialized)]
    np.testing.assert_allclose(together, expected, atol=1e-5)
