"""The `update` signature (and whole sequences, by replaying it) without TensorFlow: numpy
around an ONNX model of one time step.

The exported SavedModel's `update` (tao_keras.streaming.NightUpdate) does three things: the
night's clean-up and one image per date, the pixel normalization and the triplet with its
date gaps (and its forced photometry, for a model with that input), and the network's one
step (the DenseNet on the new triplet, one step of each GRU, the aggregation over time, the
classifier). Only the last is written as ONNX (tao_keras.onnx_step: the rest uses tf.map_fn
and assertions that ONNX converters cannot translate), so the first two are written here
again in numpy, with the same arithmetic in float32 (the photometry's background in
float64; tests/test_onnx_export.py compares this module with the SavedModel's `update`,
night by night, to 1e-4). The constants (date rule, normalization's sampling, the
photometry's aperture and annulus, the state's layout, temperature, the model's tag) come
from the export's `update_step.json`, so this module needs numpy and onnxruntime alone.

Layout of an ONNX export (tao_keras.onnx_export writes it): EXPORT/<version>/onnx/
update_step.onnx (inputs triplets [B, h, w, 3] normalized and cropped, gaps [B, 2] years,
hidden_<i> [B, H] per GRU, total [B, H], steps [B], step [B] bool, photometry [B, 6] for a
model with the per-date photometry input, and statistics [B, 7] for a model with its
whole-sequence statistics (their running moments live in the state and are updated here, as
streaming.update_moments does); outputs hidden_<i>, total, steps, probabilities
[B, C] before calibration) and update_step.json.
"""

import json
import os

import numpy as np

from tao_keras import calibration, request_cleanup

STEP_MODEL = "update_step.onnx"
SPEC = "update_step.json"
BOOKKEEPING = ("steps", "dates", "scale", "span", "tag")  # streaming.BOOKKEEPING's order


def _statistics(images, stride):
    """normalization._statistics in numpy: [N, H, W] -> (flat, finite, median, scale)."""
    flat = images.reshape(len(images), -1)
    finite = np.isfinite(flat)
    sample, sample_finite = flat[:, ::stride], finite[:, ::stride]
    count = sample_finite.sum(axis=1)
    ordered = np.sort(np.where(sample_finite, sample, np.float32(np.inf)), axis=1)

    def percentile(q):
        position = np.float32(q) * np.maximum(count - 1, 0).astype(np.float32)
        index = np.round(position).astype(np.int64)
        value = np.take_along_axis(ordered, index[:, None], axis=1)[:, 0]
        return np.where(count > 0, value, np.float32(0.0)).astype(np.float32)

    median = percentile(0.5)
    scale = (np.float32(0.5) * (percentile(0.8413) - percentile(0.1587))).astype(np.float32)
    return flat, finite, median, scale


