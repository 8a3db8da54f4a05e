"""Classify a stream of alert packets as a broker receives them, packet by packet.

  python -m tools.simulate_survey --output data/sim --num_objects 30 --alerts data/alerts
  python -m tools.stream_alerts --model runs/multiclass --alerts data/alerts \\
      --state stream.sqlite --output classes.jsonl

--alerts takes Avro files and directories (their *.avro files, by name: a night per file in
time order). After every packet the object's class and probabilities (its committed nights
plus its current night so far) go to --output (JSON lines) and to the state database's
`classifications` table; each object's recurrent state lives in --state (SQLite, WAL), so a
restart (after a kill, or on the next night's files) continues where the last run stopped and
a packet seen before changes nothing. Bad packets and files are recorded in the `errors`
table and the log; the stream goes on. docs/serving.md ("Alert streams") gives the tables.
"""

import glob
import os
import sys
import time

from absl import flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string(
        "model",
        None,
        "The exported model: a run directory, an export directory or a version directory.",
        required=True,
    )
    flags.DEFINE_list(
        "alerts",
        None,
        "Avro files, or directories of *.avro files (read in name order).",
        required=True,
    )
    flags.DEFINE_string("state", None, "The state database (SQLite; created).", required=True)
    flags.DEFINE_string("output", None, "JSON lines, one per classified packet.", required=True)
    flags.DEFINE_enum(
        "runtime",
        "savedmodel",
        ["savedmodel", "onnx"],
        "What runs the model: the SavedModel through TensorFlow, or the export's onnx/ folder "
        "(python -m tools.export_savedmodel --onnx) through onnxruntime and numpy alone.",
    )
    flags.DEFINE_integer(
        "chunk_size",
        32,
        "Packets per transaction and per batch of the model (across objects): larger chunks "
        "wait longer for their answers and gain little (docs/serving.md).",
        lower_bound=1,
    )
    flags.DEFINE_bool(
        "finish",
        True,
        "At the end of the input, commit every object's current night (--nofinish: more of "
        "the same nights may still come in a later run).",
    )


def alert_files(paths):
    """The Avro files of --alerts: files as given, directories' *.avro by name; FileNotFoundError
    naming a path that does not exist."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            files.extend(sorted(glob.glob(os.path.join(path, "*.avro"))))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"--alerts {path}: no such file or directory")
    return files


def packets(files, roi_size):
    """Every file's packets (and bad packets) in order."""
    from tao_keras import alert_packets

    for path in files:
        yield from alert_packets.read_file(path, roi_size)


def stream(model_dir, files, state, output, chunk_size=32, finish=True, runtime="savedmodel"):
    """Classify the packets of `files` with the model of model_dir run by `runtime`
    (alert_stream.RUNTIMES) -> (Tally, seconds). StreamError / StateError with a one-line
    reason when the state or output cannot be used."""
    from tao_keras import alert_state, alert_stream

    runtime = alert_stream.RUNTIMES[runtime](model_dir)
    db = alert_state.connect(state, runtime.identity)
    try:
        classifier = alert_stream.StreamClassifier(runtime, db, output, chunk_size)
        began = time.perf_counter()
        try:
            tally = classifier.run(packets(files, runtime.roi_size), finish=finish)
        finally:
            classifier.close()
        return tally, time.perf_counter() - began
    finally:
        db.close()


def main(argv):
    del argv
    import numpy as np

    from tao_keras import alert_state, alert_stream, run_layout

    try:
        model_dir = run_layout.saved_model_dir(FLAGS.model)
        files = alert_files(FLAGS.alerts)
        tally, seconds = stream(
            model_dir,
            files,
            FLAGS.state,
            FLAGS.output,
            FLAGS.chunk_size,
            FLAGS.finish,
            FLAGS.runtime,
        )
    except (OSError, ValueError, alert_stream.StreamError, alert_state.StateError) as e:
        sys.exit(f"error: {e}")
    handled = tally.classified + tally.out_of_order + tally.bad
    rate = handled / seconds if seconds else 0.0
    latency = (
        f"; latency p50 {1000 * np.percentile(tally.latencies, 50):.0f} ms, p99 "
        f"{1000 * np.percentile(tally.latencies, 99):.0f} ms"
        if tally.latencies
        else ""
    )
    print(
        f"{len(files)} file(s): {tally.classified} packets classified, {tally.duplicates} seen "
        f"before, {tally.out_of_order} out of order, {tally.bad} bad; {tally.nights_committed} "
        f"nights committed; {rate:.0f} packets/s{latency}"
    )
    print(
        f"classifications: {FLAGS.output}; state: {FLAGS.state} (tables objects, "
        "classifications, errors)"
    )


def cli():
    """The console script (tao-stream-alerts)."""
    from tools import console

    define_flags()
    console.run(main, __name__)


if __name__ == "__main__":
    cli()
