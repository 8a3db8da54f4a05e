"""Model inputs from one raw image per date: the steps shared by the tf.data pipeline and the
exported SavedModel, so that training, evaluation and serving see the same numbers."""

import tensorflow as tf

from tao_keras.pipeline import forced_photometry, windows
from tao_keras.pipeline import normalization as pixels


def center_crop(images, size):
    """[..., H, W] -> [..., size, size], the central pixels (the object sits at the RoI centre);
    unchanged when size is None or the images are that size already."""
    if size is None:
        return images
    height, width = images.shape[-2], images.shape[-1]
    if height is not None and (height < size or width < size):
        raise ValueError(f"cannot crop {height}x{width} images to {size}x{size}")
    top = (tf.shape(images)[-2] - size) // 2
    left = (tf.shape(images)[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def prepare_dates(
    images,
    mjd,
    sequence_length=None,
    normalization="object",
    model_roi_size=None,
    end=None,
    photometry=False,
):
    """Raw images [D, H, W], mjd [D] (float64), one per date in time order -> the prepared
    dates of the window windows.window_bounds(D, end, sequence_length): the first `end` dates
    (all when None) and of those the most recent `sequence_length` (all when None), as
    {"images": [D', h, w] normalized, "mjd": [D'], and with photometry=True "photometry":
    [D', taonet.PHOTOMETRY_PER_DATE] (forced_photometry.features)}.

    The noise scale comes from the object's first dates (before any date is dropped), the rest
    of the normalization is per image, so the dates are chosen first and only those kept are
    normalized. normalization="image" divides each image by its own noise scale instead
    (the former rule, kept for comparison: it does not preserve flux ratios between dates).
    model_roi_size: the model's RoI side when smaller than the records' (central crop after
    normalization, so the sky statistics, and the photometry's annulus, come from the whole
    cutout)."""
    reference = pixels.object_scale(images, normalization)
    start, stop = windows.window_bounds(tf.shape(images)[0], end, sequence_length)
    images, mjd = images[start:stop], mjd[start:stop]
    prepared = {
        "images": center_crop(pixels.normalize_images(images, reference), model_roi_size),
        "mjd": mjd,
    }
    if photometry:
        scale = pixels.image_scales(images) if reference is None else reference
        prepared["photometry"] = forced_photometry.features(images, scale)
    return prepared


def sequence_features(prepared, stride=1):
    """prepare_dates' output -> {"images": [T, h, w, 3], "dt": [T, 2], "length": T, and
    "photometry": [T, taonet.PHOTOMETRY_WIDTH] when prepared has it}."""
    triplets, gaps = windows.sliding_triplets(prepared["images"], prepared["mjd"], stride)
    features = {"images": triplets, "dt": gaps, "length": tf.shape(triplets)[0]}
    if "photometry" in prepared:
        features["photometry"] = windows.sliding_values(prepared["photometry"], stride)
    return features


def evaluation_features(images, mjd, contract, end=None):
    """One object's model input without augmentation (evaluation and serving) as a model of
    `contract` (tao_keras.contract.ModelContract: its dates seen, normalization, crop, stride
    and photometry input) takes it; images [D, H, W] and mjd [D] one per date in time order,
    end as prepare_dates'."""
    prepared = prepare_dates(
        images,
        mjd,
        contract.sequence_length,
        contract.normalization,
        contract.model_roi_size,
        end,
        contract.architecture.photometry,
    )
    return sequence_features(prepared, contract.stride)
