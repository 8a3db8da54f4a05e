"""The paper's metric (section 2.4) and what a reader needs beside it to judge it.

Per class, the maximum F1 over the precision-recall curve built from that class's probabilities;
mean ± std over the classes; plus the confusion matrix of the arg-max prediction. Because the
maximum over thresholds rewards chance (a class of 8 objects among 48 reaches F1 ~0.3 with
random scores), every evaluation also carries the chance level of the maximum F1 for its own
class counts, the accuracy and the macro-F1 of the arg-max decision, and the objects per
class. One implementation for every trainer, the Random Forest and the bootstrap
(tao_keras.intervals).
"""

import functools

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

# Random rankings drawn per class for the chance level (fixed seed: same counts, same value).
CHANCE_DRAWS = 400
CHANCE_SEED = 12345
# Fewer objects of a class than this in a split: its F1 is too coarse to read (reports warn).
MIN_RELIABLE_SUPPORT = 10


def ranked(scores):
    """scores [N] -> (order [N], ends [K]): the objects by decreasing score, and the positions
    in that order where a run of tied scores ends (the thresholds of the PR curve)."""
    scores = np.asarray(scores, float)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    return order, ends


def max_f1_weighted(is_positive, order, ends, weights):
    """Maximum F1 over thresholds for several weightings of the same objects at once.

    is_positive [N] bool; order, ends: ranked(scores); weights [D, N]: how many times each
    object counts in each of D draws (a bootstrap's multiplicities; ones for the sample
    itself). F1 at a threshold is 2 TP / (predicted positives + positives), as
    sklearn's precision_recall_curve gives it. -> [D] (NaN where a draw has no positive).
    """
    w = np.asarray(weights, float)[:, order]
    y = np.asarray(is_positive, bool)[order]
    tp = np.cumsum(w * y, axis=1)[:, ends]
    predicted = np.cumsum(w, axis=1)[:, ends]
    positives = tp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2.0 * tp / (predicted + positives)
    best = np.max(np.nan_to_num(f1, nan=0.0), axis=1)
    return np.where(positives[:, 0] > 0, best, np.nan)


def max_f1(is_positive, scores):
    """Maximum F1 over every threshold of `scores` (NaN when there is no positive)."""
    is_positive = np.asarray(is_positive, bool)
    if not is_positive.any():
        return float("nan")
    order, ends = ranked(scores)
    return float(max_f1_weighted(is_positive, order, ends, np.ones((1, len(is_positive))))[0])


@functools.lru_cache(maxsize=256)
def _chance_draws(positives, total, stream, draws=CHANCE_DRAWS, seed=CHANCE_SEED):
    """Maximum F1 of `draws` random rankings of `total` objects of which `positives` are the
    class (what label-permuted scores get) -> [draws]. stream: the class's index, so that
    classes of equal counts draw independently."""
    rng = np.random.default_rng([seed, positives, total, stream])
    ranks = rng.random((draws, total)).argsort(axis=1) < positives  # positives' random places
    tp = np.cumsum(ranks, axis=1)
    k = np.arange(1, total + 1)
    return (2.0 * tp / (k + positives)).max(axis=1)


def chance_level(counts):
    """The maximum F1 that scores unrelated to the labels reach on a split of these class counts.

    counts: objects per class [C] (0 = class absent, left out like evaluate leaves it out).
    -> {"f1": [C] expected per-class maximum F1 (NaN if absent), "mean_f1": expected mean over
    the present classes, "mean_f1_p95": the 95th percentile of that mean over random scorings
    (a model below it cannot be told from chance on this split)}.
    """
    counts = [int(n) for n in counts]
    total = sum(counts)
    per_class = [_chance_draws(n, total, c) if n > 0 else None for c, n in enumerate(counts)]
    present = [d for d in per_class if d is not None]
    if not present:
        return {"f1": [float("nan")] * len(counts), "mean_f1": float("nan"), "mean_f1_p95": None}
    means = np.mean(present, axis=0)
    return {
        "f1": [float(d.mean()) if d is not None else float("nan") for d in per_class],
        "mean_f1": float(means.mean()),
        "mean_f1_p95": float(np.quantile(means, 0.95)),
    }


def evaluate(labels, probabilities, class_names):
    """labels [N] int, probabilities [N, C] -> dict: per-class max F1 ("f1"), "mean_f1",
    "std_f1" (population std), "support" (objects per class), "confusion_matrix" (arg-max),
    "accuracy", "macro_f1" (F1 of the arg-max decision, averaged over the present classes),
    "chance_mean_f1" and "chance_mean_f1_p95" (chance_level for these class counts) and
    "small_classes" (present or absent classes with fewer than MIN_RELIABLE_SUPPORT objects).

    Classes without examples get F1 NaN and are left out of the means and std.
    """
    labels = np.asarray(labels, int)
    probabilities = np.asarray(probabilities, float).reshape(len(labels), len(class_names))
    per_class = [max_f1(labels == c, probabilities[:, c]) for c in range(len(class_names))]
    present = [f for f in per_class if not np.isnan(f)]
    predicted = probabilities.argmax(axis=1)
    support = [int((labels == c).sum()) for c in range(len(class_names))]
    chance = chance_level(support)
    present_classes = [c for c, n in enumerate(support) if n > 0]
    return {
        "class_names": list(class_names),
        "f1": dict(zip(class_names, per_class)),
        "mean_f1": float(np.mean(present)) if present else float("nan"),
        "std_f1": float(np.std(present)) if present else float("nan"),
        "support": dict(zip(class_names, support)),
        "confusion_matrix": confusion_matrix(
            labels, predicted, labels=list(range(len(class_names)))
        ).tolist(),
        "accuracy": float((predicted == labels).mean()) if len(labels) else float("nan"),
        "macro_f1": (
            float(
                f1_score(
                    labels, predicted, labels=present_classes, average="macro", zero_division=0
                )
            )
            if present_classes
            else float("nan")
        ),
        "chance_mean_f1": chance["mean_f1"],
        "chance_mean_f1_p95": chance["mean_f1_p95"],
        "small_classes": [
            name for name, n in zip(class_names, support) if n < MIN_RELIABLE_SUPPORT
        ],
    }
