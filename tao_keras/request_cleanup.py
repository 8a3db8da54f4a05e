"""One object's exposures as a request sends them -> the usable ones in time order, with the
dates they belong to: the one clean-up of serving_default and the night-by-night `update`.

Rules: an exposure without a finite pixel is dropped (a blank or masked cutout); the rest are
sorted by time (stable: simultaneous exposures keep their order); a new observation date
starts after a gap of at least schema.SAME_DATE_DAYS (the converter's rule). Times must be
finite and inside schema.PLAUSIBLE_MJD, else the call fails with a message naming the batch
row.

The date rule is written twice on purpose: in numpy (`date_index_numpy`, for the converter,
whose reader processes run without TensorFlow) and in TensorFlow (`group_dates`, inside the
served graph). Both read schema.SAME_DATE_DAYS, and tests/test_pipeline.py checks they agree.
TensorFlow is imported only by the graph functions. tools/replay_nights.py holds a third,
numpy copy because it must run with numpy and TensorFlow alone (a broker's script); it takes
the day threshold from the served model's metadata.
"""

import numpy as np

from tfrecords import schema


def date_index_numpy(mjd):
    """Date index int64 [n] of sorted times mjd [n] (numpy): 0 for the first date, +1 at each
    gap of at least schema.SAME_DATE_DAYS."""
    mjd = np.asarray(mjd, np.float64)
    if len(mjd) == 0:
        return np.zeros(0, np.int64)
    return np.concatenate([[0], np.cumsum(np.diff(mjd) >= schema.SAME_DATE_DAYS)]).astype(np.int64)


def check(condition, message_format, values):
    """An assertion whose message is formatted only in the graph (values: list of tensors)."""
    import tensorflow as tf

    return tf.debugging.Assert(condition, [tf.strings.format(message_format, values)])


def plausible_times(mjd, row, after=()):
    """An assertion (run after `after`) that every time of a row lies in schema.PLAUSIBLE_MJD,
    the converter's rule: outside it a time belongs to no survey."""
    import tensorflow as tf

    low, high = schema.PLAUSIBLE_MJD
    with tf.control_dependencies(list(after)):
        return check(
            tf.reduce_all((mjd >= low) & (mjd <= high)),
            f"batch row {{}}: mjd outside any plausible survey ({low:.0f}-{high:.0f}, years "
            "1900-2100)",
            [row],
        )


def usable_in_time_order(images, mjd, row):
    """The graph's clean-up of one object: images [n, H, W], mjd [n] float64 -> (images [k, H,
    W], mjd [k]), the exposures with a finite pixel stably sorted by time, once the times
    are finite and plausible (row: the batch row named in the messages)."""
    import tensorflow as tf

    finite = check(
        tf.reduce_all(tf.math.is_finite(mjd)), "batch row {}: mjd has NaN or infinite values", [row]
    )
    with tf.control_dependencies([plausible_times(mjd, row, [finite])]):
        usable = tf.reduce_any(tf.math.is_finite(images), axis=[1, 2])
    images, mjd = tf.boolean_mask(images, usable), tf.boolean_mask(mjd, usable)
    order = tf.argsort(mjd, stable=True)
    return tf.gather(images, order), tf.gather(mjd, order)


def group_dates(mjd):
    """Date index int64 [n] of sorted times mjd float64 [n] in the graph: a new date after a gap
    of at least schema.SAME_DATE_DAYS (date_index_numpy's rule)."""
    import tensorflow as tf

    new_date = tf.cast(mjd[1:] - mjd[:-1] >= schema.SAME_DATE_DAYS, tf.int64)
    return tf.concat(
        [tf.zeros([tf.minimum(tf.size(mjd), 1)], tf.int64), tf.cumsum(new_date)], axis=0
    )
