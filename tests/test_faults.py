"""Fault injection: one test per kind of fault, each checking what is reported, what is kept
and that nothing else is lost (issue: every fault costs only itself)."""

import glob
import gzip
import json
import logging
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

from tao_keras.training import callbacks
from tfrecords import parser
from tools.conversion import convert
from tools.conversion import sources as src

import fitsfiles
from conftest import REPO, TINY_RUN_FLAGS, trainer_command


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    return model


def _backup_after_epochs(backup_dir, epochs):
    """A model whose backups were saved after each of `epochs`; returns {epoch: weights}."""
    model = _model()
    model.optimizer.build(model.trainable_variables)
    backup = callbacks.ResumableBackup(str(backup_dir))
    backup.set_model(model)
    saved = {}
    for epoch in range(1, epochs + 1):
        model.layers[0].kernel.assign(np.full((3, 2), float(epoch), np.float32))
        backup._current_epoch = epoch
        backup._save_model()
        saved[epoch] = model.get_weights()
    return saved


def _restore(backup_dir):
    model = _model(seed=1)
    model.optimizer.build(model.trainable_variables)
    backup = callbacks.ResumableBackup(str(backup_dir))
    backup.set_model(model)
    backup.on_train_begin()
    return model, getattr(model, "_initial_epoch", None)


def test_backup_restores_the_latest_epoch(tmp_path):
    saved = _backup_after_epochs(tmp_path / "b", 3)
    model, epoch = _restore(tmp_path / "b")
    assert epoch == 3
    np.testing.assert_array_equal(model.get_weights()[0], saved[3][0])
    assert sorted(os.listdir(tmp_path / "b")) == [
        "latest.json",
        "latest.weights.h5",
        "previous.json",
        "previous.weights.h5",
    ]


@pytest.mark.parametrize(
    "damage", ["unparsable json", "truncated weights", "bit flip", "weights missing"]
)
def test_a_corrupt_latest_backup_falls_back_to_the_previous_one(tmp_path, damage, caplog):
    saved = _backup_after_epochs(tmp_path / "b", 3)
    weights, meta = tmp_path / "b" / "latest.weights.h5", tmp_path / "b" / "latest.json"
    if damage == "unparsable json":
        meta.write_text('{"epoch": 3, "sha')
    elif damage == "truncated weights":  # e.g. a write cut short by a full disk
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "bit flip":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x10
        weights.write_bytes(bytes(data))
    else:
        weights.unlink()
    with caplog.at_level(logging.WARNING):
        model, epoch = _restore(tmp_path / "b")
    assert epoch == 2  # the previous backup, not a stuck rerun
    np.testing.assert_array_equal(model.get_weights()[0], saved[2][0])
    assert "backup latest" in caplog.text and "unusable" in caplog.text


def test_no_usable_backup_starts_the_stage_afresh_with_a_warning(tmp_path, caplog):
    _backup_after_epochs(tmp_path / "b", 2)
    for name in ("latest.json", "previous.json"):
        (tmp_path / "b" / name).write_text("not json")
    fresh = _model(seed=1).get_weights()
    with caplog.at_level(logging.WARNING):
        model, epoch = _restore(tmp_path / "b")
    assert epoch is None
    np.testing.assert_array_equal(model.get_weights()[0], fresh[0])
    assert "no usable backup" in caplog.text


def test_a_full_disk_during_the_backup_is_a_clear_error_and_keeps_the_last_good_one(
    tmp_path, monkeypatch
):
    import errno

    saved = _backup_after_epochs(tmp_path / "b", 2)
    model = _model()
    backup = callbacks.ResumableBackup(str(tmp_path / "b"))
    backup.set_model(model)
    backup._current_epoch = 3

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save_weights", no_space)
    with pytest.raises(OSError, match="disk full while writing the training backup"):
        backup._save_model()
    restored, epoch = _restore(tmp_path / "b")
    assert epoch == 2
    np.testing.assert_array_equal(restored.get_weights()[0], saved[2][0])


