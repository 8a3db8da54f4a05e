"""The light-curve forest as a teacher of TAO-Net's joint stage (distillation).

The forest and TAO-Net err on different objects (their average beats both, docs/science.md),
so the forest knows something the network has not learnt from ~100 objects per class. With
TrainConfig.teacher_weight w > 0 the joint stage's final output is trained towards
(1 - w) x one-hot(label) + w x the forest's probabilities of the object instead of the label
alone. Each training object's probabilities come from a forest that never saw it (out of fold),
so the teacher says how the light curve looks to a classifier, not what the label is. The model
that is served still reads pixels and times only: the forest is needed at training time.
"""

import functools

import numpy as np
from sklearn.model_selection import StratifiedKFold

from tao_keras import classes
from tao_keras.lightcurves import baseline, curve_features

FOLDS = 5


class NoTeacher(ValueError):
    """The records cannot give the teacher's targets (too few training light curves)."""


def out_of_fold(curves, task, folds=FOLDS, trees=200, seed=0):
    """Out-of-fold forest probabilities of the training objects of a task.

    curves: [curves.LightCurve] of a records directory (curves.of_records); task: a task name;
    folds: the training objects are split in that many stratified folds (fewer when a class
    has fewer objects, at least 2), each scored by a forest (baseline.fit: balanced by
    resampling, `trees` trees) trained on the others; seed: folds, resampling and forests.
    Objects with fewer than curve_features.MIN_CURVE_DATES dates get none.
    -> (object ids [N], task labels [N], probabilities [N, C]); NoTeacher when the task has no
    training curves or a class has fewer than 2.
    """
    num_classes = len(classes.task_class_names(task))
    splits, _ = baseline.task_curves(curves, task)
    if "train" not in splits:
        raise NoTeacher(f"no training light curves for task {task}: no teacher")
    train_curves, labels, ids = splits["train"]
    smallest = min(int((labels == c).sum()) for c in range(num_classes))
    if smallest < 2:
        raise NoTeacher(
            f"task {task}: a class has {smallest} training light curve(s); the teacher's "
            "out-of-fold forests need at least 2 per class"
        )
    cross = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
    features = curve_features.compute(train_curves)
    probabilities = np.zeros((len(labels), num_classes))
    for fitted, held in cross.split(features, labels):
        forest = baseline.fit(
            [train_curves[i] for i in fitted], labels[fitted], num_classes, trees, seed
        )
        probabilities[held] = forest.predict_proba(features[held])
    return list(ids), labels, probabilities


def soft_targets(ids, labels, probabilities, weight):
    """The joint stage's targets (1 - weight) x one-hot(labels) + weight x probabilities.

    ids [N], labels [N] (task class indices), probabilities [N, C] (out_of_fold); weight in
    [0, 1). With weight <= 0.5 the label stays the most probable class of every target.
    -> (ids [N], targets [N, C] float32, rows summing to 1).
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"teacher weight {weight}: in [0, 1)")
    probabilities = np.asarray(probabilities, np.float64)
    one_hot = np.eye(probabilities.shape[1])[np.asarray(labels, int)]
    targets = (1.0 - weight) * one_hot + weight * probabilities
    return list(ids), targets.astype(np.float32)


@functools.lru_cache(maxsize=2)
def for_records(records_dir, task, weight, seed=0):
    """soft_targets of the out-of-fold forest on a records directory's light curves (measured
    once and cached, curves.of_records). -> (ids [N], targets [N, C] float32); NoTeacher naming
    the records directory when it has too few training light curves. Kept for the process: the
    trainer asks before any stage (to refuse records without a teacher early) and again in the
    joint stage, and the five forests are fitted once."""
    from tao_keras.lightcurves import curves as curve_io

    try:
        ids, labels, probabilities = out_of_fold(curve_io.of_records(records_dir), task, seed=seed)
    except NoTeacher as e:
        raise NoTeacher(f"{records_dir}: --teacher_weight: {e}") from None
    return soft_targets(ids, labels, probabilities, weight)
