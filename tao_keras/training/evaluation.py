"""Predict a split and score it with the paper's metric."""

import numpy as np

from tao_keras import metrics
from tao_keras.pipeline import datasets


def predict(model, dataset):
    """-> (labels [N], probabilities [N, C]) over a finite (features, label) dataset."""
    labels, probabilities = [], []
    for features, label in dataset:
        out = model(features, training=False)
        probabilities.append(np.asarray(out["probabilities"] if isinstance(out, dict) else out))
        labels.append(np.asarray(label))
    return np.concatenate(labels), np.concatenate(probabilities)


def score(model, dataset, class_names):
    """The paper's metric (metrics.evaluate) of a model over an evaluation dataset whose labels
    index class_names."""
    labels, probabilities = predict(model, dataset)
    return metrics.evaluate(labels, probabilities, class_names)


def predictions(model, records_dir, config, split):
    """A model's predictions on every task object of a split, tied to the objects:
    {"object_id": [N] str, "label": [N] int, "probabilities": [N, C] float lists} (JSON-ready;
    what the paired bootstrap and the temperature fit read). config: the evaluation
    PipelineConfig (datasets.evaluation_dataset's)."""
    labels, probabilities = predict(model, datasets.evaluation_dataset(records_dir, config, split))
    ids = datasets.evaluation_object_ids(records_dir, config, split)
    if len(ids) != len(labels):
        raise RuntimeError(f"{records_dir} {split}: {len(ids)} object ids for {len(labels)} labels")
    return {
        "object_id": ids,
        "label": labels.astype(int).tolist(),
        "probabilities": np.asarray(probabilities, float).tolist(),
    }


def score_predictions(prediction, class_names):
    """metrics.evaluate of a predictions() dict."""
    return metrics.evaluate(prediction["label"], prediction["probabilities"], class_names)
