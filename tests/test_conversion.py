"""Simulate -> convert -> parse on a tiny survey: values, counts, splits, shards, determinism,
safety."""

import csv
import filecmp
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from astropy.io import fits
from astropy.wcs import WCS

from tao_keras import classes, splits
from tfrecords import parser
from tools.conversion import convert, shards
from tools.conversion.sources import ObjectSource

from conftest import REPO


def shard_paths(out):
    return sorted(glob.glob(os.path.join(str(out), "*.tfrecord")))


def catalog(survey_dir):
    with open(os.path.join(survey_dir, "catalog.csv")) as f:
        return {row["object_id"]: row for row in csv.DictReader(f)}


def test_round_trip_pixels_times_dates(tiny_survey, tiny_records):
    out, _ = tiny_records
    rows = catalog(tiny_survey)
    records = list(parser.read_records(shard_paths(out)))
    assert records
    for record in records:
        row = rows[record.object_id]
        files = sorted(glob.glob(os.path.join(tiny_survey, "images", record.object_id, "*.fits")))
        headers = [fits.getheader(f) for f in files]
        order = np.argsort([h["MJD-OBS"] for h in headers], kind="stable")
        np.testing.assert_array_equal(record.mjd, [headers[i]["MJD-OBS"] for i in order])
        nights = np.floor(record.mjd)  # simulated nights: all exposures within one UT date
        np.testing.assert_array_equal(record.date_index, np.unique(nights, return_inverse=True)[1])
        for k in (0, len(files) // 2, len(files) - 1):
            path, header = files[order[k]], headers[order[k]]
            raw = fits.getdata(path).astype(np.float32)
            raw[raw == 0] = np.nan  # BLANK = -32768 stored = physical 0
            x, y = WCS(header).world_to_pixel_values(float(row["ra"]), float(row["dec"]))
            x0, y0 = int(np.ceil(x - 32)), int(np.ceil(y - 32))
            np.testing.assert_array_equal(record.images[k], raw[y0 : y0 + 64, x0 : x0 + 64])
        assert classes.CLASS_NAMES[record.label] == row["label"]
        assert record.ra == float(row["ra"]) and record.dec == float(row["dec"])
        if row["max_mjd"]:
            assert record.max_mjd == float(row["max_mjd"]) and not record.max_mjd_estimated
            nearest = np.argmin(np.abs(record.mjd - record.max_mjd))
            assert record.max_date_index == record.date_index[nearest]


def test_counts_equal_catalog_minus_reported_drops(tiny_survey, tiny_records):
    out, manifest = tiny_records
    rows = catalog(tiny_survey)
    dropped = {p["object_id"] for p in manifest["problems"]["objects_dropped"]}
    assert dropped, "the tiny survey is built to have drops (few dates, unobserved maximum)"
    summary = manifest["summary"]
    assert summary["objects_written"] == len(rows) - len(dropped) - summary["rows_rejected"]
    written = {}
    for entry in manifest["splits"].values():
        for name, n in entry["records"].items():
            written[name] = written.get(name, 0) + n
    for name in classes.CLASS_NAMES:
        expected = sum(1 for oid, r in rows.items() if r["label"] == name and oid not in dropped)
        assert written.get(name, 0) == expected
    ids = [r.object_id for r in parser.read_records(shard_paths(out))]
    assert sorted(ids) == sorted(set(rows) - dropped)
    reasons = " ".join(p["reason"] for p in manifest["problems"]["objects_dropped"])
    assert "at least 3 needed" in reasons and "no observation at the date of maximum" not in reasons
    # the simulator's unobserved maxima are kept (nearest date) and listed by distance
    assert manifest["max_date_distance"]["further"]
    assert {f["object_id"] for f in manifest["max_date_distance"]["further"]} <= set(ids)


def test_manifest_describes_every_shard(tiny_records):
    out, manifest = tiny_records
    on_disk = {os.path.basename(p) for p in shard_paths(out)}
    listed = {s["file"] for entry in manifest["splits"].values() for s in entry["shards"]}
    assert on_disk == listed
    for split, entry in manifest["splits"].items():
        total = len(entry["shards"])
        for i, shard in enumerate(entry["shards"]):
            assert shard["file"] == f"{split}-{i:05d}-of-{total:05d}.tfrecord"
            got = list(parser.read_records([os.path.join(out, shard["file"])]))
            assert (
                len(got) == shard["records"]
                and sum(r.num_exposures for r in got) == shard["exposures"]
            )
            assert {classes.CLASS_NAMES[r.label] for r in got} <= {
                shard["class"]
            }  # one class per shard
    assert manifest["schema_version"] == 1 and manifest["roi_size"] == 64
    assert json.load(open(os.path.join(out, "dataset.json"))) == manifest


def test_parser_rejects_wrong_roi_size(tiny_records):
    out, _ = tiny_records
    serialized = next(iter(tf.data.TFRecordDataset(shard_paths(out)[:1])))
    with pytest.raises(tf.errors.InvalidArgumentError, match="roi_size"):
        parser.parse(serialized, roi_size=32)


def test_conversion_is_deterministic_and_independent_of_workers(
    tiny_survey, tiny_records, tmp_path
):
    out, _ = tiny_records
    again = tmp_path / "again"
    convert.convert(
        [str(tiny_survey)], str(again), convert.ConvertOptions(workers=1), progress=False
    )
    names = [os.path.basename(p) for p in shard_paths(out)]
    assert names == [os.path.basename(p) for p in shard_paths(again)]
    match, mismatch, errors = filecmp.cmpfiles(out, again, names, shallow=False)
    assert not mismatch and not errors


def test_fan_out_over_tasks_gives_the_same_shards(tiny_survey, tiny_records, tmp_path):
    out, manifest = tiny_records
    fanned = tmp_path / "fanned"
    for index in (1, 0):
        convert.convert(
            [str(tiny_survey)],
            str(fanned),
            convert.ConvertOptions(workers=1, num_tasks=2, task_index=index),
            progress=False,
        )
    names = [os.path.basename(p) for p in shard_paths(out)]
    assert names == [os.path.basename(p) for p in shard_paths(fanned)]
    assert not filecmp.cmpfiles(out, fanned, names, shallow=False)[1]
    merged = json.load(open(fanned / "dataset.json"))
    assert {s: e["records"] for s, e in merged["splits"].items()} == {
        s: e["records"] for s, e in manifest["splits"].items()
    }
    for key in ("objects_written", "objects_dropped", "exposures_written", "rows_rejected"):
        assert merged["summary"][key] == manifest["summary"][key]


def _sources(label, n):
    return [ObjectSource(f"{label}{i:04d}", label, "catalog", "") for i in range(n)]


def test_split_fractions_follow_the_paper():
    assigned = splits.assign_splits(
        _sources("SN", 100) + _sources("NT", 200), splits.SplitFractions(), seed=3
    )
    counts = {}
    for source, split in assigned:
        counts[(source.label, split)] = counts.get((source.label, split), 0) + 1
    assert counts == {
        ("SN", "test"): 5,
        ("SN", "train"): 67,
        ("SN", "val"): 28,
        ("NT", "test"): 10,
        ("NT", "train"): 114,
        ("NT", "val"): 76,
    }


def test_split_is_seeded_order_free_and_honours_overrides():
    items = _sources("CV", 40) + [ObjectSource("fixed", "CV", "catalog", "", split="test")]
    first = dict(
        (s.object_id, split) for s, split in splits.assign_splits(items, splits.SplitFractions(), 1)
    )
    again = dict(
        (s.object_id, split)
        for s, split in splits.assign_splits(items[::-1], splits.SplitFractions(), 1)
    )
    other = dict(
        (s.object_id, split) for s, split in splits.assign_splits(items, splits.SplitFractions(), 2)
    )
    assert first == again and first != other
    assert first["fixed"] == "test"
    assert sum(v == "test" for v in first.values()) == 1 + 2  # the override plus 5% of 40


def test_small_classes_still_reach_every_split():
    assigned = splits.assign_splits(_sources("BZ", 3), splits.SplitFractions(), 0)
    assert sorted(split for _, split in assigned) == ["test", "train", "val"]


def test_shard_plan_is_per_class_with_minimum_count():
    assigned = splits.assign_splits(
        _sources("SN", 50) + _sources("NT", 450), splits.SplitFractions(), 0
    )
    planned = shards.plan_shards(assigned, records_per_shard=100, min_shards=2)
    train = [s for s in planned if s.split == "train"]
    by_class = {}
    for shard in train:
        by_class.setdefault(shard.class_name, []).append(len(shard.object_ids))
    # SN: 3 test, 33 of the other 47 to train -> 2 shards (the minimum);
    # NT: 23 test, 256 of 427 -> 3
    assert by_class == {"SN": [17, 16], "NT": [86, 85, 85]}
    assert [s.index for s in train] == list(range(5)) and {s.total for s in train} == {5}


def test_exception_mid_conversion_leaves_only_complete_shards(tiny_survey, tmp_path, monkeypatch):
    from tfrecords import writer

    calls = {"n": 0}
    real_encode = writer.encode

    def failing_encode(record):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("disk full")
        return real_encode(record)

    monkeypatch.setattr(writer, "encode", failing_encode)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        convert.convert(
            [str(tiny_survey)], str(out), convert.ConvertOptions(workers=1), progress=False
        )
    assert not glob.glob(str(out / ".*"))  # the temporary shard was removed
    assert not (out / "dataset.json").exists()
    for path in shard_paths(out):  # finished shards are whole
        assert len(list(parser.read_records([path]))) >= 1


def test_killed_conversion_never_leaves_a_partial_shard(tiny_survey, tiny_records, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "tools.fits_to_tfrecords",
        "--input",
        str(tiny_survey),
        "--output",
        str(out),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if shard_paths(out) and glob.glob(str(out / ".*.tmp-*")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "dataset.json").exists(), "the run finished before it could be killed"
    leftovers = glob.glob(str(out / ".*.tmp-*"))
    for path in leftovers:  # an unfinished shard has no final name
        final = os.path.join(out, os.path.basename(path)[1:].rsplit(".tmp-", 1)[0])
        assert not os.path.exists(final)
    reference, _ = tiny_records
    for path in shard_paths(out):  # every final-named shard is complete
        assert filecmp.cmp(path, os.path.join(reference, os.path.basename(path)), shallow=False)
    # the same command again finishes the job and cleans the leftovers
    subprocess.run(
        command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert not glob.glob(str(out / ".*.tmp-*"))
    assert (out / "dataset.json").exists()
