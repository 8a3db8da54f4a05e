"""Train/val/test split (paper 2.5) and the plan of output shards, both decided before any
pixel is read, so that they depend only on the object list and the seed, never on worker
count or on how the work is fanned out across machines.

Paper: per class 70% train / 30% validation for transients, 60% train for non-transients,
plus a separate, smaller test set (~5% of each class in its Table 2). A catalog `split`
value overrides. Objects dropped later (too few dates, ...) leave their slot empty.
"""

import dataclasses
import math

import numpy as np

from tao_keras import classes

UNLABELLED_SPLIT = "unlabelled"
UNLABELLED_CLASS = "UNLABELLED"


@dataclasses.dataclass(frozen=True)
class SplitFractions:
    test: float = 0.05
    train_transient: float = 0.7  # of what remains after the test set
    train_non_transient: float = 0.6


@dataclasses.dataclass(frozen=True)
class Shard:
    split: str
    class_name: str
    index: int
    total: int
    object_ids: tuple

    @property
    def filename(self):
        return f"{self.split}-{self.index:05d}-of-{self.total:05d}.tfrecord"


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


def plan_shards(assigned, records_per_shard, min_shards):
    """Shards per split, each holding a single class (so pipelines can balance per class file).

    A class gets max(min_shards, ceil(count / records_per_shard)) shards (no more than it has
    objects), filled round-robin in the seeded order; shard numbers run over the split.
    """
    groups = {}
    for source, split in assigned:
        class_name = source.label or UNLABELLED_CLASS
        groups.setdefault(split, {}).setdefault(class_name, []).append(source.object_id)
    shards = []
    for split in ("train", "val", "test", UNLABELLED_SPLIT):
        per_class = groups.get(split, {})
        layout = []
        for class_name in list(classes.CLASS_NAMES) + [UNLABELLED_CLASS]:
            ids = per_class.get(class_name, [])
            if ids:
                count = min(len(ids), max(min_shards, math.ceil(len(ids) / records_per_shard)))
                layout.append((class_name, [tuple(ids[k::count]) for k in range(count)]))
        total = sum(len(parts) for _, parts in layout)
        index = 0
        for class_name, parts in layout:
            for ids in parts:
                shards.append(Shard(split, class_name, index, total, ids))
                index += 1
    return shards
