"""From one image per date to model inputs: triplets (DenseNet) or sliding-triplet sequences.

Triplets stack three dates as channels (early fusion). Sequences slide a window of three
consecutive dates along the object's dates; each step also carries the time gaps inside
its triplet, in years (the paper's relative-date feature). Sequence models see a window of
dates that ends at an observed date (window_bounds): the whole sequence, its first N dates
(early classification), or during training a random prefix (random_end) and at most S dates;
training may also leave out random dates first (kept_dates).
"""

import tensorflow as tf

from tfrecords import schema

DAYS_PER_YEAR = 365.25
MIN_DATES = schema.MIN_OBSERVATION_DATES  # one triplet (the record format's own minimum)


def triplet_dates(num_dates, max_date_index, is_non_transient):
    """Dates [3] of the triplet: the maximum with the dates before and after it (transients;
    shifted inwards when the maximum is the first or last date), or first/middle/last (NT)."""
    num_dates = tf.cast(num_dates, tf.int32)
    start = tf.clip_by_value(tf.cast(max_date_index, tf.int32) - 1, 0, num_dates - 3)
    around_max = start + tf.range(3)
    spread = tf.stack([0, (num_dates - 1) // 2, num_dates - 1])
    return tf.where(is_non_transient, spread, around_max)


def window_bounds(num_dates, end=None, length=None):
    """The dates [start, stop) a sequence model sees, never a date after `end`: the first `end`
    dates (all when None; an object observed for `end` nights so far), and of those the most
    recent `length` (all when None). A live object has only its past, so windows end at a date
    that has been observed, never around a later one. -> (start, stop) int32 scalars."""
    num_dates = tf.cast(num_dates, tf.int32)
    stop = num_dates if end is None else tf.minimum(tf.cast(end, tf.int32), num_dates)
    start = tf.constant(0) if length is None else tf.maximum(stop - length, 0)
    return start, stop


def random_end(num_dates, prefix_fraction, seed):
    """Training's prefix rule: with probability prefix_fraction the object is cut after a random
    date (uniform over MIN_DATES..num_dates: what a live object looks like after that night),
    else all num_dates dates are kept. seed: a stateless seed [2]. -> int32 scalar."""
    num_dates = tf.cast(num_dates, tf.int32)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    cut = tf.random.stateless_uniform([], seeds[0]) < prefix_fraction
    low = tf.minimum(MIN_DATES, num_dates)
    end = tf.random.stateless_uniform([], seeds[1], low, num_dates + 1, dtype=tf.int32)
    return tf.where(cut, end, num_dates)


def kept_dates(num_dates, rate, seed):
    """Training's date dropout: the indices [K] (ascending) of the dates kept when each of
    num_dates dates is left out with probability rate, as if the survey had not observed the
    object that night; at least min(MIN_DATES, num_dates) are kept (the MIN_DATES with the
    highest draws, so a sequence keeps one triplet). seed: a stateless seed [2]."""
    num_dates = tf.cast(num_dates, tf.int32)
    draws = tf.random.stateless_uniform([num_dates], seed)
    floor = tf.math.top_k(draws, tf.minimum(MIN_DATES, num_dates)).values[-1]
    keep = (draws >= rate) | (draws >= floor)
    return tf.cast(tf.where(keep)[:, 0], tf.int32)


def sliding_triplets(images, mjd, stride=1):
    """images [D, H, W], mjd [D] (float64) -> triplets [T, H, W, 3], gaps [T, 2] (years).

    T = (D - 3) // stride + 1; step k stacks dates k*stride + (0, 1, 2) as channels.
    """
    index = triplet_index(tf.shape(images)[0], stride)
    triplets = tf.transpose(tf.gather(images, index), [0, 2, 3, 1])
    times = tf.gather(mjd, index)
    gaps = tf.cast((times[:, 1:] - times[:, :-1]) / DAYS_PER_YEAR, tf.float32)
    return triplets, gaps


def triplet_index(num_dates, stride=1):
    """The dates [T, 3] of each sliding triplet: step k holds dates k*stride + (0, 1, 2)."""
    starts = tf.range(0, num_dates - 2, stride)
    return starts[:, None] + tf.range(3)[None, :]


def sliding_values(values, stride=1):
    """Per-date values [D, F] -> [T, 3F]: each sliding triplet's three dates' values, the
    oldest first (what sliding_triplets stacks as channels, for a per-date vector)."""
    picked = tf.gather(values, triplet_index(tf.shape(values)[0], stride))
    return tf.reshape(picked, [-1, 3 * values.shape[-1]])
