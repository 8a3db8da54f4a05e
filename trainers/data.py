"""Flags and data shared by every trainer (neural and Random Forest): the records to train on,
given, converted from FITS, or the embedded simulated survey, created once and cached."""

import hashlib
import os

from absl import flags, logging

from tfrecords import manifest

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data",
    None,
    "Converted records (a dir with dataset.json) or a FITS dataset to convert. "
    "Default: the embedded simulated survey, created once and cached.",
)
flags.DEFINE_string(
    "output", None, "Run directory (default: runs/<task>, runs/light_curve_rf_<task> for the RF)."
)
flags.DEFINE_integer(
    "num_objects",
    180,
    "Size of the embedded simulated survey (balanced over the 6 classes: see EMBEDDED_CLASS_MIX).",
    lower_bound=20,
)

# The embedded default survey: every class equally often, so that the quickstart's report
# scores each class on several objects (the paper's imbalance leaves 2 BZ to train on at this
# size); its size keeps the main job under 15 minutes on a 2-core AVX2 CPU (README).
EMBEDDED_CLASS_MIX = "uniform"
flags.DEFINE_string(
    "cache_dir",
    os.path.join(os.path.expanduser("~"), ".cache", "tao-keras"),
    "Where the embedded survey and converted FITS data are kept between runs.",
)
flags.DEFINE_integer("seed", 0, "Seed of simulation, split, pipeline and initialization.")


def conversion_key(data, seed):
    """The cache key of a FITS dataset's conversion: its absolute path and the names, sizes
    and modification times of every file under it (catalog included), and the seed. Another
    folder, an edited catalog or a changed file gives another key; only `stat` is read."""
    digest = hashlib.sha256(f"{os.path.abspath(data)}\0{seed}".encode())
    for folder, subfolders, files in os.walk(data):
        subfolders.sort()
        for name in sorted(files):
            try:
                info = os.stat(os.path.join(folder, name))
            except OSError:
                continue
            relative = os.path.relpath(os.path.join(folder, name), data)
            digest.update(f"\0{relative}\0{info.st_size}\0{info.st_mtime_ns}".encode())
    name = os.path.basename(os.path.abspath(data).rstrip(os.sep)) or "data"
    return f"{name}-{digest.hexdigest()[:16]}"


def prepare_records(data, cache_dir, num_objects, seed):
    """A directory of converted records: given, converted from FITS, or the embedded default.

    Simulation and conversion run in this process (their worker pools are spawned, so they
    start clean whatever this process has loaded); their errors (tools.conversion.sources.
    ConversionError, naming the file and the reason) reach the caller."""
    from tao_keras import classes
    from tools.conversion import convert
    from tools.simulation import survey

    if data and manifest.exists(data):
        return data
    if data:
        out = os.path.join(cache_dir, "converted", conversion_key(data, seed))
        if not manifest.exists(out):
            logging.info("converting %s into %s", data, out)
            convert.convert([data], out, convert.ConvertOptions(seed=seed))
        return out
    root = os.path.join(cache_dir, f"embedded-{num_objects}-{EMBEDDED_CLASS_MIX}-seed{seed}")
    survey_dir, records = os.path.join(root, "survey"), os.path.join(root, "records")
    if not manifest.exists(records):
        if not os.path.exists(os.path.join(survey_dir, "catalog.csv")):
            logging.info("simulating the embedded survey into %s", survey_dir)
            config = survey.SurveyConfig(
                num_objects=num_objects,
                seed=seed,
                class_mix=tuple((name, 1.0) for name in classes.CLASS_NAMES),  # uniform
            )
            survey.simulate_survey(survey_dir, config)
        logging.info("converting the embedded survey into %s", records)
        convert.convert([survey_dir], records, convert.ConvertOptions(seed=seed))
    else:
        logging.info("reusing the embedded survey in %s", root)
    return records
