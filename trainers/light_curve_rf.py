"""The paper's baseline: a Random Forest on light-curve features, for any of the four tasks.

  python -m trainers.light_curve_rf --task multiclass           # embedded simulated survey
  python -m trainers.light_curve_rf --data RECORDS_OR_FITS --task supernova
  python -m trainers.light_curve_rf --light_curves curves.csv --task transients

Light curves come from forced photometry on the records (every class, non-transients
included) or from a CSV (object_id, mjd, mag, magerr[, label, split]). Writes
OUTPUT/report.md and report.json in the neural trainers' format, and OUTPUT/lightcurves.csv.
"""

import json
import logging as std_logging
import os
import sys
import time

from absl import flags

from tao_keras import classes
from tools.conversion.sources import ConversionError
from trainers import data
from trainers.data import prepare_records

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(data)  # --help lists the data flags
flags.DEFINE_enum("task", "multiclass", list(classes.TASKS), "Classification task.")
flags.DEFINE_string(
    "light_curves", None, "CSV of light curves to use instead of photometry on the records."
)
flags.DEFINE_integer("trees", 200, "Trees of the Random Forest (paper: 200).", lower_bound=1)


def main(argv):
    del argv
    from tao_keras.lightcurves import baseline
    from tao_keras.lightcurves import curves as curve_io
    from tao_keras.training import reports

    std_logging.getLogger().setLevel(std_logging.INFO)
    began = time.perf_counter()
    out_dir = FLAGS.output or os.path.join("runs", f"light_curve_rf_{FLAGS.task}")
    os.makedirs(out_dir, exist_ok=True)
    try:
        if FLAGS.light_curves:
            source = os.path.abspath(FLAGS.light_curves)
            curves = curve_io.from_csv(FLAGS.light_curves, seed=FLAGS.seed)
        else:
            source = os.path.abspath(
                prepare_records(FLAGS.data, FLAGS.cache_dir, FLAGS.num_objects, FLAGS.seed)
            )
            curves = curve_io.of_records(source)  # measured once, then read from the cache
        curve_io.write_csv(curves, os.path.join(out_dir, "lightcurves.csv"))
        measured = time.perf_counter() - began
        results, info = baseline.run(curves, FLAGS.task, FLAGS.trees, FLAGS.seed)
    except (ValueError, OSError, ConversionError) as e:
        sys.exit(f"error: {e}")
    names = classes.task_class_names(FLAGS.task)
    predictions = info.pop("predictions")
    text = reports.write(
        out_dir,
        {baseline.MODEL_NAME: results},
        FLAGS.task,
        names,
        extra={
            "source": source,
            "seconds": time.perf_counter() - began,
            "light_curve_seconds": measured,
            **info,
        },
        predictions={baseline.MODEL_NAME: predictions},
    )
    print(text)
    print(
        f"objects per split: {json.dumps(info['objects'])}; left out with fewer than 5 dates: "
        f"{info['too_few_dates']}"
    )
    print(f"Finished in {time.perf_counter() - began:.0f} s; report in {out_dir}")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
