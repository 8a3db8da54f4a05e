"""tools.predict on FITS (labelled and unlabelled) and on records, with the trained run's export."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tao_keras import classes

from conftest import REPO, pack


def predict(model, input_dir, output, *flags):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.predict",
            "--model",
            str(model),
            "--input",
            str(input_dir),
            "--output",
            str(output),
            "--workers",
            "1",
            *flags,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with open(output) as f:
        return list(csv.DictReader(f)), run.stdout


@pytest.fixture(scope="module")
def model_root(trained_run):
    return trained_run / "export" / "taonet_multiclass"


def test_fits_dataset_is_classified_with_metrics(model_root, tiny_survey, tmp_path):
    rows, stdout = predict(model_root, tiny_survey, tmp_path / "p.csv")
    catalog = {
        r["object_id"]: r["label"] for r in csv.DictReader(open(tiny_survey / "catalog.csv"))
    }
    # Every object with at least 3 dates, whatever its date of maximum (a catalog value).
    assert len(rows) == len(catalog) - stdout.count("at least 3 needed")
    assert "skipped" in stdout and "All labelled objects" in stdout and "mean ± std" in stdout
    for row in rows:
        assert row["label"] == catalog[row["object_id"]]
        p = np.array([float(row[f"p_{c}"]) for c in classes.CLASS_NAMES])
        assert abs(p.sum() - 1) < 1e-4 and row["predicted"] == classes.CLASS_NAMES[p.argmax()]
        assert int(row["num_dates"]) >= 3


def test_unlabelled_fits_objects_get_predictions_without_metrics(model_root, tiny_survey, tmp_path):
    survey = tmp_path / "survey"
    shutil.copytree(tiny_survey, survey)
    lines = (survey / "catalog.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("label")
    blanked = [lines[0]] + [
        ",".join("" if i == column else v for i, v in enumerate(line.split(",")))
        for line in lines[1:]
    ]
    (survey / "catalog.csv").write_text("\n".join(blanked) + "\n")
    rows, stdout = predict(model_root, survey, tmp_path / "p.csv")
    assert rows and all(row["label"] == "" for row in rows)
    assert "maximum F1" not in stdout


def test_records_with_a_corrupt_one_are_classified_and_the_bad_one_reported(
    model_root, trained_run, tmp_path
):
    records_dir = json.load(open(trained_run / "config.json"))["records"]
    manifest = json.load(open(os.path.join(records_dir, "dataset.json")))
    shard = os.path.join(records_dir, manifest["splits"]["train"]["shards"][0]["file"])
    good = [s.numpy() for s in tf.data.TFRecordDataset(shard)]
    (tmp_path / "in").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "in" / "objects.tfrecord")) as writer:
        for s in good[:1] + [b"\x00 not an example"] + good[1:]:
            writer.write(s)
    rows, stdout = predict(model_root, tmp_path / "in", tmp_path / "p.csv")
    assert len(rows) == len(good)
    assert "1 object(s) skipped" in stdout
    expected = tf.saved_model.load(str(model_root / "1")).signatures["serialized"](
        records=tf.constant(good)
    )
    got = np.array([[float(r[f"p_{c}"]) for c in classes.CLASS_NAMES] for r in rows])
    np.testing.assert_allclose(got, expected["probabilities"].numpy(), atol=1e-6)


def test_missing_model_is_a_clear_error(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tools.predict", "--model", str(tmp_path), "--input", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0 and "saved_model.pb" in run.stderr


def test_tao_release_files_are_classified_directly(model_root, tmp_path):
    import fitsfiles

    mjds = fitsfiles.four_a_night([0, 30, 61, 90])
    images = [fitsfiles.star_image(64, flux=3000.0, sky=1000.0, seed=i) for i in range(len(mjds))]
    root = tmp_path / "TAO_transients"
    fitsfiles.write_release_object(root / "data" / "SN" / "CSS1:1.fits", "CSS1:1", mjds, images)
    fitsfiles.write_release_object(
        root / "data" / "NON" / "nonCSS:2.fits",
        "nonCSS:2",
        mjds,
        images,
        kind="non-transient",
        header_id="CSS1:1",
    )
    rows, _ = predict(model_root, root, tmp_path / "p.csv")
    assert {(r["object_id"], r["label"], r["num_dates"]) for r in rows} == {
        ("CSS1:1", "SN", "4"),
        ("nonCSS:2", "NT", "4"),
    }


def test_a_truncated_or_corrupted_shard_costs_its_remainder_only(model_root, trained_run, tmp_path):
    records_dir = json.load(open(trained_run / "config.json"))["records"]
    manifest = json.load(open(os.path.join(records_dir, "dataset.json")))
    paths = [os.path.join(records_dir, s["file"]) for s in manifest["splits"]["train"]["shards"]]
    good = [s.numpy() for s in tf.data.TFRecordDataset(paths)]
    assert len(good) >= 4
    (tmp_path / "in").mkdir()
    whole, cut, flipped = (tmp_path / "in" / f"{n}.tfrecord" for n in ("a-whole", "b-cut", "c-crc"))
    for path, records in ((whole, good[:2]), (cut, good[:3]), (flipped, good[:3])):
        with tf.io.TFRecordWriter(str(path)) as writer:
            for s in records:
                writer.write(s)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - len(good[2]) // 2])  # the third record cut in half
    data = bytearray(flipped.read_bytes())
    data[-len(good[2]) // 2] ^= 0x01  # a bit flip inside the last record: its CRC fails
    flipped.write_bytes(bytes(data))
    rows, stdout = predict(model_root, tmp_path / "in", tmp_path / "p.csv")
    assert len(rows) == 2 + 2 + 2  # every record before each fault
    assert "2 shard remainder(s) unreadable" in stdout
    assert "object(s) skipped" not in stdout


def test_first_nights_match_the_update_signature_after_that_night(
    model_root, trained_run, tmp_path
):
    from tfrecords import parser
    from tools import replay_nights

    records_dir = json.load(open(trained_run / "config.json"))["records"]
    manifest = json.load(open(os.path.join(records_dir, "dataset.json")))
    shard = os.path.join(records_dir, manifest["splits"]["train"]["shards"][0]["file"])
    (tmp_path / "in").mkdir()
    shutil.copy(shard, tmp_path / "in" / "objects.tfrecord")
    rows, stdout = predict(model_root, tmp_path / "in", tmp_path / "p.csv", "--nights", "4")
    records = list(parser.read_records([shard]))
    assert "from their first 4 nights" in stdout and len(rows) == len(records)
    assert [int(r["num_dates"]) for r in rows] == [min(4, r.num_dates) for r in records]
    images, mjd, counts = pack(records, pad=0)
    model = tf.saved_model.load(str(model_root / "1"))
    _, history, _ = replay_nights.replay(model, images, mjd, counts)
    got = np.array([[float(r[f"p_{c}"]) for c in classes.CLASS_NAMES] for r in rows])
    np.testing.assert_allclose(got, history[3], atol=1e-5)  # the 4th night's update
