"""The paper's baseline classifier (section 3.1): light-curve features of objects with at least
5 dates, training classes balanced by Gaussian resampling, a Random Forest of 200 trees;
scored per split with the same metric code as the networks."""

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from tao_keras import classes, early, metrics
from tao_keras.lightcurves import curve_features, resampling

MODEL_NAME = "Random Forest (light curves)"


def task_curves(curves, task):
    """{split: (curves, task labels, object ids)} of the labelled curves that belong to the
    task and have enough dates; plus the number left out for too few dates."""
    table = classes.task_label_table(task)
    out, too_short = {}, 0
    for c in curves:
        if c.label < 0 or table[c.label] < 0:
            continue
        if len(c.mjd) < curve_features.MIN_CURVE_DATES:
            too_short += 1
            continue
        entry = out.setdefault(c.split, ([], [], []))
        entry[0].append(c.arrays())
        entry[1].append(table[c.label])
        entry[2].append(c.object_id)
    return {
        split: (cs, np.array(labels), ids) for split, (cs, labels, ids) in out.items()
    }, too_short


def fit(train_curves, train_labels, num_classes, trees=200, seed=0):
    """Balance by resampling, extract features, fit the forest (all cores)."""
    present = set(np.unique(train_labels).tolist())
    if present != set(range(num_classes)):
        raise ValueError(
            f"training light curves lack class(es) {sorted(set(range(num_classes)) - present)}"
        )
    curves, labels = resampling.balance(train_curves, train_labels, seed)
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=-1, random_state=seed)
    forest.fit(curve_features.compute(curves), labels)
    return forest


def run(curves, task, trees=200, seed=0):
    """-> ({split: metrics.evaluate output} for val and test, info dict: "predictions" ({split:
    {"object_id", "label", "probabilities"}}, as tao_keras.training.evaluation.predictions),
    "too_few_dates", "objects", "feature_importance")."""
    names = classes.task_class_names(task)
    splits, too_short = task_curves(curves, task)
    if "train" not in splits:
        raise ValueError(
            f"no training light curves with at least {curve_features.MIN_CURVE_DATES} dates "
            f"for task {task}"
        )
    forest = fit(*splits["train"][:2], len(names), trees, seed)
    results, predictions = {}, {}
    for split in ("val", "test"):
        if split in splits:
            split_curves, labels, ids = splits[split]
            probabilities = forest.predict_proba(curve_features.compute(split_curves))
            results[split] = metrics.evaluate(labels, probabilities, names)
            predictions[split] = {
                "object_id": list(ids),
                "label": labels.astype(int).tolist(),
                "probabilities": np.asarray(probabilities, float).tolist(),
            }
    info = {
        "predictions": predictions,
        "too_few_dates": too_short,
        "objects": {s: len(v[1]) for s, v in splits.items()},
        "feature_importance": dict(
            zip(curve_features.FEATURE_NAMES, forest.feature_importances_.round(4).tolist())
        ),
    }
    return results, info


def early_run(curves, task, nights=early.NIGHTS, trees=200, seed=0, whole=None):
    """The Random Forest's "F1 versus nights observed": for each N, a forest trained and scored
    on the first N dates of every curve (training curves cut like the scored ones: the best a
    light-curve classifier can do with N nights). N below MIN_CURVE_DATES has no score.
    whole: run()'s scores on whole curves, reused for N = None instead of training again.
    -> {split: {early.label(N): early.summary(metrics)}} for val and test."""
    out = {}
    for n in nights:
        if n is not None and n < curve_features.MIN_CURVE_DATES:
            continue
        if n is None and whole is not None:
            scores = whole
        else:
            scores, _ = run([early.first_dates(c, n) for c in curves], task, trees, seed)
        for split, r in scores.items():
            out.setdefault(split, {})[early.label(n)] = early.summary(r)
    return out
