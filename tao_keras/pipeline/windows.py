"""From one image per date to model inputs: triplets (DenseNet) or sliding-triplet sequences.

Triplets stack three dates as channels (early fusion). Sequences slide a window of three
consecutive dates along the object's dates; each step also carries the time gaps inside
its triplet, in years (the paper's relative-date feature).
"""

import tensorflow as tf

DAYS_PER_YEAR = 365.25


def triplet_dates(num_dates, max_date_index, is_non_transient):
    """Dates [3] of the triplet: the maximum with the dates before and after it (transients;
    shifted inwards when the maximum is the first or last date), or first/middle/last (NT)."""
    num_dates = tf.cast(num_dates, tf.int32)
    start = tf.clip_by_value(tf.cast(max_date_index, tf.int32) - 1, 0, num_dates - 3)
    around_max = start + tf.range(3)
    spread = tf.stack([0, (num_dates - 1) // 2, num_dates - 1])
    return tf.where(is_non_transient, spread, around_max)


def fix_length(images, mjd, length):
    """Exactly `length` dates: the central ones when longer; when shorter, the first date
    replicated before and the last after (the extra half rounded to the end)."""
    num = tf.shape(images)[0]
    extra = length - num
    left = tf.where(extra < 0, (-extra) // 2, -(extra // 2))  # start offset into the dates
    index = tf.clip_by_value(tf.range(length) + left, 0, num - 1)
    return tf.gather(images, index), tf.gather(mjd, index)


def sliding_triplets(images, mjd, stride=1):
    """images [D, H, W], mjd [D] (float64) -> triplets [T, H, W, 3], gaps [T, 2] (years).

    T = (D - 3) // stride + 1; step k stacks dates k*stride + (0, 1, 2) as channels.
    """
    num = tf.shape(images)[0]
    starts = tf.range(0, num - 2, stride)
    index = starts[:, None] + tf.range(3)[None, :]
    triplets = tf.transpose(tf.gather(images, index), [0, 2, 3, 1])
    times = tf.gather(mjd, index)
    gaps = tf.cast((times[:, 1:] - times[:, :-1]) / DAYS_PER_YEAR, tf.float32)
    return triplets, gaps
