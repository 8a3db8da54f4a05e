"""Model inputs from one raw image per date: the steps shared by the tf.data pipeline and the
exported SavedModel, so that training, evaluation and serving see the same numbers."""

import tensorflow as tf

from tao_keras.pipeline import normalization, windows


def prepare_dates(images, mjd, sequence_length=None, scale="object"):
    """Raw images [D, H, W], mjd [D] (float64), one per date in time order -> normalized images
    and times of exactly `sequence_length` dates (all D dates when None). The noise scale comes
    from the object's first dates (before any date is dropped), the rest of the normalization
    is per image, so the dates are chosen first and only those kept are normalized.
    scale="image" divides each image by its own noise scale instead (the former rule, kept
    for comparison: it does not preserve flux ratios between dates)."""
    reference = normalization.object_scale(images, scale)
    if sequence_length is not None:
        images, mjd = windows.fix_length(images, mjd, sequence_length)
    return normalization.normalize_images(images, reference), mjd


def sequence_features(images, mjd, stride=1):
    """Prepared images [D, H, W], mjd [D] -> {"images": [T, H, W, 3], "dt": [T, 2], "length": T}."""
    triplets, gaps = windows.sliding_triplets(images, mjd, stride)
    return {"images": triplets, "dt": gaps, "length": tf.shape(triplets)[0]}


def evaluation_features(images, mjd, sequence_length=None, stride=1, scale="object"):
    """One object's model input without augmentation (evaluation and serving)."""
    return sequence_features(*prepare_dates(images, mjd, sequence_length, scale), stride)
