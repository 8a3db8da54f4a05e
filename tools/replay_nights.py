"""Replay objects night by night through an exported model's `update` signature, as an alert
broker would, and print the class after every night.

  python -m tools.replay_nights --model runs/multiclass --data survey/ --max_objects 5 \\
      --output nights.csv --check

--data reads what tools.predict reads (a records directory, a directory of .tfrecord files,
or a FITS dataset); --records takes record files. Records are read lazily and an object that
cannot be read or replayed is skipped with its reason. --output writes a row per object and
night (object, night, MJD, dates seen, class, probabilities) as CSV, or JSON lines for a
.jsonl name. `--check` also asks the full-sequence signature (serving_default) for the same
objects and prints the largest difference from the last night's answer (~1e-6).

The library functions (split_nights, padded_requests, replay, error_line, load) need only
numpy and TensorFlow (a broker's process loads the SavedModel with tensorflow alone); main
reads records with the project's parser.
"""

import json
import re
import sys

import numpy as np
import tensorflow as tf


def split_nights(images, mjd, same_date_days):
    """One object's exposures images [n, H, W], mjd [n] -> [(images [k, H, W], mjd [k])] per
    observation date, in time order: exposures without a finite pixel dropped, a new date after
    a gap of at least same_date_days (the converter's rule, in the model's metadata). The rules
    of tao_keras.request_cleanup, written here again in numpy because this module must run
    with numpy and TensorFlow alone (tests/update_client.py blocks everything else); the
    parameter comes from the served model, and tests/test_streaming.py checks the nights it
    gives against the model's own `update`."""
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


