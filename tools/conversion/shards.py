"""The plan of output shards, decided (like the split, tao_keras.splits) before any pixel is
read, so that it depends only on the object list and the seed, never on worker count or on
how the work is fanned out across machines. Objects dropped later (too few dates, ...)
leave their slot empty.
"""

import dataclasses
import math

from tao_keras import classes
from tao_keras.splits import UNLABELLED_SPLIT

UNLABELLED_CLASS = "UNLABELLED"


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
