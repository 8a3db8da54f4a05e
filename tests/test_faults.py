"""Fault injection: one test per kind of fault, each checking what is reported, what is kept
and that nothing else is lost (issue: every fault costs only itself)."""

import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tao_keras.training import callbacks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    return model


def _backup_after_epochs(backup_dir, epochs):
    """A model whose backups were saved after each of `epochs`; returns {epoch: weights}."""
    model = _model()
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


def test_a_finished_stage_is_not_trained_again_on_rerun(tiny_records, tmp_path):
    records, _ = tiny_records
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "trainers.multiclass",
        "--data",
        str(records),
        "--output",
        str(out),
        "--stages",
        "densenet,gru",
        "--epochs_densenet",
        "2",
        "--epochs_gru",
        "1",
        "--batch_size",
        "4",
        "--epoch_fraction",
        "0.2",
    ]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    history = (out / "densenet" / "history.csv").read_text()
    model_time = os.path.getmtime(out / "densenet" / "model.keras")
    (out / "gru" / "scores.json").unlink()  # as if killed during stage 2
    rerun = subprocess.run(
        command, cwd=REPO, check=True, capture_output=True, text=True, timeout=600
    )
    assert "stage densenet finished earlier with these settings" in rerun.stderr
    assert (out / "densenet" / "history.csv").read_text() == history
    assert os.path.getmtime(out / "densenet" / "model.keras") == model_time
    assert (out / "gru" / "scores.json").exists() and (out / "report.json").exists()
