"""TensorBoard views beyond Keras' scalars: per-class PR curves, the confusion matrix as an
image, example input sequences, and the run's hyperparameters (HParams)."""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.pr_curve import summary as pr_summary

CELL = 24


def confusion_image(matrix):
    """Confusion matrix [C, C] -> uint8 RGB image [C*24, C*24, 3]: white (0) to dark blue
    (the row's whole count), row-normalized so every true class reads alike; grey grid."""
    matrix = np.asarray(matrix, float)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    colours = white + rows[..., None] * (blue - white)
    image = np.repeat(np.repeat(colours, CELL, axis=0), CELL, axis=1)
    image[::CELL, :] = image[:, ::CELL] = 160.0
    return image.astype(np.uint8)


def write_evaluation(writer, step, labels, probabilities, class_names, confusion):
    """PR curve per class (one-vs-rest on that class's probability) and the confusion image."""
    with writer.as_default(step=step):
        for c, name in enumerate(class_names):
            summary = pr_summary.pb(f"pr_curve/{name}", labels=np.asarray(labels) == c,
                                    predictions=np.asarray(probabilities)[:, c].astype(np.float32),
                                    num_thresholds=101)
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
        tf.summary.image("confusion_matrix", confusion_image(confusion)[None], step=step)
    writer.flush()


def write_examples(writer, images, labels, class_names, max_outputs=4):
    """A few model inputs as images: triplets [N, H, W, 3] or the first steps of sequences
    [N, T, H, W, 3] laid side by side, each scaled to [0, 1]."""
    images = np.asarray(images)[:max_outputs]
    if images.ndim == 5:
        images = np.concatenate(list(np.moveaxis(images[:, :6], 1, 0)), axis=2)
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    scaled = (images - low) / np.maximum(high - low, 1e-6)
    names = ", ".join(class_names[int(l)] for l in np.asarray(labels)[:max_outputs])
    with writer.as_default(step=0):
        tf.summary.image("examples", scaled.astype(np.float32), max_outputs=max_outputs,
                         description=f"labels: {names}")
    writer.flush()


def write_hparams(writer, values):
    """Record the run's hyperparameters (flattened, scalars only) for the HParams dashboard."""
    flat = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    with writer.as_default():
        hparams_api.hparams(flat)
    writer.flush()
