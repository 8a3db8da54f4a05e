"""The train/validation/test split rule (paper 2.5), one implementation for every input: the
converter's objects and the light-curve baseline's CSV curves.

Per class: a test fraction first (5%, at least one object for a class of 3 or more), then
70/30 train/validation for transients and 60/40 for non-transients, counts rounded half up.
Objects are ordered by id, then shuffled by a generator seeded by (seed, class), so the split
depends only on the object list and the seed. An object's own split (a catalog `split`
column) is kept; unlabelled objects go to `unlabelled`.
"""

import dataclasses
import math

import numpy as np

from tao_keras import classes

UNLABELLED_SPLIT = "unlabelled"


@dataclasses.dataclass(frozen=True)
class SplitFractions:
    test: float = 0.05
    train_transient: float = 0.7  # of what remains after the test set
    train_non_transient: float = 0.6


def _round(x):
    return int(math.floor(x + 0.5))  # half up, not Python's half-to-even


def _counts(n, test_fraction, train_fraction):
    """(test, train, val) sizes; small classes still get one object in each split they can fill."""
    n_test = _round(n * test_fraction)
    if n >= 3 and test_fraction > 0:
        n_test = max(n_test, 1)
    rest = n - n_test
    n_train = _round(rest * train_fraction)
    if rest >= 2:
        n_train = min(max(n_train, 1), rest - 1)
    return n_test, n_train, rest - n_train


def assign_splits(sources, fractions, seed):
    """-> list of (source, split) in a seeded order (per class: sorted ids, then shuffled)."""
    by_class = {}
    for source in sources:
        by_class.setdefault(source.label, []).append(source)
    assigned = []
    for label in list(classes.CLASS_NAMES) + [None]:
        members = sorted(by_class.get(label, []), key=lambda s: s.object_id)
        rng = np.random.default_rng([seed, classes.label_index(label) + 1])
        members = [members[i] for i in rng.permutation(len(members))]
        fixed = [s for s in members if s.split is not None]
        free = [s for s in members if s.split is None]
        assigned.extend((s, s.split) for s in fixed)
        if label is None:
            assigned.extend((s, UNLABELLED_SPLIT) for s in free)
            continue
        train = (
            fractions.train_transient
            if classes.is_transient(label)
            else fractions.train_non_transient
        )
        n_test, n_train, _ = _counts(len(free), fractions.test, train)
        for i, s in enumerate(free):
            assigned.append(
                (s, "test" if i < n_test else "train" if i < n_test + n_train else "val")
            )
    return assigned