def error_line(error, limit=300):
    """The one informative line of a TensorFlow error (an assertion's "batch row i: ..." text,
    else its first line that is not "Graph execution error:"), cut to `limit` characters (a
    parse error can quote a whole 100 KB input)."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if line != "Graph execution error:"] or [type(error).__name__]
    chosen = next((line for line in lines if "batch row" in line), lines[0])
    wrapped = re.search(r"assertion failed: \[(.*)\]", chosen, re.IGNORECASE)
    if wrapped:  # TensorFlow's wrapping of an assertion's message
        chosen = wrapped.group(1).split("] [")[0].strip("'\"")  # its message, not its data
    return chosen if len(chosen) <= limit else chosen[: limit - 3] + "..."


def load(model_path):
    """A SavedModel written by tools.export_savedmodel (a version directory) -> (model,
    metadata dict). ValueError naming the directory for a SavedModel without the metadata
    signature (written by another tool or an older tao-keras)."""
    model = tf.saved_model.load(model_path)
    try:
        metadata = json.loads(model.metadata()["json"].numpy())
    except AttributeError:
        raise ValueError(
            f"{model_path}: a SavedModel without the `metadata` signature: written by another "
            "tool or by tao-keras before 0.1.0; export it again with python -m "
            "tools.export_savedmodel --run RUN_DIR"
        ) from None
    return model, metadata


def objects_of(shards, roi_size, limit):
    """Read records lazily, shard by shard -> yields (SequenceRecord or None, shard path,
    reason): a record that does not decode, or a shard that stops being readable, is yielded
    with its reason instead of stopping the replay. At most `limit` good records."""
    from tfrecords import parser
    from tools import record_input

    good = 0
    for path, _, _ in shards:
        for numbered, read_error in record_input.read_batches(path, 16):
            for number, serialized in numbered:
                try:
                    record = parser.decode(serialized, roi_size)
                except (ValueError, tf.errors.OpError) as e:
                    yield None, f"{path}, record {number}", error_line(e)
                    continue
                yield record, path, None
                good += 1
                if good >= limit:
                    return
            if read_error:
                yield None, path, read_error


def replay_objects(model, records, roi_size):
    """Replay records together, or one by one when the batch fails, so that a bad object costs
    only itself -> [(record, (history [K, C], dates [K]) or None, error)]."""
    images, mjd, counts = padded_requests(records, roi_size)
    try:
        _, history, dates = replay(model, images, mjd, counts)
        return [(r, (history[:, i], dates[:, i]), None) for i, r in enumerate(records)]
    except tf.errors.OpError as e:
        if len(records) == 1:
            return [(records[0], None, error_line(e))]
    return [one for r in records for one in replay_objects(model, [r], roi_size)]


def night_rows(record, history, dates, same_date_days, class_names):
    """One object's replay -> a row per night: {object_id, night, mjd (the night's first usable
    exposure), num_dates, class ("" before the third date), probability per class}."""
    nights = split_nights(record.images, record.mjd, same_date_days)
    rows = []
    for k, (_, times) in enumerate(nights):
        p = history[k]
        rows.append(
            {
                "object_id": record.object_id,
                "night": k + 1,
                "mjd": float(times[0]),
                "num_dates": int(dates[k]),
                "class": class_names[int(p.argmax())] if p.sum() > 0 else "",
                **{f"p_{c}": float(v) for c, v in zip(class_names, p)},
            }
        )
    return rows


def write_rows(rows, path, class_names):
    """Rows to CSV (object ids made spreadsheet-safe) or, for a .jsonl/.json path, JSON lines
    (ids as they are)."""
    import csv

    from tools import record_input

    if path.endswith((".jsonl", ".json")):
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        return
    fields = ["object_id", "night", "mjd", "num_dates", "class", *[f"p_{c}" for c in class_names]]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "object_id": record_input.spreadsheet_safe(row["object_id"])})


def main(argv):
    del argv
    import tempfile

    from absl import flags

    from tao_keras import run_layout
    from tools import record_input
    from tools.conversion.sources import ConversionError

    FLAGS = flags.FLAGS
    if not FLAGS.data and not FLAGS.records:
        raise SystemExit("error: give --data (a FITS dataset or records) or --records FILES")
    try:
        model, metadata = load(run_layout.saved_model_dir(FLAGS.model))
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: --model {FLAGS.model}: {e}") from None
    if not metadata.get("update"):
        raise SystemExit(f"error: --model {FLAGS.model}: this SavedModel has no `update` signature")
    roi, names = metadata["roi_size"], metadata["class_names"]
    with tempfile.TemporaryDirectory(prefix="tao-replay-") as work_dir:
        try:
            shards = record_input.data_shards(
                FLAGS.data, FLAGS.records, roi, work_dir, FLAGS.workers
            )
        except (OSError, ValueError, ConversionError) as e:
            raise SystemExit(f"error: {e}") from None
        found = list(objects_of(shards, roi, FLAGS.max_objects))
    records = [r for r, _, _ in found if r is not None]
    skipped = [(where, reason) for r, where, reason in found if r is None]
    results = replay_objects(model, records, roi) if records else []
    skipped += [(r.object_id, error) for r, out, error in results if out is None]
    rows, full = [], {}
    for record, out, _ in results:
        if out is None:
            continue
        history, dates = out
        object_rows = night_rows(record, history, dates, metadata["same_date_days"], names)
        rows += object_rows
        print(f"{record.object_id}:")
        for row in object_rows:
            best = (
                f"{row['class']} {row['p_' + row['class']]:.2f}"
                if row["class"]
                else "not yet (< 3 dates)"
            )
            print(f"  after {row['num_dates']:2d} dates (MJD {row['mjd']:.3f}): {best}")
        full[record.object_id] = history[len(object_rows) - 1]
    for where, reason in skipped:
        print(f"skipped {where}: {reason}", file=sys.stderr)
    if not rows:
        raise SystemExit("error: no object could be replayed" + (" (see above)" if skipped else ""))
    if FLAGS.output:
        write_rows(rows, FLAGS.output, names)
        print(f"{len(rows)} night(s) of {len(full)} object(s) -> {FLAGS.output}")
    if FLAGS.check:
        good = [r for r, out, _ in results if out is not None]
        images, mjd, counts = padded_requests(good, roi)
        whole = model.signatures["serving_default"](
            images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
        )["probabilities"].numpy()
        last = np.stack([full[r.object_id] for r in good])
        print(
            f"largest |update - serving_default| after the last night: "
            f"{np.abs(last - whole).max():.2e}"
        )


def define_flags():
    """The command's flags (defined only when it runs as a program: the functions above are
    imported by processes that have flags of their own)."""
    from absl import flags

    flags.DEFINE_string(
        "model",
        None,
        "The exported model: a run directory, an export directory or a version directory.",
        required=True,
    )
    flags.DEFINE_string(
        "data",
        None,
        "What to replay, as tools.predict reads it: a records directory (dataset.json), a "
        "directory of .tfrecord files, or a FITS dataset (converted on the fly).",
    )
    flags.DEFINE_list("records", None, "Or: TFRecord files written by tools.fits_to_tfrecords.")
    flags.DEFINE_integer(
        "max_objects", 5, "Objects to replay (the first ones read).", lower_bound=1
    )
    flags.DEFINE_string(
        "output", None, "Also write a row per object and night: CSV, or JSON lines (.jsonl)."
    )
    flags.DEFINE_bool("check", False, "Compare with the full-sequence signature.")
    flags.DEFINE_integer(
        "workers",
        None,
        "FITS reader processes when converting (default: all cores).",
        lower_bound=1,
    )


def cli():
    """The console script (tao-replay)."""
    from tools import console

    define_flags()
    console.run(main, __name__)


if __name__ == "__main__":
    cli()
