"""Forced aperture photometry of each date's image, in the graph: TAO-Net's per-date
photometry input (TAONetConfig.photometry).

The same measurement as the light-curve baseline's (tao_keras.lightcurves.photometry.measure,
whose PhotometryConfig sets the aperture and annulus): a circular aperture at the RoI centre
with exact pixel overlap weights, the local background as the sigma-clipped median of an
annulus (pixels whose centres lie in it, as photutils' ApertureStats takes them), bad (NaN)
pixels left out. It runs in TensorFlow on the records' whole RoI, before the model's crop, so
the pipeline, the SavedModel and the night-by-night update compute it from the same pixels
and a request stays pixels and times only.

Two numbers per date, in units of the object's noise scale (the pixel normalization's), so
they keep its invariances (an added sky level or a gain changes neither):
  signal = asinh(flux / (noise_scale * sqrt(aperture area))): the flux as a signal-to-noise
           ratio against the object's reference noise (linear near the noise, logarithmic for
           bright stars);
  noise  = log(background scatter / noise_scale): how noisy this date is against the
           reference (Moon, clouds).
The flux error is the background term only (scatter x sqrt(area)): the source's Poisson term
needs the gain in electrons, which a scale-free input cannot know; for the faint sources
that matter it is the whole error.
"""

import functools

import numpy as np
import tensorflow as tf
from photutils.aperture import CircularAperture

from tao_keras.lightcurves.photometry import PhotometryConfig
from tao_keras.pipeline.normalization import MIN_SCALE

# photutils' SigmaClip stops when nothing changes (at most maxiters=5); a graph runs all 5
CLIP_ITERATIONS = 5


@functools.lru_cache(maxsize=16)
def geometry(height, width, config=PhotometryConfig()):
    """The aperture's pixel indices [P] and exact overlap weights [P] (float32), and the
    annulus' pixel indices [A], in a flattened height x width image centred as `measure`
    centres it; ValueError when the whole annulus does not fit inside the image."""
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    weights = (
        CircularAperture(centre, r=config.radius).to_mask(method="exact").to_image((height, width))
    )
    y, x = np.mgrid[:height, :width]
    r = np.hypot(x - centre[0], y - centre[1])
    if min(height, width) < config.minimum_roi:
        raise ValueError(
            f"forced photometry: the background annulus ({config.annulus[0]}-"
            f"{config.annulus[1]} px from the centre) does not fit in a {height}x{width} RoI; "
            f"the records' RoI must be at least {config.minimum_roi} pixels"
        )
    annulus = np.flatnonzero((r >= config.annulus[0]) & (r <= config.annulus[1]))
    inside = np.flatnonzero(weights.ravel() > 0)
    return inside, weights.ravel()[inside].astype(np.float32), annulus


def _clipped_background(values, config):
    """Annulus pixels [N, A] (NaN = bad) -> sigma-clipped (median [N], std [N]), photutils'
    rule (median centre, population std, config.clip_sigma both sides); NaN when no finite
    pixel. Sorted once: every clipping keeps a contiguous run of the sorted values."""
    finite = tf.math.is_finite(values)
    count = tf.reduce_sum(tf.cast(finite, tf.int32), axis=1)
    ordered = tf.sort(tf.where(finite, values, float("inf")), axis=1)
    # centred on a first median so that the running sums stay exact in float32
    first = tf.gather(ordered, tf.maximum(count - 1, 0)[:, None] // 2, batch_dims=1)[:, 0]
    centred = tf.where(tf.math.is_finite(ordered), ordered - first[:, None], 0.0)
    zeros = tf.zeros_like(first)[:, None]
    sums = tf.concat([zeros, tf.cumsum(centred, axis=1)], 1)
    squares = tf.concat([zeros, tf.cumsum(centred**2, axis=1)], 1)

    def statistics(low, high):
        n = tf.maximum(high - low, 1)
        middle = tf.gather(ordered, low[:, None] + (n[:, None] - 1) // 2, batch_dims=1)[:, 0]
        upper = tf.gather(ordered, low[:, None] + n[:, None] // 2, batch_dims=1)[:, 0]
        total = (
            tf.gather(sums, high[:, None], batch_dims=1)[:, 0]
            - tf.gather(sums, low[:, None], batch_dims=1)[:, 0]
        )
        total2 = (
            tf.gather(squares, high[:, None], batch_dims=1)[:, 0]
            - tf.gather(squares, low[:, None], batch_dims=1)[:, 0]
        )
        mean = total / tf.cast(n, tf.float32)
        std = tf.sqrt(tf.maximum(total2 / tf.cast(n, tf.float32) - mean**2, 0.0))
        return 0.5 * (middle + upper), std

    low, high = tf.zeros_like(count), count
    for _ in range(CLIP_ITERATIONS):
        median, std = statistics(low, high)
        bounds = tf.stack(
            [median - config.clip_sigma * std, median + config.clip_sigma * std],
            axis=1,
        )
        low = tf.cast(tf.searchsorted(ordered, bounds[:, :1], side="left")[:, 0], tf.int32)
        high = tf.cast(tf.searchsorted(ordered, bounds[:, 1:], side="right")[:, 0], tf.int32)
        high = tf.minimum(high, count)
    median, std = statistics(low, high)
    usable = (count > 0) & (high > low)
    return (
        tf.where(usable, median, float("nan")),
        tf.where(usable, std, float("nan")),
    )


def measure_graph(images, config=PhotometryConfig()):
    """Raw images [D, H, W] (NaN = bad; H and W known) -> (flux [D], error [D], background
    scatter [D]) in ADU: `measure`'s forced photometry with the background-only error; NaN
    where the annulus has no finite pixel."""
    images = tf.convert_to_tensor(images, tf.float32)
    height, width = images.shape[-2], images.shape[-1]
    if height is None or width is None:
        raise ValueError("forced photometry needs images of a known RoI size")
    inside, weights, annulus = geometry(int(height), int(width), config)
    flat = tf.reshape(images, [-1, int(height) * int(width)])
    background, scatter = _clipped_background(tf.gather(flat, annulus, axis=1), config)
    aperture = tf.gather(flat, inside, axis=1)
    good = tf.math.is_finite(aperture)
    source = tf.where(good, aperture - background[:, None], 0.0)
    flux = tf.reduce_sum(source * weights, axis=1)
    area = tf.reduce_sum(tf.where(good, weights, 0.0), axis=1)
    flux = tf.where(tf.math.is_finite(background), flux, float("nan"))
    return flux, scatter * tf.sqrt(area), scatter


def features(images, noise_scale, config=PhotometryConfig()):
    """Raw images [D, H, W] of one object's dates and its noise scale (a scalar, or [D], one
    per image) -> float32 [D, 2] (taonet.PHOTOMETRY_PER_DATE): (signal, noise) as the module
    docstring defines them; zeros for a date without a usable annulus."""
    images = tf.convert_to_tensor(images, tf.float32)
    _, weights, _ = geometry(int(images.shape[-2]), int(images.shape[-1]), config)
    flux, _, scatter = measure_graph(images, config)
    scale = tf.maximum(tf.cast(noise_scale, tf.float32), MIN_SCALE) * tf.ones_like(flux)
    area = float(np.sum(weights))
    signal = tf.math.asinh(flux / (scale * np.sqrt(area)))
    noise = tf.math.log(tf.maximum(scatter, MIN_SCALE) / scale)
    out = tf.stack([signal, noise], axis=1)
    return tf.where(tf.math.is_finite(out), out, 0.0)
