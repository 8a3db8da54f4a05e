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


def class_examples(dataset, num_classes):
    """The first object of each class in an evaluation dataset: {class index: (images, dt or
    None, row)} where row indexes `labels` (the dataset's objects in order)."""
    found, row = {}, 0
    for features, batch_labels in dataset:
        for i, label in enumerate(np.asarray(batch_labels)):
            if int(label) not in found:
                dt = features.get("dt")
                found[int(label)] = (
                    np.asarray(features["images"][i]),
                    None if dt is None else np.asarray(dt[i]),
                    row + i,
                )
        row += len(batch_labels)
        if len(found) == num_classes:
            break
    return found


def write_kept_model(writer, model_inputs, prediction, class_names, confusion):
    """What the kept (best-epoch) model does on the validation split, logged once a stage ends:
    its confusion matrix ("kept_model/confusion_matrix") and one example strip per class
    ("kept_model/examples"), each image titled with the true class, the kept model's class and
    probability, and the days of the dates shown.

    model_inputs: the validation evaluation dataset (features, label); prediction: the kept
    model's evaluation.predictions on it (same order).
    """
    probabilities = np.asarray(prediction["probabilities"])
    examples = class_examples(model_inputs, len(class_names))
    strips = []
    for label in sorted(examples):
        images, dt, row = examples[label]
        per_date, days = figures.example_dates(images[None], None if dt is None else dt[None])
        guess = int(probabilities[row].argmax())
        when = (
            "triplet dates"
            if np.isnan(days).all()
            else "days " + ", ".join(f"{x:.0f}" for x in days[0])
        )
        title = (
            f"true {class_names[label]}; kept model: {class_names[guess]} "
            f"(p={probabilities[row, guess]:.2f}); {when}"
        )
        strips.append(figures.example_image(per_date[0], title))
    image = figures.confusion_image(confusion, class_names, "validation, kept model")
    with writer.as_default(step=0):
        tf.summary.image("kept_model/confusion_matrix", image[None])
        if strips:
            tf.summary.image(
                "kept_model/examples",
                np.stack(figures.same_size(strips)),
                max_outputs=len(strips),
                description="One validation object per class, dates left to right (asinh "
                "stretch), titled with its true class and the kept model's answer.",
            )
    writer.flush()


def write_hparams(writer, values):
    """Record the run's hyperparameters (flattened, scalars only) for the HParams dashboard."""
    flat = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    with writer.as_default():
        hparams_api.hparams(flat)
    writer.flush()
