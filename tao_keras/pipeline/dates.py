"""One image per observation date from an object's exposures, in graph-mode TF ops.

An object has several exposures per observation date (CRTS: ~4 a night). Two rules
(PER_DATE), both giving many distinct training sequences per object (the paper's
per-date permutation, also its class-balancing device):

- "choose" (the paper, 3.3): training picks one exposure per date at random on every pass;
  evaluation and serving take the first exposure of each date (the earliest in time).
- "coadd": the pixel mean of the date's exposures (NaN pixels left out), as photometry
  averages a night's measurements (the light-curve baseline does): with 4 exposures the
  noise is halved. Training averages a random subset of each date's exposures on every pass
  (each kept with probability 1/2, at least one); evaluation and serving average them all.
"""

import tensorflow as tf

from tao_keras import contract


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


PER_DATE = contract.PER_DATE
COADD_KEEP = 0.5


def coadd_dates(images, mjd, date_index, num_dates, seed=None):
    """The mean image and mean time of each date: images [n, H, W] -> [D, H, W], mjd [n] -> [D].

    seed None: every exposure of the date. A stateless seed [2]: a random subset, each
    exposure kept with probability COADD_KEEP and one random exposure always (no date is
    empty). A pixel is averaged over the exposures where it is finite; NaN where none is.
    """
    num_dates = tf.cast(num_dates, tf.int32)
    segments = tf.cast(date_index, tf.int32)
    n = tf.shape(segments)[0]
    if seed is None:
        use = tf.ones([n], tf.bool)
    else:
        u = tf.random.stateless_uniform([n], seed=tf.random.experimental.stateless_fold_in(seed, 1))
        forced = choose_exposures(date_index, num_dates, seed)
        use = (u < COADD_KEEP) | tf.scatter_nd(forced[:, None], tf.ones_like(forced, tf.bool), [n])
    finite = tf.math.is_finite(images) & use[:, None, None]
    sums = tf.math.unsorted_segment_sum(tf.where(finite, images, 0.0), segments, num_dates)
    counts = tf.math.unsorted_segment_sum(tf.cast(finite, images.dtype), segments, num_dates)
    coadded = tf.where(counts > 0, sums / tf.maximum(counts, 1.0), float("nan"))
    weights = tf.cast(use, mjd.dtype)
    times = tf.math.unsorted_segment_sum(mjd * weights, segments, num_dates)
    times /= tf.math.unsorted_segment_sum(weights, segments, num_dates)
    return coadded, times


def per_date_images(images, mjd, date_index, num_dates, rule="choose", seed=None):
    """One image and time per date by `rule` (PER_DATE); see the module docstring."""
    if rule == "choose":
        return select_dates(images, mjd, date_index, num_dates, seed)
    if rule == "coadd":
        return coadd_dates(images, mjd, date_index, num_dates, seed)
    raise ValueError(f"per-date rule {rule!r} not in {PER_DATE}")
