"""Predict a split and score it with the paper's metric."""

import numpy as np

from tao_keras import metrics


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
