"""Keras callbacks: validation F1 per class each epoch, into the logs and TensorBoard."""

import logging
import shutil
import time

import keras
import tensorflow as tf

from tao_keras import metrics
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
            tensorboard_views.write_evaluation(self.writer, epoch, labels, probabilities, self.class_names,
                                               result["confusion_matrix"])


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
            logging.info("time budget of %.0f s spent after epoch %d: stopping this stage", self.seconds, epoch + 1)
            self.model.stop_training = True


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """BackupAndRestore that survives a kill during its own write.

    Keras writes the backup in place: a kill in the middle leaves a corrupt file.
    double_checkpoint keeps the previous backup to fall back on; when even that is
    missing (killed during the first backup), the stage starts afresh with a warning
    instead of failing on every later attempt.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, double_checkpoint=True)

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except OSError as e:
            logging.warning("backup in %s is unreadable (%s) and has no earlier copy: starting this stage afresh",
                            self.backup_dir, e)
            shutil.rmtree(self.backup_dir, ignore_errors=True)
