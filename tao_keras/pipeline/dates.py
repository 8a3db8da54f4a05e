"""Per-date choice of exposures (paper 3.3), in graph-mode TF ops.

An object has several exposures per observation date. Training picks one at random per
date on every pass, so each object yields many distinct sequences (the paper's
per-date permutation, also its class-balancing device). Evaluation and serving take the
first exposure of each date (the earliest in time), a fixed and documented choice.
"""

import tensorflow as tf

from tfrecords import schema


def group_dates(mjd):
    """Date index int64 [n] of sorted times mjd float64 [n]: a new date after a gap of at least
    schema.SAME_DATE_DAYS, the converter's rule (used where records are not at hand: serving)."""
    new_date = tf.cast(mjd[1:] - mjd[:-1] >= schema.SAME_DATE_DAYS, tf.int64)
    return tf.concat(
        [tf.zeros([tf.minimum(tf.size(mjd), 1)], tf.int64), tf.cumsum(new_date)], axis=0
    )


def exposures_per_date(date_index, num_dates):
    """Row starts and counts of each date in a sorted date_index [n] -> ([D], [D]) int32."""
    counts = tf.math.bincount(
        tf.cast(date_index, tf.int32), minlength=num_dates, maxlength=num_dates
    )
    starts = tf.cumsum(counts, exclusive=True)
    return starts, counts


def choose_exposures(date_index, num_dates, seed=None):
    """Index [D] of one exposure per date: random with a stateless seed [2], or the first."""
    starts, counts = exposures_per_date(date_index, num_dates)
    if seed is None:
        return starts
    u = tf.random.stateless_uniform(tf.shape(counts), seed=seed)
    offset = tf.minimum(tf.cast(u * tf.cast(counts, tf.float32), tf.int32), counts - 1)
    return starts + offset


def select_dates(images, mjd, date_index, num_dates, seed=None):
    """One image and time per date: images [n, H, W] -> [D, H, W], mjd [n] -> [D] (float64)."""
    index = choose_exposures(date_index, num_dates, seed)
    return tf.gather(images, index), tf.gather(mjd, index)
