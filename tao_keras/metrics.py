"""The paper's metric (section 2.4): per class, the maximum F1 over the precision-recall
curve built from that class's probabilities; mean ± std over the classes; plus the
confusion matrix of the arg-max prediction. One implementation for every trainer.
"""

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve


def max_f1(is_positive, scores):
    """Maximum F1 over every threshold of `scores` (NaN when there is no positive)."""
    is_positive = np.asarray(is_positive, bool)
    if not is_positive.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(is_positive, np.asarray(scores, float))
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(f1.max())


def evaluate(labels, probabilities, class_names):
    """labels [N] int, probabilities [N, C] -> dict with per-class max F1, mean, std, confusion.

    Classes without examples get F1 NaN and are left out of the mean and std (population std).
    """
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float)
    per_class = [max_f1(labels == c, probabilities[:, c]) for c in range(len(class_names))]
    present = [f for f in per_class if not np.isnan(f)]
    predicted = probabilities.argmax(axis=1)
    return {
        "class_names": list(class_names),
        "f1": dict(zip(class_names, per_class)),
        "mean_f1": float(np.mean(present)) if present else float("nan"),
        "std_f1": float(np.std(present)) if present else float("nan"),
        "support": {name: int((labels == c).sum()) for c, name in enumerate(class_names)},
        "confusion_matrix": confusion_matrix(
            labels, predicted, labels=list(range(len(class_names)))
        ).tolist(),
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
    }
