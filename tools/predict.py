"""Classify objects with an exported SavedModel: FITS (either layout) or converted TFRecords in,
one CSV row per object out; with labels present, the paper's metrics are printed too.

  python -m tools.predict --model runs/multiclass --data survey/ --output predictions.csv

--model is a run directory, a model directory (its highest version is used) or a version
directory. --data (formerly --input, still accepted) is a directory with dataset.json
(converted records, every split), a directory of .tfrecord files, or a FITS dataset, converted
on the fly (every object; no date-of-maximum rule). Objects that cannot be classified are
listed with their reasons and left out of the CSV; with none classified the exit status is 1.
Object ids that a spreadsheet would run as a formula (starting with = + - @) get a leading
apostrophe in the CSV.
"""

import csv
import json
import os
import sys
import tempfile

from absl import flags

from tao_keras import api, run_layout
from tools import record_input, replay_nights
from tools.conversion.sources import ConversionError

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model",
    None,
    "The exported model: a run directory, an export (model) directory or a version directory.",
    required=True,
)
flags.DEFINE_string(
    "data",
    None,
    "What to classify: a records directory (dataset.json), a directory of .tfrecord files, or "
    "a FITS dataset (converted on the fly).",
    required=True,
)
flags.DEFINE_alias("input", "data")  # the former name, kept for one release
flags.DEFINE_string("output", "predictions.csv", "CSV to write.")
flags.DEFINE_integer("batch_size", 32, "Objects per SavedModel call.", lower_bound=1)
flags.DEFINE_integer(
    "nights",
    None,
    "Classify each object from its first N observation dates only (early classification: what "
    "the model says once N nights have been observed). Default: every date.",
    lower_bound=3,
)
flags.DEFINE_integer(
    "workers", None, "FITS reader processes when converting (default: all cores).", lower_bound=1
)


def _identity(record):
    """(object_id, label) of one serialized record, parsed without the pixels."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(
        record,
        {
            "object_id": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
        },
    )
    return parsed["object_id"].numpy().decode(), int(parsed["label"])


def classify(signature, batch):
    """-> ([outputs per object, or None], [error text per object]); a failing batch is retried
    object by object so that one bad record costs only itself."""
    import tensorflow as tf

    try:
        out = signature(records=tf.constant(batch))
        return [{k: v[i] for k, v in out.items()} for i in range(len(batch))], [""] * len(batch)
    except tf.errors.OpError as e:
        if len(batch) == 1:
            return [None], [replay_nights.error_line(e)]
    results, errors = [], []
    for record in batch:
        one, error = classify(signature, [record])
        results.append(one[0])
        errors.append(error[0])
    return results, errors


def first_nights(serialized, nights, roi_size):
    """A serialized record cut to its first `nights` observation dates (schema.first_dates)."""
    from tfrecords import parser, schema, writer

    return writer.encode(schema.first_dates(parser.decode(serialized, roi_size), nights))


def predict(model, shards, output, batch_size, nights=None):
    """Write the CSV; returns (rows written, [skipped], {split: (labels, probabilities)},
    metadata). nights: classify from each object's first N dates only (None: all)."""
    import numpy as np
    import tensorflow as tf
    from tqdm import tqdm

    from tao_keras import classes

    metadata = json.loads(model.metadata()["json"].numpy())
    contract = api.exported_contract(metadata, "the model's metadata")
    names, task = list(contract.class_names), contract.task
    table = classes.task_label_table(task)
    signature = model.signatures["serialized"]
    skipped, labelled, rows = [], {}, 0
    counts = [n for _, _, n in shards]
    total = None if None in counts else sum(counts)  # a bare .tfrecord folder has no counts
    with open(output, "w", newline="") as f, tqdm(total=total, unit="obj", desc="predict") as bar:
        writer = csv.writer(f)
        writer.writerow(
            ["object_id", "split", "label", "predicted", *[f"p_{n}" for n in names], "num_dates"]
        )
        for path, split, _ in shards:
            for numbered, read_error in record_input.read_batches(path, batch_size):
                if read_error:
                    skipped.append(
                        {"object_id": "", "path": path, "reason": read_error, "kind": "shard"}
                    )
                batch, object_ids, labels = [r for _, r in numbered], [], []
                for number, record in numbered:
                    try:
                        object_id, label = _identity(record)
                    except (tf.errors.OpError, UnicodeDecodeError):
                        skipped.append(
                            {
                                "object_id": "",
                                "path": f"{path}, record {number}",
                                "reason": "not a record with object_id and label "
                                "(corrupt or foreign)",
                                "kind": "object",
                            }
                        )
                        object_id, label = None, -1
                    if object_id is not None and not -1 <= label < len(table):
                        skipped.append(
                            {
                                "object_id": object_id,
                                "path": f"{path}, record {number}",
                                "reason": f"label {label} is not a class index (0-"
                                f"{len(table) - 1}, or -1 for unlabelled)",
                                "kind": "object",
                            }
                        )
                        object_id = None
                    if object_id is not None and nights:
                        try:
                            batch[len(object_ids)] = first_nights(record, nights, contract.roi_size)
                        except (ValueError, tf.errors.OpError) as e:
                            skipped.append(
                                {
                                    "object_id": object_id,
                                    "path": f"{path}, record {number}",
                                    "reason": f"cannot cut to {nights} nights: {e}",
                                    "kind": "object",
                                }
                            )
                            object_id = None
                    object_ids.append(object_id)
                    labels.append(label)
                bar.update(len(batch))
                batch = [r for r, o in zip(batch, object_ids) if o is not None]
                labels = [v for v, o in zip(labels, object_ids) if o is not None]
                object_ids = [o for o in object_ids if o is not None]
                results, errors = classify(signature, batch) if batch else ([], [])
                for object_id, label, result, error in zip(object_ids, labels, results, errors):
                    if result is None:
                        skipped.append(
                            {
                                "object_id": object_id,
                                "path": path,
                                "reason": error,
                                "kind": "object",
                            }
                        )
                        continue
                    task_label = table[label] if label >= 0 else -1
                    probabilities = result["probabilities"].numpy()
                    writer.writerow(
                        [
                            record_input.spreadsheet_safe(object_id),
                            split,
                            names[task_label] if task_label >= 0 else "",
                            result["class_name"].numpy().decode(),
                            *[f"{p:.6f}" for p in probabilities],
                            int(result["num_dates"]),
                        ]
                    )
                    rows += 1
                    if task_label >= 0:
                        for key in (split, "all") if split else ("all",):
                            labelled.setdefault(key, ([], []))
                            labelled[key][0].append(task_label)
                            labelled[key][1].append(probabilities)
    scored = {split: (np.array(y), np.array(p)) for split, (y, p) in labelled.items()}
    return rows, skipped, scored, metadata


