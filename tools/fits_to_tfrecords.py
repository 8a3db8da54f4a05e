"""Convert FITS image sequences (catalog layout or TAO release layout) into sharded TFRecords.

  python -m tools.fits_to_tfrecords --data data/sim --output data/sim-tfrecords

Writes {split}-{i:05d}-of-{n:05d}.tfrecord shards (one class per shard) and dataset.json
(counts, shards, every problem with its path and reason). Fan out over machines with
--num_tasks N --task_index I (same flags otherwise); the last task to finish merges the
manifests (or run again with --merge_only).
"""

import logging as std_logging
import sys

from absl import app, flags, logging

from tao_keras import splits
from tools.conversion import convert
from tools.conversion import sources as src

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "data", None, "Input dataset directories (layout detected per directory).", required=True
)
flags.DEFINE_alias("input", "data")  # the former name, kept for one release
flags.DEFINE_string("output", None, "Output directory for shards and dataset.json.", required=True)
flags.DEFINE_integer(
    "roi_size", 64, "Side of the region of interest cut around the object, pixels.", lower_bound=8
)
flags.DEFINE_integer("seed", 0, "Seed of the train/val/test split.")
flags.DEFINE_float(
    "test_fraction", 0.05, "Fraction of each class kept aside as the test set.", 0.0, 1.0
)
flags.DEFINE_float(
    "train_fraction_transient", 0.7, "Train fraction of the rest, transient classes.", 0.0, 1.0
)
flags.DEFINE_float(
    "train_fraction_nt", 0.6, "Train fraction of the rest, non-transients.", 0.0, 1.0
)
flags.DEFINE_integer(
    "records_per_shard", 200, "Objects per shard at most (~1 MB per object).", lower_bound=1
)
flags.DEFINE_integer(
    "min_shards",
    2,
    "Shards per class and split at least (multi-worker input sharding).",
    lower_bound=1,
)
flags.DEFINE_float(
    "max_date_tolerance_days",
    None,
    "Drop an object whose nearest exposure is further than this from its catalog max_mjd "
    "(the paper's rule; e.g. 5). Default: keep it, the nearest date is the date of maximum "
    "and dataset.json lists the objects further than 5 days.",
    lower_bound=0.0,
)
flags.DEFINE_integer("workers", None, "Reader processes (default: all cores).", lower_bound=1)
flags.DEFINE_bool(
    "strict", False, "Stop with an error at the first problem instead of skipping it."
)
flags.DEFINE_bool(
    "overwrite",
    False,
    "Replace another conversion found in --output (its shards are deleted). Without it such an "
    "output directory is refused.",
)
flags.DEFINE_integer(
    "num_tasks", 1, "Fan-out: number of independent conversion tasks.", lower_bound=1
)
flags.DEFINE_integer(
    "task_index", 0, "Fan-out: index of this task in [0, num_tasks).", lower_bound=0
)
flags.DEFINE_bool("merge_only", False, "Only merge the per-task manifests of a finished fan-out.")


def main(argv):
    del argv
    std_logging.getLogger().setLevel(std_logging.INFO)
    if FLAGS.task_index >= FLAGS.num_tasks:
        raise app.UsageError(
            f"--task_index {FLAGS.task_index} must be < --num_tasks {FLAGS.num_tasks}"
        )
    try:
        if FLAGS.merge_only:
            manifest = convert.merge_manifests(FLAGS.output, FLAGS.num_tasks)
        else:
            options = convert.ConvertOptions(
                roi_size=FLAGS.roi_size,
                seed=FLAGS.seed,
                fractions=splits.SplitFractions(
                    FLAGS.test_fraction, FLAGS.train_fraction_transient, FLAGS.train_fraction_nt
                ),
                records_per_shard=FLAGS.records_per_shard,
                min_shards=FLAGS.min_shards,
                max_date_tolerance_days=FLAGS.max_date_tolerance_days,
                workers=FLAGS.workers,
                strict=FLAGS.strict,
                overwrite=FLAGS.overwrite,
                num_tasks=FLAGS.num_tasks,
                task_index=FLAGS.task_index,
            )
            manifest = convert.convert(FLAGS.data, FLAGS.output, options)
    except src.ConversionError as e:
        logging.error("%s", e)
        sys.exit(1)
    s = manifest["summary"]
    logging.info(
        "objects: %d listed, %d written, %d dropped; %d catalog rows rejected; "
        "%d files skipped; %d duplicate exposures dropped; %d RoIs padded at image edges",
        s["objects_listed"],
        s["objects_written"],
        s["objects_dropped"],
        s["rows_rejected"],
        s["files_skipped"],
        s["duplicate_exposures_dropped"],
        s["padded_exposures"],
    )
    for split, entry in manifest["splits"].items():
        logging.info("%-10s %s", split, entry["records"])
    logging.info(
        "%d exposures in %.1f s: %.0f exposures/s -> %s",
        s["exposures_written"],
        s["seconds"],
        s["exposures_per_second"],
        FLAGS.output,
    )


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
