"""TensorBoard views beyond Keras' scalars: per-class PR curves, the confusion matrix as an
image with class names and counts, example inputs as grey strips of their dates, and the run's
hyperparameters (HParams). Figures are drawn with matplotlib (Agg, no display needed)."""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api
from tensorboard.plugins.pr_curve import summary as pr_summary

from tao_keras.training import figures


def write_evaluation(writer, step, labels, probabilities, class_names, confusion):
    """PR curve per class (one-vs-rest on that class's probability) and the confusion image."""
    with writer.as_default(step=step):
        for c, name in enumerate(class_names):
            summary = pr_summary.pb(
                f"pr_curve/{name}",
                labels=np.asarray(labels) == c,
                predictions=np.asarray(probabilities)[:, c].astype(np.float32),
                num_thresholds=101,
            )
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
        image = figures.confusion_image(confusion, class_names, f"validation, epoch {step + 1}")
        tf.summary.image("confusion_matrix", image[None], step=step)
    writer.flush()


def write_examples(writer, images, labels, class_names, dt=None, max_outputs=4):
    """A few model inputs as grey strips of their dates (asinh stretch), captioned with the
    class and the days of each date since the first shown."""
    per_date, days = figures.example_dates(
        np.asarray(images)[:max_outputs], None if dt is None else np.asarray(dt)[:max_outputs]
    )
    labels = np.asarray(labels)[:max_outputs]
    zoom = max(1, 96 // per_date.shape[-2])  # 32x32 cutouts shown at 96x96
    strips = np.stack([figures.example_strip(d, zoom) for d in per_date])[..., None]
    captions = []
    for i, (label, d) in enumerate(zip(labels, days)):
        when = "triplet dates" if np.isnan(d).all() else "days " + ", ".join(f"{x:.0f}" for x in d)
        captions.append(f"example {i}: {class_names[int(label)]} ({when})")
    with writer.as_default(step=0):
        tf.summary.image(
            "examples", strips, max_outputs=max_outputs, description="  \n".join(captions)
        )
    writer.flush()


def write_hparams(writer, values):
    """Record the run's hyperparameters (flattened, scalars only) for the HParams dashboard."""
    flat = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    with writer.as_default():
        hparams_api.hparams(flat)
    writer.flush()
