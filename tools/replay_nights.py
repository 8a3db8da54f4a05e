"""Replay objects night by night through an exported model's `update` signature, as an alert
broker would, and print the class after every night.

  python -m tools.replay_nights --model runs/multiclass/export/taonet_multiclass/1 \\
      --records records/test-00000-of-00001.tfrecord --max_objects 5 --check

`--check` also asks the full-sequence signature (serving_default) for the same objects and
prints the largest difference from the last night's answer (they agree to ~1e-6).

The functions here need only numpy and TensorFlow (a broker's process loads the SavedModel
with tensorflow alone); reading --records uses the project's record parser.
"""

import json

import numpy as np
import tensorflow as tf


def split_nights(images, mjd, same_date_days):
    """One object's exposures images [n, H, W], mjd [n] -> [(images [k, H, W], mjd [k])] per
    observation date, in time order: exposures without a finite pixel dropped, a new date after
    a gap of at least same_date_days (the converter's rule, in the model's metadata)."""
    usable = np.isfinite(images).reshape(len(images), -1).any(axis=1)
    images, mjd = images[usable], mjd[usable]
    order = np.argsort(mjd, kind="stable")
    images, mjd = images[order], mjd[order]
    if len(mjd) == 0:
        return []
    starts = np.flatnonzero(np.diff(mjd) >= same_date_days) + 1
    return list(zip(np.split(images, starts), np.split(mjd, starts)))


def padded_requests(records, roi_size, pad=0):
    """Records (tfrecords.schema.SequenceRecord or anything with images, mjd, num_exposures) ->
    the whole-sequence inputs images [B, E, roi, roi] (NaN beyond each object's exposures),
    mjd [B, E] (0 there), num_exposures [B]; E = the most exposures + pad."""
    width = max(r.num_exposures for r in records) + pad
    images = np.full((len(records), width, roi_size, roi_size), np.nan, np.float32)
    mjd = np.zeros((len(records), width))
    for i, r in enumerate(records):
        images[i, : r.num_exposures], mjd[i, : r.num_exposures] = r.images, r.mjd
    return images, mjd, np.array([r.num_exposures for r in records], np.int32)


def replay(model, images, mjd, num_exposures):
    """Send B objects' nights through model.signatures["update"], one call per night for all.

    model: a loaded SavedModel; images float32 [B, E, H, W] (NaN = bad), mjd float64 [B, E],
    num_exposures int32 [B] (exposures beyond it are padding). Objects with fewer nights get
    empty calls (num_exposures 0), which change nothing.
    -> (outputs of the last call as numpy {name: array}, probabilities after each night
    [K, B, C], num_dates after each night [K, B]).
    """
    metadata = json.loads(model.metadata()["json"].numpy())
    if not metadata.get("update"):
        raise ValueError("this SavedModel has no `update` signature (see its metadata)")
    update = model.signatures["update"]
    batch, _, height, width = images.shape
    nights = [
        split_nights(
            images[i, : num_exposures[i]], mjd[i, : num_exposures[i]], metadata["same_date_days"]
        )
        for i in range(batch)
    ]
    inputs = {
        "state": np.zeros((batch, metadata["update"]["state_size"]), np.float32),
        "previous_images": np.zeros((batch, 2, height, width), np.float32),
        "previous_mjd": np.zeros((batch, 2), np.float64),
    }
    history, dates = [], []
    out = None
    for k in range(max((len(n) for n in nights), default=0)):
        width_k = max((len(n[k][1]) for n in nights if k < len(n)), default=1)
        night_images = np.full((batch, width_k, height, width), np.nan, np.float32)
        night_mjd = np.zeros((batch, width_k), np.float64)
        counts = np.zeros(batch, np.int32)
        for i, object_nights in enumerate(nights):
            if k < len(object_nights):
                exposures, times = object_nights[k]
                night_images[i, : len(times)], night_mjd[i, : len(times)] = exposures, times
                counts[i] = len(times)
        result = update(
            **{name: tf.constant(value) for name, value in inputs.items()},
            images=tf.constant(night_images),
            mjd=tf.constant(night_mjd),
            num_exposures=tf.constant(counts),
        )
        out = {name: value.numpy() for name, value in result.items()}
        inputs = {name: out[name] for name in inputs}
        history.append(out["probabilities"])
        dates.append(out["num_dates"])
    return out, np.array(history), np.array(dates)


def main(argv):
    del argv
    from absl import flags

    from tfrecords import parser

    FLAGS = flags.FLAGS
    model = tf.saved_model.load(FLAGS.model)
    metadata = json.loads(model.metadata()["json"].numpy())
    records = list(parser.read_records(FLAGS.records, metadata["roi_size"]))[: FLAGS.max_objects]
    if not records:
        raise SystemExit(f"error: no records in {', '.join(FLAGS.records)}")
    images, mjd, counts = padded_requests(records, metadata["roi_size"])
    _, history, dates = replay(model, images, mjd, counts)
    names = metadata["class_names"]
    for i, r in enumerate(records):
        print(f"{r.object_id}:")
        last = -1
        for k in range(len(history)):
            if dates[k, i] == last:
                continue  # no night of this object in this call
            last = dates[k, i]
            p = history[k, i]
            best = (
                f"{names[int(p.argmax())]} {p.max():.2f}" if p.sum() > 0 else "not yet (< 3 dates)"
            )
            print(f"  after {int(dates[k, i]):2d} dates: {best}")
    if FLAGS.check:
        full = model.signatures["serving_default"](
            images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
        )["probabilities"].numpy()
        print(
            f"largest |update - serving_default| after the last night: "
            f"{np.abs(history[-1] - full).max():.2e}"
        )


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("model", None, "An exported SavedModel version directory.", required=True)
    flags.DEFINE_list(
        "records", None, "TFRecord files written by tools.fits_to_tfrecords.", required=True
    )
    flags.DEFINE_integer("max_objects", 5, "Objects to replay.", lower_bound=1)
    flags.DEFINE_bool("check", False, "Compare with the full-sequence signature.")
    app.run(main)