def test_best_value_so_far_comes_from_the_history(tmp_path):
    history = tmp_path / "history.csv"
    assert callbacks.best_so_far(str(history)) is None
    history.write_text("epoch,loss,val_mean_f1\n0,1.7,0.31\n1,1.5,0.52\n2,1.4,0.47\n")
    assert callbacks.best_so_far(str(history)) == 0.52
    # a checkpoint resumed with that threshold does not save a worse epoch
    best = tmp_path / "best.weights.h5"
    model = _model()
    model.save_weights(str(best))
    before = best.read_bytes()
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(best),
        monitor="val_mean_f1",
        mode="max",
        save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=callbacks.best_so_far(str(history)),
    )
    checkpoint.set_model(model)
    model.layers[0].kernel.assign(np.ones((3, 2), np.float32))
    checkpoint.on_epoch_end(3, {"val_mean_f1": 0.50})
    assert best.read_bytes() == before
    checkpoint.on_epoch_end(4, {"val_mean_f1": 0.60})
    assert best.read_bytes() != before


def test_a_finished_stage_is_not_trained_again_on_rerun(tiny_records, trained_run, tmp_path):
    records, _ = tiny_records
    out = tmp_path / "run"
    shutil.copytree(trained_run, out)  # the session's run: its three stages finished
    history = (out / "densenet" / "history.csv").read_text()
    model_times = {s: os.path.getmtime(out / s / "model.keras") for s in ("densenet", "gru")}
    (out / "joint" / "scores.json").unlink()  # as if killed during stage 3
    for stage in ("densenet", "gru"):  # as written before weight averaging existed
        scores = json.loads((out / stage / "scores.json").read_text())
        for name in ("densenet", "gru", "joint"):  # a stage records its own and the earlier ones
            scores["config"].get(name, {}).pop("average_epochs", None)
        assert "average_epochs" not in json.dumps(scores["config"])
        (out / stage / "scores.json").write_text(json.dumps(scores))
    command = trainer_command(records, out, *TINY_RUN_FLAGS, "--nobaseline")
    rerun = subprocess.run(
        command, cwd=REPO, check=True, capture_output=True, text=True, timeout=600
    )
    assert "stage densenet finished earlier with these settings" in rerun.stderr
    assert "stage gru finished earlier with these settings" in rerun.stderr
    assert (out / "densenet" / "history.csv").read_text() == history
    for stage, mtime in model_times.items():
        assert os.path.getmtime(out / stage / "model.keras") == mtime
    assert (out / "joint" / "scores.json").exists() and (out / "report.json").exists()


# --- Converter: one bad file, folder, row or output directory costs only itself --------------

NIGHTS = fitsfiles.four_a_night([0, 20, 45])  # 12 exposures on 3 dates


def _catalog_dataset(root, ids=("obj-a", "obj-b", "obj-c")):
    fitsfiles.write_catalog(root, [{"object_id": oid, "label": "SN"} for oid in ids])
    for oid in ids:
        fitsfiles.write_nights(root / "images" / oid, NIGHTS)
    return root


def _convert(root, out, **options):
    options = {"workers": 1, "min_shards": 1, **options}
    return convert.convert([str(root)], str(out), convert.ConvertOptions(**options), progress=False)


def _kept(out):
    records = parser.read_records(sorted(glob.glob(os.path.join(out, "*.tfrecord"))))
    return {r.object_id: r.num_exposures for r in records}


