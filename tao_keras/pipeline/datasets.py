"""tf.data pipelines over converted records (the shards and dataset.json of
tools.fits_to_tfrecords).

Training: one infinite stream per task class (its shards, interleaved and parsed in
parallel), a fresh random exposure per date on every pass, merged by
`sample_from_datasets` with equal weights (balanced, the paper's strategy: minority
classes come back as other per-date permutations) or weights proportional to the class
counts (natural). Evaluation: each object once, the first exposure of each date.

Elements are (features, label): features["images"] is [B, H, W, 3] (triplet mode) or
[B, T, H, W, 3] with features["dt"] [B, T, 2] (years), features["length"] [B] and, for a
model with the photometry input, features["photometry"] [B, T, 6] (sequence mode); label is
the task's class index (int32).
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from tao_keras import classes
from tao_keras import contract as contract_module
from tao_keras.pipeline import augmentation, dates, model_inputs, normalization, windows
from tfrecords import manifest as manifest_file
from tfrecords import parser

MODES = ("triplet", "sequence")
BALANCING = ("balanced", "natural")
NT_INDEX = classes.CLASS_NAMES.index("NT")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """How records become batches.

    Sequence mode sees a window of dates ending at an observed date (windows.window_bounds):
    the first max_dates dates (all when None: early classification evaluates the first N
    nights), in training cut after a random date with probability prefix_fraction (the object
    as it looked after that night), and of those the most recent sequence_length (all when
    None). Batches are padded to their longest sequence; "length" gives each one's steps.
    """

    task: str = "multiclass"
    mode: str = "sequence"
    sequence_length: int | None = 19  # at most S dates, the most recent of the window
    max_dates: int | None = None  # only the first N dates of every object (None: all)
    prefix_fraction: float = 0.0  # training: share of sequences cut after a random date
    date_dropout: float = 0.0  # training: each date left out with this probability
    stride: int = 1
    batch_size: int = 32
    balance: str = "balanced"
    augment: bool = True
    shuffle_buffer: int = 32  # per class stream, in sequences (one image per date)
    cache: bool = False  # keep parsed records in memory (bounded by max_cache_mb)
    max_cache_mb: float = 2048.0
    deterministic: bool = False
    seed: int = 0
    # The model's side of the contract (tao_keras.contract.ModelContract; for_contract sets them)
    normalization: str = "object"  # one noise scale per object, or per "image"
    model_roi_size: int | None = None  # central crop of the records' RoI (None: whole)
    per_date: str = "choose"  # one exposure per date (the paper) or "coadd" (mean of the date's)
    photometry: bool = False  # sequence mode: the per-date forced photometry input

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} not in {MODES}")
        if self.balance not in BALANCING:
            raise ValueError(f"balance {self.balance!r} not in {BALANCING}")
        for name in ("sequence_length", "max_dates"):
            value = getattr(self, name)
            if value is not None and value < windows.MIN_DATES:
                raise ValueError(
                    f"{name} {value} < {windows.MIN_DATES} (one triplet needs "
                    f"{windows.MIN_DATES} dates)"
                )
        if not 0.0 <= self.prefix_fraction <= 1.0:
            raise ValueError(f"prefix_fraction {self.prefix_fraction} outside [0, 1]")
        if not 0.0 <= self.date_dropout < 1.0:
            raise ValueError(f"date_dropout {self.date_dropout} outside [0, 1)")
        classes.task_class_names(self.task)
        if self.per_date not in contract_module.PER_DATE:
            raise ValueError(f"per_date {self.per_date!r} not in {contract_module.PER_DATE}")
        if self.normalization not in contract_module.NORMALIZATIONS:
            raise ValueError(
                f"normalization {self.normalization!r} not in {contract_module.NORMALIZATIONS}"
            )


def for_contract(contract, **settings):
    """The PipelineConfig that feeds a model of `contract` (a ModelContract: its task,
    per-date rule, normalization, crop, stride and photometry input); settings: the other
    fields (mode, batch size, sequence length, balancing, ...)."""
    return PipelineConfig(
        task=contract.task,
        per_date=contract.per_date,
        normalization=contract.normalization,
        model_roi_size=contract.model_roi_size,
        stride=contract.stride,
        photometry=contract.architecture.photometry,
        **settings,
    )


def _options(config):
    options = tf.data.Options()
    options.deterministic = config.deterministic
    return options


def _parse_fn(roi_size, task):
    """(serialized record, its shard's path) -> the parsed record with its task label; a label
    that is not a class index fails naming the shard and the object."""
    table = tf.constant(classes.task_label_table(task), tf.int32)
    count = len(classes.CLASS_NAMES)

    def parse(serialized, path):
        record = parser.parse(serialized, roi_size)
        label = tf.cast(record["label"], tf.int32)
        check = tf.debugging.Assert(
            (label >= -1) & (label < count),
            [
                tf.strings.format(
                    "{}: record {}: label {} is not a class index (0-{}, or -1 for unlabelled)",
                    [path, record["object_id"], label, count - 1],
                )
            ],
        )
        with tf.control_dependencies([check]):
            label = tf.identity(label)
        record["task_label"] = tf.where(label >= 0, tf.gather(table, tf.maximum(label, 0)), -1)
        return record

    return parse


def _with_path(path):
    """The records of one shard, each with the shard's path (for messages naming it)."""
    return tf.data.TFRecordDataset(path).map(lambda record: (record, path))


def _select(record, seed, rule):
    """Keep what the windows need, with one image per date (dates.per_date_images)."""
    images, mjd = dates.per_date_images(
        record["images"],
        record["mjd"],
        record["date_index"],
        tf.cast(record["num_dates"], tf.int32),
        rule,
        seed,
    )
    return {
        "images": images,
        "mjd": mjd,
        "max_date_index": record["max_date_index"],
        "is_nt": tf.equal(record["label"], NT_INDEX),
        "label": record["task_label"],
        "object_id": record["object_id"],
    }


def _finish(config, augment):
    """Normalize, augment and build the model input from one image per date.

    Augmentation acts on the per-date images, before they are stacked into (overlapping)
    triplets: the same transform for the whole sequence, on a third of the data. seed (a
    stateless seed [2], training only) draws the augmentation, the dates left out
    (config.date_dropout, sequences) and the training prefix.
    """

    def finish(item, seed=None):
        if config.mode == "triplet":
            num = tf.shape(item["images"])[0]  # normalize only the three dates kept
            chosen = windows.triplet_dates(num, item["max_date_index"], item["is_nt"])
            noise_scale = normalization.object_scale(item["images"], config.normalization)
            images = model_inputs.center_crop(
                normalization.normalize_images(tf.gather(item["images"], chosen), noise_scale),
                config.model_roi_size,
            )
            if augment:
                images = augmentation.rotate_flip(images[..., None], seed)[..., 0]
            return {"images": tf.transpose(images, [1, 2, 0])}, item["label"]
        if seed is not None and config.date_dropout > 0:
            kept = windows.kept_dates(
                tf.shape(item["images"])[0],
                config.date_dropout,
                tf.random.experimental.stateless_fold_in(seed, 5),
            )
            item = dict(
                item, images=tf.gather(item["images"], kept), mjd=tf.gather(item["mjd"], kept)
            )
        end = config.max_dates
        if seed is not None and config.prefix_fraction > 0:
            cut = windows.random_end(
                tf.shape(item["images"])[0],
                config.prefix_fraction,
                tf.random.experimental.stateless_fold_in(seed, 3),
            )
            end = cut if end is None else tf.minimum(cut, end)
        prepared = model_inputs.prepare_dates(
            item["images"],
            item["mjd"],
            config.sequence_length,
            config.normalization,
            config.model_roi_size,
            end,
            config.photometry,
        )
        if augment:  # the photometry, at the centre, is the same under rotations and flips
            images = prepared["images"][..., None]
            prepared["images"] = augmentation.rotate_flip(images, seed)[..., 0]
        return model_inputs.sequence_features(prepared, config.stride), item["label"]

    return finish


def _batch(dataset, config, drop_remainder):
    if config.mode == "sequence":
        return dataset.padded_batch(config.batch_size, drop_remainder=drop_remainder)
    return dataset.batch(config.batch_size, drop_remainder=drop_remainder)


def _records(files, num_files, roi_size, config, deterministic):
    """Parsed records of a dataset of file names, read in parallel (up to 4 files at a time)."""
    dataset = files.interleave(
        _with_path,
        cycle_length=max(1, min(num_files, 4)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    return dataset.map(
        _parse_fn(roi_size, config.task),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )


def _class_stream(shards, manifest, config, stream_seed, cache):
    """Infinite stream of (one image per date) items of one task class, random per pass."""
    paths = [p for p, _ in shards]
    files = tf.data.Dataset.from_tensor_slices(paths)
    roi = manifest["roi_size"]
    if cache:
        dataset = _records(files, len(paths), roi, config, True).cache().repeat()
    else:
        files = files.shuffle(len(paths), seed=stream_seed).repeat()
        dataset = _records(files, len(paths), roi, config, config.deterministic)
    seeds = tf.data.Dataset.random(seed=stream_seed).batch(2)
    dataset = tf.data.Dataset.zip((dataset, seeds))
    dataset = dataset.map(
        lambda record, seed: _select(record, seed, config.per_date),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=config.deterministic,
    )
    return dataset.shuffle(config.shuffle_buffer, seed=stream_seed)


def _cache_fits(manifest, split, config):
    entry = manifest["splits"][split]
    size_mb = entry["exposures"] * manifest["roi_size"] ** 2 * 4 / 2**20
    return config.cache and size_mb <= config.max_cache_mb


def _soft_lookup(soft_targets, num_classes):
    """(object id [], task label []) -> the object's row of soft_targets (ids [N], targets
    [N, C]), or the label's one-hot row for an object without one."""
    ids, targets = soft_targets
    targets = np.asarray(targets, np.float32)
    if targets.ndim != 2 or targets.shape != (len(ids), num_classes):
        raise ValueError(
            f"soft targets of shape {targets.shape} for {len(ids)} objects; expected "
            f"[{len(ids)}, {num_classes}] (the task's classes)"
        )
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant([str(i) for i in ids], tf.string), tf.range(len(ids), dtype=tf.int64)
        ),
        default_value=-1,
    )
    rows = tf.constant(targets)

    def lookup(object_id, label):
        row = table.lookup(object_id)
        one_hot = tf.one_hot(label, num_classes, dtype=tf.float32)
        return tf.cond(row >= 0, lambda: tf.gather(rows, tf.maximum(row, 0)), lambda: one_hot)

    return lookup


def training_dataset(records_dir, config, split="train", soft_targets=None):
    """Infinite, balanced (or natural) training batches -> (dataset, steps_per_epoch).

    records_dir: a converted records directory (dataset.json); config: a PipelineConfig (task,
    mode, length, batch, balancing, augmentation, normalization, crop, per-date rule, seed);
    split: which split's shards to stream. An epoch is num_task_classes x largest class count
    sequences when balanced (the paper balances to the majority class), the total count when
    natural. soft_targets: (object ids [N], targets [N, C]) (lightcurves.teacher): the batches'
    labels are then {"label": [B], "soft": [B, C]}, the object's row (its one-hot label when
    it has none).
    """
    manifest = manifest_file.load(records_dir)
    shards = classes.task_shards(manifest, records_dir, split, config.task)
    names = classes.task_class_names(config.task)
    missing = [names[i] for i in range(len(names)) if i not in shards]
    if missing:
        raise ValueError(
            f"{records_dir}: split '{split}' has no objects of {missing} for task {config.task}"
        )
    counts = [sum(n for _, n in shards[i]) for i in range(len(names))]
    cache = _cache_fits(manifest, split, config)
    streams = [
        _class_stream(shards[i], manifest, config, config.seed * 1000 + i, cache)
        for i in range(len(names))
    ]
    if config.balance == "balanced":
        weights = [1.0 / len(names)] * len(names)
        epoch = len(names) * max(counts)
    else:
        weights = [n / sum(counts) for n in counts]
        epoch = sum(counts)
    dataset = tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=config.seed)
    finish = _finish(config, augment=config.augment)
    lookup = None if soft_targets is None else _soft_lookup(soft_targets, len(names))

    def prepare(item, seed):
        features, label = finish(item, seed)
        if lookup is None:
            return features, label
        return features, {"label": label, "soft": lookup(item["object_id"], label)}

    seeds = tf.data.Dataset.random(seed=config.seed + 7919).batch(2)
    dataset = tf.data.Dataset.zip((dataset, seeds)).map(
        prepare,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=config.deterministic,
    )
    dataset = _batch(dataset, config, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return dataset.with_options(_options(config)), math.ceil(epoch / config.batch_size)


def _evaluation_records(records_dir, config, split):
    """((serialized record, shard path) of the split's task objects in file order, the records'
    RoI)."""
    manifest = manifest_file.load(records_dir)
    shards = classes.task_shards(manifest, records_dir, split, config.task)
    paths = [p for label in sorted(shards) for p, _ in shards[label]]
    if not paths:
        raise ValueError(f"{records_dir}: split '{split}' has no objects for task {config.task}")
    records = tf.data.Dataset.from_tensor_slices(paths).flat_map(_with_path)
    return records, manifest["roi_size"]


def evaluation_object_ids(records_dir, config, split="val"):
    """The object ids [N] (str) of evaluation_dataset(records_dir, config, split), in its order:
    what ties a model's predictions to the same objects scored by another model."""
    records, roi = _evaluation_records(records_dir, config, split)
    ids = records.map(lambda record, _: parser.parse(record, roi)["object_id"])
    return [i.decode() for i in ids.as_numpy_iterator()]


def evaluation_dataset(records_dir, config, split="val"):
    """Every object of the split that belongs to the task, once, in file order, no augmentation:
    (features, label) batches as training_dataset's. records_dir, config: as there; split:
    'val', 'test', 'train' or 'unlabelled'."""
    records, roi = _evaluation_records(records_dir, config, split)
    dataset = records.map(
        _parse_fn(roi, config.task),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.map(
        lambda record: _select(record, None, config.per_date),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    dataset = dataset.map(
        _finish(config, augment=False), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return _batch(dataset, config, drop_remainder=False).prefetch(tf.data.AUTOTUNE)