def reference_scale(images, spec):
    """normalization.reference_scale: the median usable scale of the first reference dates."""
    _, _, _, scales = _statistics(images[: spec["reference_dates"]], spec["statistics_stride"])
    usable = np.sort(scales[scales > spec["min_scale"]])
    ordered = np.concatenate([usable, np.float32([spec["min_scale"]])])
    return ordered[max(len(usable) - 1, 0) // 2]


def normalize_images(images, noise_scale, spec):
    """normalization.normalize_images: [N, H, W] raw -> asinh of the robust z, 0 for NaN."""
    flat, finite, median, own = _statistics(images, spec["statistics_stride"])
    minimum = np.float32(spec["min_scale"])
    if noise_scale is None:
        scale = np.maximum(own, minimum)
    else:
        scale = np.full_like(median, max(np.float32(noise_scale), minimum))
    z = (flat - median[:, None]) / scale[:, None]
    return np.where(finite, np.arcsinh(z), np.float32(0.0)).astype(np.float32).reshape(images.shape)


def _clipped_background(values, spec):
    """forced_photometry's sigma-clipped (median, std) of one image's annulus pixels [A]."""
    ordered = np.sort(values[np.isfinite(values)])
    if ordered.size == 0:
        return np.nan, np.nan
    low, high = 0, ordered.size
    for _ in range(spec["clip_iterations"]):
        kept = ordered[low:high]
        median, std = np.median(kept), kept.std()
        low = np.searchsorted(ordered, median - spec["clip_sigma"] * std, side="left")
        high = np.searchsorted(ordered, median + spec["clip_sigma"] * std, side="right")
    kept = ordered[low:high]
    return (np.median(kept), kept.std()) if kept.size else (np.nan, np.nan)


def photometry_features(images, noise_scale, spec):
    """forced_photometry.features in numpy: raw images [N, H, W] and the noise scale (a
    scalar or [N]) -> float32 [N, 2] (signal, noise), zeros where no annulus pixel is finite."""
    p = spec["photometry"]
    flat = images.reshape(len(images), -1).astype(np.float64)
    weights = np.asarray(p["weights"], np.float64)
    scale = np.maximum(
        np.broadcast_to(np.asarray(noise_scale, np.float64), len(images)), p["min_scale"]
    )
    out = np.zeros((len(images), 2), np.float32)
    for i, pixels in enumerate(flat):
        background, scatter = _clipped_background(pixels[p["annulus"]], p)
        if not np.isfinite(background):
            continue
        aperture = pixels[p["aperture"]]
        good = np.isfinite(aperture)
        flux = np.sum(np.where(good, aperture - background, 0.0) * weights)
        signal = np.arcsinh(flux / (scale[i] * np.sqrt(weights.sum())))
        noise = np.log(max(scatter, p["min_scale"]) / scale[i])
        out[i] = [signal, noise]
    return out


def update_moments(moments, value, weight, count, step):
    """streaming.update_moments in numpy: the running moments {name: [B]} with one value and
    chi2 weight [B] added where step [B] holds; count [B]: the values seen before."""
    n = count + np.float32(1.0)
    delta = value - moments["mean"]
    total_weight = moments["weight"] + weight
    share = np.divide(weight, total_weight, out=np.zeros_like(weight), where=total_weight != 0)
    weighted_delta = value - moments["weighted_mean"]
    weighted_mean = moments["weighted_mean"] + share * weighted_delta
    first = count < 1
    new = {
        "mean": moments["mean"] + delta / n,
        "m2": moments["m2"] + delta * delta * count / n,
        "m3": moments["m3"]
        + delta**3 * count * (count - 1) / (n * n)
        - np.float32(3.0) * delta * moments["m2"] / n,
        "weight": total_weight,
        "weighted_mean": weighted_mean,
        "weighted_m2": moments["weighted_m2"] + weight * weighted_delta * (value - weighted_mean),
        "max": np.where(first, value, np.maximum(moments["max"], value)),
        "min": np.where(first, value, np.minimum(moments["min"], value)),
    }
    if "successive" in moments:  # exports before these two moments lack them
        new["last"] = value
        new["successive"] = moments["successive"] + np.where(
            first, np.float32(0.0), np.square(value - moments["last"])
        )
    return {k: np.where(step, new[k], moments[k]).astype(np.float32) for k in moments}


def photometry_statistics(moments, count, spec):
    """streaming.statistics (the chi2 from the weighted moments, then
    tao_layers.statistics_from_moments) in numpy: the moments of count [B] values -> the 7
    whole-sequence statistics [B, 7], 8 with spec["eta"] (the von Neumann ratio last)."""
    pairs = np.maximum(count - np.float32(1.0), np.float32(1.0))
    count = np.maximum(count, np.float32(1.0))
    chi2 = moments["weighted_m2"] + moments["weight"] * np.square(
        moments["weighted_mean"] - moments["mean"]
    )
    floor = np.float32(spec["variance_floor"])
    variance = moments["m2"] / count + floor
    sd = np.sqrt(variance)
    mean = moments["mean"]
    columns = [
        mean,
        np.log(sd),
        moments["max"] - mean,
        mean - moments["min"],
        np.log1p(chi2 / count),
        (moments["m3"] / count) / (sd * sd * sd),
        np.log(count),
    ]
    if spec.get("eta"):
        columns.append(np.log((moments["successive"] / pairs + floor) / variance))
    return np.stack(columns, axis=-1).astype(np.float32)


def photometry_point(photometry, spec):
    """tao_layers.photometry_point of the middle dates of photometry [B, 6] -> (value, weight)."""
    signal = photometry[:, spec["signal_index"]]
    noise = photometry[:, spec["signal_index"] + 1]
    clip = np.float32(spec["asinh_clip"])
    error = np.exp(noise) / np.cosh(np.clip(signal, -clip, clip))
    return signal, (np.float32(1.0) / np.square(error + np.float32(spec["error_floor"])))


def center_crop(images, size):
    top, left = (images.shape[-2] - size) // 2, (images.shape[-1] - size) // 2
    return images[..., top : top + size, left : left + size]


def one_night(images, mjd, spec, row):
    """One row's exposures -> (image [H, W], time, usable, first, last): blank exposures
    dropped, sorted by time, one image for the date by the per-date rule ("choose": the
    first; "coadd": the finite mean of each pixel and the mean time). ValueError naming the
    row for non-finite times or exposures spanning more than one date."""
    if not np.all(np.isfinite(mjd)):
        raise ValueError(f"batch row {row}: mjd has NaN or infinite values")
    usable = np.isfinite(images).any(axis=(1, 2))
    images, mjd = images[usable], mjd[usable]
    order = np.argsort(mjd, kind="stable")
    images, mjd = images[order], mjd[order]
    if len(mjd) == 0:
        side = images.shape[-1]
        return np.zeros((side, side), np.float32), 0.0, False, 0.0, 0.0
    if np.any(np.diff(mjd) >= spec["same_date_days"]):
        raise ValueError(
            f"batch row {row}: the exposures span more than one observation date; send one "
            "date per update"
        )
    if spec["per_date"] == "choose":
        return images[0], mjd[0], True, mjd[0], mjd[-1]
    finite = np.isfinite(images)
    sums = np.where(finite, images, np.float32(0.0)).sum(axis=0, dtype=np.float32)
    counts = finite.sum(axis=0).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        image = np.where(counts > 0, sums / np.maximum(counts, 1.0), np.float32(np.nan))
    return image.astype(np.float32), float(np.mean(mjd)), True, mjd[0], mjd[-1]


def object_nights(images, mjd):
    """One object's exposures [n, H, W], mjd [n] -> [(images [k, H, W], mjd [k])] per date in
    time order: blank exposures dropped, sorted, grouped by request_cleanup's date rule."""
    usable = np.isfinite(images).any(axis=(1, 2))
    images, mjd = images[usable], mjd[usable]
    order = np.argsort(mjd, kind="stable")
    images, mjd = images[order], mjd[order]
    index = request_cleanup.date_index_numpy(mjd)
    return [(images[index == d], mjd[index == d]) for d in range(len(set(index.tolist())))]


def pack(rows, side):
    """Rows of exposures [(images [k, side, side], mjd [k]) or None] -> the padded request
    images [B, E, side, side] (NaN beyond each row's k), mjd [B, E] (0 there), num_exposures
    [B] (0 for None), E the largest k (at least 1)."""
    width = max([len(r[1]) for r in rows if r is not None] + [1])
    images = np.full((len(rows), width, side, side), np.nan, np.float32)
    mjd = np.zeros((len(rows), width))
    counts = np.zeros(len(rows), np.int32)
    for i, row in enumerate(rows):
        if row is not None:
            counts[i] = len(row[1])
            images[i, : counts[i]], mjd[i, : counts[i]] = row
    return images, mjd, counts


def replay(update, nights, state_size, side):
    """Objects' nights [[(images [k, side, side], mjd [k]) per night] per object] through an
    update function (OnnxUpdate.update, or the SavedModel's signature on numpy), one call per
    night for all (empty calls for objects with fewer nights change nothing) -> the outputs
    after each call. tools/replay_nights.replay is its twin for a SavedModel: that module needs
    TensorFlow to import, this one must not."""
    batch = len(nights)
    inputs = (
        np.zeros((batch, state_size), np.float32),
        np.zeros((batch, 2, side, side), np.float32),
        np.zeros((batch, 2), np.float64),
    )
    calls = []
    for k in range(max(len(n) for n in nights)):
        night = pack([found[k] if k < len(found) else None for found in nights], side)
        out = update(*inputs, *night)
        inputs = (out["state"], out["previous_images"], out["previous_mjd"])
        calls.append(out)
    return calls


class OnnxUpdate:
    """The `update` signature's function on numpy arrays, run by onnxruntime.

    directory: an export's onnx/ folder (update_step.onnx and update_step.json). update()
    takes and returns what the SavedModel's `update` does (class_name as bytes)."""

    def __init__(self, directory):
        import onnxruntime

        with open(os.path.join(directory, SPEC)) as f:
            self.spec = json.load(f)
        self.session = onnxruntime.InferenceSession(
            os.path.join(directory, STEP_MODEL), providers=["CPUExecutionProvider"]
        )
        self.metadata = json.loads(self.spec["metadata"])  # the SavedModel's metadata JSON
        self.class_names = np.array([n.encode() for n in self.metadata["class_names"]], object)

    def classify(self, images, mjd, num_exposures):
        """Whole sequences, as serving_default answers them: images [B, E, H, W] (NaN = bad),
        mjd [B, E], num_exposures [B] -> {"probabilities", "class_id", "class_name",
        "num_dates"} after every night of each object, replayed through `update` (which
        equals the whole-sequence answer, tests/test_streaming.py). ValueError for an export
        that serves only the most recent S dates, or an object with fewer than 3 dates."""
        if self.metadata["sequence_length"] is not None:
            raise ValueError(
                "this export serves the most recent S dates; the ONNX runtime replays every "
                "night, so it classifies whole sequences only for exports that use all dates"
            )
        images, mjd = np.asarray(images, np.float32), np.asarray(mjd, np.float64)
        nights = [object_nights(images[i, :n], mjd[i, :n]) for i, n in enumerate(num_exposures)]
        for i, found in enumerate(nights):
            if len(found) < self.spec["min_dates"]:
                raise ValueError(
                    f"batch row {i}: {len(found)} observation date(s) with usable pixels; at "
                    f"least {self.spec['min_dates']} are needed"
                )
        state_size = int(self.metadata["update"]["state_size"])
        return replay(self.update, nights, state_size, self.metadata["roi_size"])[-1]

    def _split_state(self, state):
        """streaming.NightUpdate._split_state: (hidden, total, moments, bookkeeping)."""
        sizes = self.spec["gru_units"] + [self.spec["gru_units"][-1]]
        edges = np.cumsum(sizes)
        *hidden, total, rest = np.split(state, list(edges), axis=1)
        statistics = self.spec.get("photometry_statistics")
        names = tuple(statistics["moments"] if statistics else ()) + BOOKKEEPING
        values = dict(zip(names, rest.T))
        moments = {name: values.pop(name) for name in names if name not in BOOKKEEPING}
        return hidden, total, moments, values

    def _normalized(self, triplets, scale, starting):
        """Raw triplets [B, 3, H, W] -> the model's [B, h, w, 3], each row's scale, and the
        triplets' photometry [B, 6] (None for a model without that input)."""
        spec, out, used, photometry = self.spec, [], [], []
        for images, object_scale, third in zip(triplets, scale, starting):
            if spec["normalization"] == "image":
                reference = None
            else:
                reference = reference_scale(images, spec) if third else object_scale
            normalized = normalize_images(images, reference, spec)
            out.append(center_crop(normalized, spec["model_roi_size"]))
            used.append(object_scale if reference is None else reference)
            if spec.get("photometry"):
                own = _statistics(images, spec["statistics_stride"])[3]
                per_date = own if reference is None else reference
                photometry.append(photometry_features(images, per_date, spec).reshape(-1))
        triplets = np.transpose(np.stack(out), [0, 2, 3, 1])
        photometry = np.stack(photometry) if photometry else None
        return triplets, np.array(used, np.float32), photometry

    def update(self, state, previous_images, previous_mjd, images, mjd, num_exposures):
        spec = self.spec
        batch = len(images)
        nights = [
            one_night(images[i, : num_exposures[i]], mjd[i, : num_exposures[i]], spec, i)
            for i in range(batch)
        ]
        night = np.stack([n[0] for n in nights]).astype(np.float32)
        night_mjd = np.array([n[1] for n in nights], np.float64)
        usable = np.array([n[2] for n in nights], bool)
        last = np.array([n[4] for n in nights], np.float64)
        hidden, total, moments, book = self._split_state(np.asarray(state, np.float32))
        if np.any(usable & (book["dates"] >= 1) & (book["tag"] != spec["tag"])):
            raise ValueError("a state made by another model; start the object from zeros")
        seen_now = book["dates"] + usable.astype(np.float32)
        step = usable & (seen_now >= spec["min_dates"])
        triplets = np.concatenate([previous_images, night[:, None]], axis=1).astype(np.float32)
        times = np.concatenate([previous_mjd, night_mjd[:, None]], axis=1)
        starting = usable & (seen_now == spec["min_dates"])
        model_triplets, new_scale, photometry = self._normalized(triplets, book["scale"], starting)
        gaps = ((times[:, 1:] - times[:, :-1]) / spec["days_per_year"]).astype(np.float32)
        feeds = {"triplets": model_triplets, "gaps": gaps, "total": total, "step": step}
        if photometry is not None:
            feeds["photometry"] = photometry
        statistics = spec.get("photometry_statistics")
        if statistics:
            value, weight = photometry_point(photometry, statistics)
            moments = update_moments(moments, value, weight, book["steps"], step)
            count = book["steps"] + step.astype(np.float32)
            feeds["statistics"] = photometry_statistics(moments, count, statistics)
        feeds["steps"] = book["steps"].astype(np.float32)
        feeds.update({f"hidden_{i}": h for i, h in enumerate(hidden)})
        names = [o.name for o in self.session.get_outputs()]
        out = dict(zip(names, self.session.run(names, feeds)))
        steps = out["steps_out"]
        probabilities = np.where(
            (steps > 0)[:, None],
            calibration.apply_temperature(out["probabilities"], spec["temperature"]).astype(
                np.float32
            ),
            np.float32(0.0),
        )
        class_id = np.where(steps > 0, probabilities.argmax(axis=-1), -1).astype(np.int32)
        scale = np.where(starting, new_scale, book["scale"]).astype(np.float32)
        span = np.where(usable, (last - night_mjd).astype(np.float32), book["span"])
        tag = np.full(batch, spec["tag"], np.float32)
        new_hidden = [out[f"hidden_{i}_out"] for i in range(len(hidden))]
        new_state = np.concatenate(
            [
                *new_hidden,
                out["total_out"],
                *([np.stack(list(moments.values()), 1)] if moments else []),
                np.stack([steps, seen_now, scale, span, tag], 1),
            ],
            axis=1,
        ).astype(np.float32)
        shift = usable[:, None, None, None]
        return {
            "state": new_state,
            "previous_images": np.where(
                shift, np.concatenate([previous_images[:, 1:], night[:, None]], 1), previous_images
            ).astype(np.float32),
            "previous_mjd": np.where(
                usable[:, None],
                np.concatenate([previous_mjd[:, 1:], night_mjd[:, None]], 1),
                previous_mjd,
            ),
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": np.where(class_id >= 0, self.class_names[np.maximum(class_id, 0)], b""),
            "num_dates": seen_now.astype(np.int32),
        }
