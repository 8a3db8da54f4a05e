"""Labelled light curves of every object: measured on converted records, or read from a CSV
(object_id, mjd, mag, magerr[, label, split]) as surveys publish them."""

import csv
import dataclasses
import json
import logging
import os
import time
import types

import numpy as np

from tao_keras import classes, files, splits
from tao_keras.lightcurves import photometry

CSV_FIELDS = ("object_id", "label", "split", "mjd", "mag", "magerr")


@dataclasses.dataclass
class LightCurve:
    """One object's nightly light curve; label indexes classes.CLASS_NAMES (-1 = unlabelled)."""

    object_id: str
    label: int
    split: str
    mjd: np.ndarray
    mag: np.ndarray
    magerr: np.ndarray

    def arrays(self):
        return self.mjd, self.mag, self.magerr


def from_records(records_dir, config=photometry.PhotometryConfig(), progress=True):
    """Photometry of every record of every split of a converted dataset (dataset.json)."""
    from tqdm import tqdm

    from tfrecords import manifest as manifest_file
    from tfrecords import parser

    manifest = manifest_file.load(records_dir)
    shards = [
        (split, os.path.join(records_dir, s["file"]), s["records"])
        for split, entry in manifest["splits"].items()
        for s in entry["shards"]
    ]
    curves = []
    with tqdm(
        total=sum(n for _, _, n in shards), unit="obj", desc="photometry", disable=not progress
    ) as bar:
        for split, path, _ in shards:
            for record in parser.read_records([path], manifest["roi_size"]):
                flux, error = photometry.measure(record.images, config)
                t, flux, error = photometry.nightly(record.mjd, flux, error, record.date_index)
                mag, magerr = photometry.to_magnitudes(flux, error)
                curves.append(LightCurve(record.object_id, record.label, split, t, mag, magerr))
                bar.update()
    return curves


def write_csv(curves, path):
    """One row per date, in the format from_csv reads (written atomically: a kill or a full
    disk leaves no partial file)."""
    with files.atomic_open(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_FIELDS)
        for c in curves:
            name = classes.CLASS_NAMES[c.label] if c.label >= 0 else ""
            for t, m, e in zip(c.mjd, c.mag, c.magerr):
                writer.writerow([c.object_id, name, c.split, f"{t:.6f}", f"{m:.5f}", f"{e:.5f}"])


def _label(value, where):
    try:
        return classes.label_index(classes.canonical_label(value))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def from_csv(path, seed=0):
    """Light curves from a CSV with columns object_id, mjd, mag, magerr (any order; label and
    split optional). Objects without a split are split per class by the converter's rule."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"object_id", "mjd", "mag", "magerr"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        rows = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            try:
                values = tuple(float(row[k]) for k in ("mjd", "mag", "magerr"))
            except (TypeError, ValueError):  # TypeError: a row cut short
                raise ValueError(f"{where}: mjd, mag and magerr must be numbers") from None
            if not all(np.isfinite(values)) or values[2] <= 0:
                raise ValueError(f"{where}: mjd, mag must be finite and magerr > 0")
            entry = rows.setdefault(
                row["object_id"],
                {
                    "label": _label(row.get("label") or "", where),
                    "split": (row.get("split") or "").strip(),
                    "points": [],
                },
            )
            entry["points"].append(values)
    curves = []
    for object_id, entry in rows.items():
        t, m, e = np.array(sorted(entry["points"])).T
        curves.append(LightCurve(object_id, entry["label"], entry["split"], t, m, e))
    unsplit = [c for c in curves if not c.split and c.label >= 0]
    if unsplit:
        _assign_splits(unsplit, seed)
    for c in curves:
        c.split = c.split or "unlabelled"
    return curves


def _assign_splits(curves, seed):
    """Split curves without one by the converter's rule (tao_keras.splits: per class 5% test,
    then 70/30 train/validation for transients and 60/40 for non-transients)."""
    items = [
        types.SimpleNamespace(
            object_id=c.object_id, label=classes.CLASS_NAMES[c.label], split=None, curve=c
        )
        for c in curves
    ]
    for item, split in splits.assign_splits(items, splits.SplitFractions(), seed):
        item.curve.split = split


CACHE_FILE = "lightcurves.csv"


def of_records(records_dir):
    """The light curves of a records directory: measured once (photometry of every record) and
    kept as RECORDS/lightcurves.csv, which later calls read instead. A cache that is unreadable
    or holds fewer or more objects than the manifest (a write cut short) is measured again,
    with a warning. -> [LightCurve]."""
    from tfrecords import manifest as manifest_file

    cached = os.path.join(records_dir, CACHE_FILE)
    expected = manifest_file.object_count(manifest_file.load(records_dir))
    if os.path.exists(cached):
        try:
            curves = from_csv(cached)
            problem = None if len(curves) == expected else f"{len(curves)} of {expected} objects"
        except (OSError, ValueError, KeyError) as e:
            problem = str(e)
        if problem is None:
            return curves
        logging.warning("%s: unusable photometry cache (%s): measuring again", cached, problem)
    began = time.perf_counter()
    curves = from_records(records_dir)
    write_csv(curves, cached)
    files.write_json_atomic(  # what the measurement cost, for benchmarks
        cached + ".json", {"seconds": time.perf_counter() - began, "objects": len(curves)}
    )
    # The curves as the cache holds them (rounded as written): the first run and every rerun
    # then train the forest on the same numbers.
    return from_csv(cached)


def measurement_seconds(records_dir):
    """Seconds the photometry of a records directory took when of_records measured it (None if
    unknown)."""
    try:
        with open(os.path.join(records_dir, CACHE_FILE + ".json")) as f:
            return float(json.load(f)["seconds"])
    except (OSError, ValueError, KeyError):
        return None