def _problems(manifest, kind):
    return {p["path"]: p["reason"] for p in manifest["problems"][kind]}


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_compressed_files_cost_that_file_only(tmp_path, workers):
    root = _catalog_dataset(tmp_path / "in")
    folder = root / "images" / "obj-a"
    gz = folder / "e000.fits.gz"
    with gzip.open(gz, "wb") as f:
        f.write((folder / "e000.fits").read_bytes())
    (folder / "e000.fits").unlink()
    data = bytearray(gz.read_bytes())
    data[40:104] = b"\xff" * 64  # a broken deflate stream (invalid block type)
    gz.write_bytes(bytes(data))
    fz = root / "images" / "obj-b" / "e001.fits.fz"
    fitsfiles.write_exposure(fz, fitsfiles.star_image(80), {"MJD-OBS": NIGHTS[1]}, compress=True)
    (root / "images" / "obj-b" / "e001.fits").unlink()
    raw = bytearray(fz.read_bytes())
    raw[-3000:-200] = bytes(range(256)) * 10 + bytes(2800 - 2560)  # garbage tiles
    fz.write_bytes(bytes(raw))
    manifest = _convert(root, tmp_path / "out", workers=workers)  # the pool must not break
    skipped = _problems(manifest, "files_skipped")
    assert str(gz) in skipped and "unreadable FITS file" in skipped[str(gz)]
    assert str(fz) in skipped and "unreadable FITS file" in skipped[str(fz)]
    assert _kept(tmp_path / "out") == {"obj-a": 11, "obj-b": 11, "obj-c": 12}


def test_an_unlistable_object_folder_costs_that_object_only(tmp_path, monkeypatch):
    root = _catalog_dataset(tmp_path / "in")
    locked = str(root / "images" / "obj-b")
    real_listdir = os.listdir

    def listdir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    manifest = _convert(root, tmp_path / "out")
    dropped = _problems(manifest, "objects_dropped")
    assert dropped[locked].startswith("cannot list the folder: PermissionError")
    assert _kept(tmp_path / "out") == {"obj-a": 12, "obj-c": 12}


def test_symlinks_resolving_outside_the_input_are_refused(tmp_path):
    root = _catalog_dataset(tmp_path / "in")
    outside = tmp_path / "elsewhere"
    fitsfiles.write_nights(outside, NIGHTS)
    (root / "images" / "obj-a" / "e000.fits").unlink()
    (root / "images" / "obj-a" / "e000.fits").symlink_to(outside / "e000.fits")
    shutil.rmtree(root / "images" / "obj-b")
    (root / "images" / "obj-b").symlink_to(outside, target_is_directory=True)
    (root / "images" / "obj-c" / "e099.fits").symlink_to(root / "images" / "obj-c" / "e000.fits")
    manifest = _convert(root, tmp_path / "out")
    assert (
        "symlink resolving outside the input directory"
        in _problems(manifest, "files_skipped")[str(root / "images" / "obj-a" / "e000.fits")]
    )
    assert (
        "symlink resolving outside"
        in _problems(manifest, "objects_dropped")[str(root / "images" / "obj-b")]
    )
    kept = _kept(tmp_path / "out")
    assert (
        kept["obj-a"] == 11 and "obj-b" not in kept
    )  # a link inside the input is fine (a duplicate)


def test_implausible_times_are_an_error_for_that_file(tmp_path):
    root = _catalog_dataset(tmp_path / "in")
    bad = root / "images" / "obj-a" / "e003.fits"
    fitsfiles.write_exposure(bad, fitsfiles.star_image(80), {"MJD-OBS": 1e300})
    manifest = _convert(root, tmp_path / "out")
    assert "outside any plausible survey" in _problems(manifest, "files_skipped")[str(bad)]
    assert _kept(tmp_path / "out")["obj-a"] == 11


def test_a_table_repeating_one_image_reads_it_once(tmp_path):
    root = tmp_path / "release"
    path = root / "data" / "AGN" / "CSS1.fits"
    images = [fitsfiles.star_image(64, flux=3000.0, sky=1000.0, seed=i) for i in range(12)]
    rows = [(2 + i, t) for i, t in enumerate(NIGHTS)]
    rows += [(2, 55500.0 + k * 0.01) for k in range(3000)]  # 3,000 rows pointing at HDU 2
    fitsfiles.write_release_object(path, "CSS1", NIGHTS, images, table_rows=rows)
    manifest = _convert(root, tmp_path / "out")
    assert _kept(tmp_path / "out") == {"CSS1": 12}
    assert manifest["summary"]["duplicate_exposures_dropped"] == 3000
    assert not manifest["problems"]["files_skipped"]  # counted, not listed 3,000 times