def main(argv):
    del argv
    from tao_keras import metrics
    from tao_keras.training import reports

    try:
        model_dir = run_layout.saved_model_dir(FLAGS.model)
        model, metadata = replay_nights.load(model_dir)
        roi = api.exported_contract(metadata, model_dir).roi_size
    except (OSError, ValueError) as e:
        sys.exit(f"error: --model {FLAGS.model}: {e}")
    if not os.path.isdir(FLAGS.data):
        sys.exit(f"error: --data {FLAGS.data}: not a directory")
    with tempfile.TemporaryDirectory(prefix="tao-predict-") as work_dir:
        try:
            shards, skipped = record_input.record_sources(FLAGS.data, roi, work_dir, FLAGS.workers)
        except (ValueError, OSError, ConversionError) as e:
            sys.exit(f"error: {e}")
        rows, failed, scored, metadata = predict(
            model, shards, FLAGS.output, FLAGS.batch_size, FLAGS.nights
        )
    skipped += failed
    seen = f", from their first {FLAGS.nights} nights" if FLAGS.nights else ""
    print(
        f"{rows} object(s) classified by {model_dir} (task {metadata['task']}{seen}) -> "
        f"{FLAGS.output}"
    )
    titles = {
        "object": "object(s) skipped",
        "shard": "shard remainder(s) unreadable (the records before the fault were classified)",
        "file": "exposure file(s) skipped (their objects were classified without them)",
    }
    for kind, title in titles.items():
        listed = [s for s in skipped if s["kind"] == kind]
        if listed:
            print(f"{len(listed)} {title}:")
            for s in listed:
                print(f"  {s['object_id'] or s['path']}: {s['reason']}")
    names = metadata["class_names"]
    if rows == 0:
        sys.exit(
            f"error: no object of {FLAGS.data} could be classified"
            + (" (reasons above)" if skipped else f" (task {metadata['task']})")
        )
    if scored:  # classes without labelled objects show "–" and stay out of the mean
        results = {split: metrics.evaluate(y, p, names) for split, (y, p) in scored.items()}
        print(reports.markdown({"SavedModel": results}, metadata["task"], names))


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
