"""Keras callbacks: validation F1 per class each epoch, into the logs and TensorBoard."""

import csv
import errno
import hashlib
import json
import logging
import os
import time

import keras
import tensorflow as tf

from tao_keras import files, metrics
from tao_keras.training import evaluation, tensorboard_views


class ValidationF1(keras.callbacks.Callback):
    """Scores the validation split with the paper's metric at each epoch end.

    Adds val_mean_f1 (and val_f1_<class>) to the epoch logs, so callbacks after it
    (ModelCheckpoint on val_mean_f1, TensorBoard) see them; with a writer, also the
    per-class PR curves and the confusion matrix image.
    """

    def __init__(self, dataset, class_names, writer=None):
        super().__init__()
        self.dataset = dataset
        self.class_names = class_names
        self.writer = writer

    def on_epoch_end(self, epoch, logs=None):
        labels, probabilities = evaluation.predict(self.model, self.dataset)
        result = metrics.evaluate(labels, probabilities, self.class_names)
        logs = logs if logs is not None else {}
        logs["val_mean_f1"] = result["mean_f1"]
        for name, value in result["f1"].items():
            logs[f"val_f1_{name}"] = value
        if self.writer is not None:
            with self.writer.as_default(step=epoch):
                tf.summary.scalar("mean_f1", result["mean_f1"])
                for name, value in result["f1"].items():
                    tf.summary.scalar(f"f1/{name}", value)
            tensorboard_views.write_evaluation(
                self.writer,
                epoch,
                labels,
                probabilities,
                self.class_names,
                result["confusion_matrix"],
            )