def test_an_undecodable_catalog_byte_rejects_that_row_only(tmp_path):
    root = _catalog_dataset(tmp_path / "in")
    catalog = root / "catalog.csv"
    lines = catalog.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b"SN", b"S\xff")  # obj-b's row
    catalog.write_bytes(b"\n".join(lines))
    manifest = _convert(root, tmp_path / "out")
    (rejected,) = manifest["problems"]["rows_rejected"]
    assert rejected["path"] == f"{catalog}:3" and "not UTF-8 text" in rejected["reason"]
    assert set(_kept(tmp_path / "out")) == {"obj-a", "obj-c"}


def test_an_oversized_catalog_field_is_a_clear_error(tmp_path):
    root = _catalog_dataset(tmp_path / "in")
    with open(root / "catalog.csv", "a") as f:
        f.write('huge,SN,,,,"' + "x" * 200_000 + '"\n')
    with pytest.raises(src.ConversionError, match=r"catalog.csv:\d+: unreadable CSV: field larger"):
        _convert(root, tmp_path / "out")


def test_an_output_holding_another_conversion_is_refused_unless_overwritten(tmp_path):
    root = _catalog_dataset(tmp_path / "in", ids=[f"obj-{i}" for i in range(8)])
    out = tmp_path / "out"
    _convert(root, out, seed=1, records_per_shard=2)
    with pytest.raises(src.ConversionError, match="holds another conversion.*--overwrite"):
        _convert(root, out, seed=2, records_per_shard=3)
    manifest = _convert(root, out, seed=2, records_per_shard=3, overwrite=True)
    listed = {s["file"] for e in manifest["splits"].values() for s in e["shards"]}
    assert {p.name for p in out.glob("*.tfrecord")} == listed  # no shard of the old conversion left
    _convert(root, out, seed=2, records_per_shard=3)  # the same conversion again: allowed


def test_an_interrupted_reconversion_leaves_no_stale_manifest(tmp_path, monkeypatch):
    from tfrecords import writer

    root = _catalog_dataset(tmp_path / "in", ids=[f"obj-{i}" for i in range(8)])
    out = tmp_path / "out"
    _convert(root, out, seed=1)
    calls = {"n": 0}
    real_encode = writer.encode

    def failing(record):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_encode(record)

    monkeypatch.setattr(writer, "encode", failing)
    with pytest.raises(KeyboardInterrupt):
        _convert(root, out, seed=2, overwrite=True)
    assert not (out / "dataset.json").exists()  # the old manifest no longer describes the shards


def test_the_fits_conversion_cache_is_keyed_by_what_was_converted(tmp_path):
    import time

    from trainers import data

    a = _catalog_dataset(tmp_path / "x" / "a", ids=["obj-a"])
    b = _catalog_dataset(tmp_path / "x_a", ids=["obj-a"])  # '/x/a' and '/x_a' once collided
    key = data.conversion_key(str(a), 0)
    assert key != data.conversion_key(str(b), 0)
    assert key == data.conversion_key(str(a), 0)
    assert key != data.conversion_key(str(a), 1)
    time.sleep(0.01)
    with open(a / "catalog.csv", "a") as f:  # an edited catalog is converted again
        f.write("obj-new,SN,,,,\n")
    assert data.conversion_key(str(a), 0) != key


def test_a_manifest_newer_than_this_code_or_unreadable_is_refused_by_name(tmp_path):
    import json

    from tfrecords import manifest, schema

    (tmp_path / "dataset.json").write_text(
        json.dumps({"schema_version": schema.SCHEMA_VERSION + 1})
    )
    with pytest.raises(
        manifest.ManifestError, match=r"dataset.json: records of schema version \d+, newer"
    ):
        manifest.load(str(tmp_path))
    (tmp_path / "dataset.json").write_text("{ not json")
    with pytest.raises(manifest.ManifestError, match="dataset.json: unreadable manifest"):
        manifest.load(str(tmp_path))
    with pytest.raises(
        manifest.ManifestError, match="records have 16x16 RoIs, smaller than the model's 32x32"
    ):
        manifest.check_roi({"roi_size": 16}, str(tmp_path), 32)
    manifest.check_roi({"roi_size": 64}, str(tmp_path), 16)  # a central crop is fine
