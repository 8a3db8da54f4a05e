"""Simulate a Catalina-Sky-Survey-like set of transient image sequences (catalog layout).

python -m tools.simulate_survey --output data/sim --num_objects 300 --seed 0

--alerts DIR also writes the survey as the stream a broker receives (tools.simulation.alerts:
Avro alert packets, one file per night) for tools.stream_alerts.
"""

import logging as std_logging

from absl import app, flags, logging

from tao_keras import classes
from tools.simulation import calibration, survey

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "output", None, "Directory to write catalog.csv and images/ into.", required=True
)
flags.DEFINE_integer("num_objects", 300, "Number of objects to simulate.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Random seed; the output is identical for a given seed.")
flags.DEFINE_list(
    "class_mix",
    None,
    "Relative class weights as NAME=WEIGHT pairs (e.g. SN=1,NT=1) or 'uniform'. "
    "Default: the paper's Table 2 imbalance "
    + ",".join(f"{k}={v}" for k, v in calibration.PAPER_CLASS_COUNTS.items())
    + ".",
)
flags.DEFINE_float("median_nights", 19.0, "Median number of observation nights per object.")
flags.DEFINE_float(
    "missing_max_fraction",
    0.03,
    "Fraction of transients whose maximum falls in an unobserved gap (dropped on conversion).",
)
flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).")
flags.DEFINE_string(
    "alerts",
    None,
    "Also write the survey as alert packets (Avro, ZTF schema fields, one file per night) "
    "into this directory.",
)


def parse_class_mix(items):
    """['SN=1', 'NT=4'] or ['uniform'] -> {name: weight} over the canonical class names."""
    if not items:
        return dict(calibration.PAPER_CLASS_COUNTS)
    if items == ["uniform"]:
        return {name: 1.0 for name in classes.CLASS_NAMES}
    mix = {name: 0.0 for name in classes.CLASS_NAMES}
    for item in items:
        name, sep, weight = item.partition("=")
        canonical = classes.canonical_label(name)
        if not sep or canonical is None:
            raise app.UsageError(f"--class_mix: expected NAME=WEIGHT, got {item!r}")
        try:
            mix[canonical] = float(weight)
        except ValueError:
            raise app.UsageError(f"--class_mix: weight of {name} is not a number: {weight!r}")
    if sum(mix.values()) <= 0:
        raise app.UsageError("--class_mix: all weights are zero")
    return mix


def main(argv):
    del argv
    std_logging.getLogger().setLevel(std_logging.INFO)
    config = survey.SurveyConfig(
        num_objects=FLAGS.num_objects,
        seed=FLAGS.seed,
        class_mix=tuple(parse_class_mix(FLAGS.class_mix).items()),
        median_nights=FLAGS.median_nights,
        missing_max_fraction=FLAGS.missing_max_fraction,
    )
    summary = survey.simulate_survey(FLAGS.output, config, workers=FLAGS.workers)
    logging.info("objects per class: %s", summary["objects_per_class"])
    logging.info(
        "wrote %s/catalog.csv: %d objects, %d exposures, %.0f exposures/s",
        FLAGS.output,
        summary["objects"],
        summary["exposures"],
        summary["exposures_per_second"],
    )
    if FLAGS.alerts:
        from tools.simulation import alerts

        written = alerts.write_alerts(FLAGS.output, FLAGS.alerts)
        logging.info("wrote %(packets)d alert packets in %(files)d nightly files", written)


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