class TimeBudget(keras.callbacks.Callback):
    """Stops training at the first epoch end after `seconds` of wall-clock time (a budget for
    benchmarks that compare methods at equal cost; the best checkpoint is kept as usual)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.began = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if time.perf_counter() - self.began > self.seconds:
            logging.info(
                "time budget of %.0f s spent after epoch %d: stopping this stage",
                self.seconds,
                epoch + 1,
            )
            self.model.stop_training = True


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """Per-epoch backup that a kill, a corrupt file or a full disk cannot make unusable.

    Each backup is a weights file and a small JSON (epoch, and the SHA-256 of the weights),
    both written under temporary names and renamed when complete; the previous backup is
    kept. On restart the newest backup whose JSON parses and whose weights match their hash
    and load is restored; a corrupt one (truncated, bit-flipped, unparsable, cut short by a
    full disk) is skipped with a warning, and with none usable the stage starts afresh. A
    full disk while writing is an error that says so. Keras deletes the backups when the
    stage ends.

    Keras' private API, where no public one exists: `_save_model` (the one hook Keras'
    BackupAndRestore calls to write a backup), `_current_epoch` (its epoch counter) and the
    model's `_initial_epoch` (how BackupAndRestore itself tells fit where to resume); checked
    against Keras 3.15 by tests/test_faults.py.
    """

    SLOTS = ("latest", "previous")

    def __init__(self, backup_dir):
        super().__init__(backup_dir, double_checkpoint=False)

    def _paths(self, slot):
        return (
            os.path.join(self.backup_dir, f"{slot}.weights.h5"),
            os.path.join(self.backup_dir, f"{slot}.json"),
        )

    def _usable(self, slot):
        """(epoch, weights path) of a verified backup slot, else None (with the reason logged)."""
        weights, meta = self._paths(slot)
        if not os.path.exists(meta):
            return None
        try:
            with open(meta) as f:
                info = json.load(f)
            epoch = int(info["epoch"])
            if _sha256(weights) != info["sha256"]:
                raise ValueError("weights do not match their recorded hash")
        except (OSError, ValueError, KeyError, TypeError) as e:
            logging.warning(
                "backup %s in %s is unusable (%s); trying an older one", slot, self.backup_dir, e
            )
            return None
        return epoch, weights

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError("the model must be built before fit() to restore a backup")
        for slot in self.SLOTS:
            found = self._usable(slot)
            if found is None:
                continue
            epoch, weights = found
            try:
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                self.model.load_weights(weights)
            except Exception as e:  # h5py/Keras raise many kinds on a damaged file
                logging.warning(
                    "backup %s in %s does not load (%s: %s); trying an older one",
                    slot,
                    self.backup_dir,
                    type(e).__name__,
                    e,
                )
                continue
            self.model._initial_epoch = epoch
            logging.info("resuming after epoch %d from %s", epoch, weights)
            return
        if os.path.isdir(self.backup_dir) and os.listdir(self.backup_dir):
            logging.warning("no usable backup in %s: starting this stage afresh", self.backup_dir)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights, meta = self._paths("latest")
        try:
            partial = weights + ".partial.weights.h5"
            self.model.save_weights(partial, overwrite=True)
            info = json.dumps({"epoch": self._current_epoch, "sha256": _sha256(partial)})
            with open(meta + ".partial", "w") as f:
                f.write(info)
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(meta):  # keep the last good backup until the new one is complete
                old_weights, old_meta = self._paths("previous")
                os.replace(weights, old_weights)
                os.replace(meta, old_meta)
            os.replace(partial, weights)
            os.replace(meta + ".partial", meta)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise OSError(
                    e.errno,
                    f"disk full while writing the training backup in {self.backup_dir}: "
                    "free space and run the same command again to resume",
                ) from e
            raise


def averaged_weights():
    """Two callbacks, (first, before_backup), for a model whose optimizer keeps a moving average
    of its weights (losses.compile_stage with ema_momentum > 0): `first`, the first of the
    list, swaps the averaged weights into the model at each epoch end, so the callbacks after
    it score, keep (BestWeights) and log the average; `before_backup`, placed just before the
    ResumableBackup, swaps the raw weights back, so the backup saves the state that training
    continues from (raw weights in the model, the average in the optimizer) and a resumed stage
    goes on as an uninterrupted one. After the last epoch both hold the average."""
    first = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
    return first, _RawWeightsBack(first)


class _RawWeightsBack(keras.callbacks.Callback):
    """The second half of averaged_weights: at an epoch end, undoes `swapper`'s swap (what the
    swapper itself would do at the next epoch's start)."""

    def __init__(self, swapper):
        super().__init__()
        self.swapper = swapper

    def on_epoch_end(self, epoch, logs=None):
        self.swapper.on_epoch_begin(epoch)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest `monitor` (val_mean_f1) in `path`,
    written like the backups: under a temporary name, with their SHA-256 in `path`.json,
    renamed when complete. On a resumed stage the value to beat is the best logged so far
    (history.csv), provided the weights file is whole; a file that is cut short, bit-flipped or
    without its hash is set aside with a warning (the next epoch becomes the best).
    """

    def __init__(self, path, history_csv, monitor="val_mean_f1"):
        super().__init__()
        self.path, self.history_csv, self.monitor = path, history_csv, monitor
        self.best = None

    def on_train_begin(self, logs=None):
        self.best = best_so_far(self.history_csv, self.monitor) if verified(self.path) else None
        if self.best is None and os.path.exists(self.path):
            logging.warning(
                "%s does not match its recorded hash (cut short or damaged): set aside, the "
                "next epoch's weights replace it",
                self.path,
            )
            os.replace(self.path, self.path + ".damaged")

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or (self.best is not None and not value > self.best):
            return
        self.best = value
        partial = self.path + ".partial.weights.h5"
        self.model.save_weights(partial, overwrite=True)
        files.write_json_atomic(
            self.path + ".json", {"epoch": epoch, self.monitor: value, "sha256": _sha256(partial)}
        )
        os.replace(partial, self.path)


def verified(weights_path):
    """True when a weights file exists and matches the SHA-256 its .json sidecar records."""
    try:
        with open(weights_path + ".json") as f:
            return _sha256(weights_path) == json.load(f)["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def best_so_far(history_csv, monitor="val_mean_f1"):
    """The best (max) value of `monitor` logged in a stage's history.csv, or None: the threshold
    a resumed ModelCheckpoint must beat, so a worse epoch after a restart cannot replace the
    best weights saved before it."""
    try:
        with open(history_csv, newline="") as f:
            values = [
                float(row[monitor])
                for row in csv.DictReader(f)
                if row.get(monitor) not in (None, "")
            ]
    except (OSError, ValueError, KeyError):
        return None
    return max(values) if values else None
