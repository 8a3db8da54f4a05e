"""The night-by-night update as ONNX, for brokers that run models with onnxruntime alone.

The network's one time step (what streaming.NightUpdate.step computes: the DenseNet on the
new triplet, each GRU cell once, the aggregation, the classifier) is written as ONNX from the
weights (tao_keras.onnx_step); the night's clean-up, the normalization and the state's
bookkeeping run in numpy (tao_keras.update_numpy), with the constants written beside the
model. `verify` runs both runtimes night by night on recorded objects and fails loudly when
they disagree.
"""

import json
import os

import numpy as np

from tao_keras import update_numpy

TOLERANCE = 1e-4


class VerificationError(RuntimeError):
    """The ONNX update disagrees with the SavedModel's (the message gives the numbers)."""


def write(updater, directory, metadata_text):
    """Write update_step.onnx (tao_keras.onnx_step) and update_step.json into `directory` for
    a NightUpdate (its float32 model, its contract and temperature); metadata_text: the
    SavedModel's metadata JSON (kept whole: the state database's identity, the class names)."""
    import onnx

    from tao_keras import onnx_step
    from tao_keras.pipeline import normalization, windows
    from tfrecords import schema

    contract = updater.contract
    proto = onnx_step.step_model(updater.model, contract.architecture, len(contract.class_names))
    onnx.checker.check_model(proto)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, update_numpy.STEP_MODEL), "wb") as f:
        f.write(proto.SerializeToString())
    spec = {
        "metadata": metadata_text,
        "gru_units": [g.cell.units for g in updater.grus],
        "normalization": contract.normalization,
        "per_date": contract.per_date,
        "model_roi_size": contract.model_roi_size,
        "min_dates": contract.min_dates,
        "same_date_days": schema.SAME_DATE_DAYS,
        "days_per_year": windows.DAYS_PER_YEAR,
        "statistics_stride": normalization.STATISTICS_STRIDE,
        "reference_dates": normalization.REFERENCE_DATES,
        "min_scale": normalization.MIN_SCALE,
        "photometry": _photometry_spec(contract),
        "photometry_statistics": _statistics_spec(contract),
        "temperature": updater.temperature,
        "tag": updater.tag,
        "opset": onnx_step.OPSET,
        "written_with": f"onnx {onnx.__version__}",
    }
    with open(os.path.join(directory, update_numpy.SPEC), "w") as f:
        json.dump(spec, f, indent=1)


def _statistics_spec(contract):
    """The whole-sequence photometry statistics' constants for update_numpy (the state's
    moments, the middle date's column, the floors), None for a model without them."""
    if not contract.architecture.photometry_statistics:
        return None
    from tao_keras import streaming
    from tao_keras.models import layers as tao_layers
    from tao_keras.models import taonet

    return {
        "moments": list(streaming.MOMENTS),
        # the von Neumann ratio among the statistics fed to the step graph (the GRU's side or
        # the statistics expert reads it: onnx_step.statistics_width)
        "eta": contract.architecture.photometry_eta or contract.architecture.statistics_expert,
        "signal_index": taonet.MIDDLE_SIGNAL,
        "variance_floor": tao_layers.VARIANCE_FLOOR,
        "error_floor": tao_layers.ERROR_FLOOR,
        "asinh_clip": tao_layers.ASINH_CLIP,
    }


def _photometry_spec(contract):
    """The forced photometry's constants for update_numpy (the aperture's pixels and weights,
    the annulus' pixels, the clipping), None for a model without the photometry input."""
    if not contract.architecture.photometry:
        return None
    from tao_keras.lightcurves.photometry import PhotometryConfig
    from tao_keras.pipeline import forced_photometry

    config = PhotometryConfig()
    inside, weights, annulus = forced_photometry.geometry(
        contract.roi_size, contract.roi_size, config
    )
    return {
        "aperture": inside.tolist(),
        "weights": weights.tolist(),
        "annulus": annulus.tolist(),
        "clip_sigma": config.clip_sigma,
        "clip_iterations": forced_photometry.CLIP_ITERATIONS,
        "min_scale": forced_photometry.MIN_SCALE,
    }


def recorded_objects(records_dir, split="test", limit=16):
    """Up to `limit` objects [(images [n, H, W], mjd [n])] of a split of converted records
    (every class's shards in turn): what `verify` replays."""
    from tao_keras import classes
    from tfrecords import manifest, parser

    shards = classes.task_shards(manifest.load(records_dir), records_dir, split, "multiclass")
    paths = [p for label in sorted(shards) for p, _ in shards[label]]
    roi = manifest.load(records_dir)["roi_size"]
    out = []
    for record in parser.read_records(paths, roi):
        out.append((record.images, record.mjd))
        if len(out) == limit:
            break
    return out


def _whole_sequences(saved, onnx, objects):
    """(largest probability difference, classes equal) between serving_default and the ONNX
    runtime's classify on the objects' whole sequences."""
    import tensorflow as tf

    images, mjd, counts = update_numpy.pack(objects, saved.roi_size)
    expected = saved.model.signatures["serving_default"](
        images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
    )
    expected = {name: value.numpy() for name, value in expected.items()}
    got = onnx.classify(images, mjd, counts)
    difference = float(np.abs(expected["probabilities"] - got["probabilities"]).max())
    return difference, bool(np.array_equal(expected["class_id"], got["class_id"]))


def verify(saved_model_dir, objects):
    """Compare the ONNX runtime (saved_model_dir/onnx) with the SavedModel on objects
    [(images, mjd)] (each with at least 3 dates): night by night against `update`, and whole
    sequences against serving_default -> {"objects", "nights", "max_probability_difference",
    "classes_identical"}; VerificationError when a probability differs by more than
    TOLERANCE or a class or date count differs."""
    from tao_keras import alert_stream

    saved = alert_stream.SavedModelRuntime(saved_model_dir)
    onnx = update_numpy.OnnxUpdate(os.path.join(saved_model_dir, "onnx"))
    nights = [update_numpy.object_nights(images, mjd) for images, mjd in objects]
    reference = update_numpy.replay(saved.update, nights, saved.state_size, saved.roi_size)
    got = update_numpy.replay(onnx.update, nights, saved.state_size, saved.roi_size)
    whole = _whole_sequences(saved, onnx, objects)
    difference = max(
        [
            float(np.abs(a["probabilities"] - b["probabilities"]).max())
            for a, b in zip(reference, got)
        ]
        + [whole[0]]
    )
    same = whole[1] and all(
        np.array_equal(a["class_id"], b["class_id"])
        and np.array_equal(a["num_dates"], b["num_dates"])
        for a, b in zip(reference, got)
    )
    result = {
        "objects": len(objects),
        "nights": len(reference),
        "max_probability_difference": difference,
        "classes_identical": bool(same),
    }
    if difference > TOLERANCE or not same:
        raise VerificationError(
            f"{saved_model_dir}/onnx disagrees with the SavedModel: probabilities differ by up "
            f"to {difference:.2e} (tolerance {TOLERANCE:g}), classes identical: {same}"
        )
    return result
