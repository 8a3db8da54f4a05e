"""Flags and the run shared by every trainer: data (or the embedded default), the staged
protocol, report, saved models. Each trainers.<task> module only names its task."""

import dataclasses
import logging as std_logging
import os
import sys
import time

from absl import flags, logging

from tfrecords import manifest
from tools.conversion.sources import ConversionError
from trainers import data
from trainers.data import prepare_records

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(data)  # the data flags are every trainer's too
flags.DEFINE_enum("preset", "cpu", ["cpu", "paper"], "Model and schedule preset.")
flags.DEFINE_enum(
    "precision",
    "auto",
    ["auto", "float32", "mixed_bfloat16"],
    "Compute precision; auto = mixed_bfloat16 on GPUs of compute capability >= 8 and on CPUs "
    "with AVX512-BF16/AMX (measured 1.6x on the paper preset here), else float32.",
)
flags.DEFINE_list("stages", ["densenet", "gru", "joint"], "Stages to run, in order.")
flags.DEFINE_integer("epochs_densenet", None, "Epochs of stage 1 (default: preset).")
flags.DEFINE_integer("epochs_gru", None, "Epochs of stage 2 (default: preset).")
flags.DEFINE_integer("epochs_joint", None, "Epochs of stage 3 (default: preset).")
flags.DEFINE_float(
    "learning_rate_scale", 1.0, "Multiplies every stage's learning rate (finetuning: ~0.1)."
)
for _stage, _number in (("densenet", 1), ("gru", 2), ("joint", 3)):
    flags.DEFINE_float(
        f"learning_rate_{_stage}",
        None,
        f"Learning rate of stage {_number} (default: the preset's, times --learning_rate_scale). "
        "Only the stages after the first one changed are trained again in a kept run.",
        lower_bound=0.0,
    )
flags.DEFINE_integer(
    "batch_size", None, "Global batch size of every stage (default: preset), split across replicas."
)
flags.DEFINE_integer(
    "sequence_length",
    None,
    "S: joint training sees at most the S most recent dates of each (possibly cut) sequence; "
    "0: every date. Default: the preset's.",
    lower_bound=0,
)
flags.DEFINE_float(
    "date_dropout",
    None,
    "Stages gru and joint: each training date left out with this probability (another cadence "
    "of the same object). Default: the preset's (0).",
    0.0,
    0.99,
)
flags.DEFINE_float(
    "prefix_fraction",
    None,
    "Share of TAO-Net training sequences (stages gru, joint) cut after a random date, so that "
    "early predictions (a few nights) are trained for. Default: the preset's.",
    0.0,
    1.0,
)
flags.DEFINE_float(
    "average_epochs",
    None,
    "Every stage scores, keeps and exports an exponential moving average of its weights over "
    "about this many epochs (0: the raw weights of the best epoch). Default: the preset's "
    "(cpu: 4 in the joint stage, 0 in stages 1-2; paper: 0).",
    0.0,
)
for _stage, _number in (("densenet", 1), ("gru", 2), ("joint", 3)):
    flags.DEFINE_float(
        f"average_epochs_{_stage}",
        None,
        f"--average_epochs for stage {_number} only (wins over --average_epochs). Only the "
        "stages after the first one changed are trained again in a kept run.",
        0.0,
    )
flags.DEFINE_enum(
    "learning_rate_schedule",
    None,
    ["constant", "cosine"],
    "Learning rate over each stage: constant, or cosine (from the stage's rate down to 1% of "
    "it at the stage's last epoch). Default: the preset's.",
)
flags.DEFINE_float(
    "weight_decay",
    None,
    "AdamW's decoupled weight decay (each step shrinks the weights by weight_decay x the "
    "learning rate). Default: the preset's.",
    0.0,
)
flags.DEFINE_float("aux_weight", 1.0, "Weight of the auxiliary (per-step) loss in joint training.")
flags.DEFINE_float(
    "teacher_weight",
    None,
    "Distillation from the light-curve forest in the joint stage: its final output learns "
    "(1 - w) x the label + w x the forest's out-of-fold probabilities of the object (the served "
    "model still reads pixels only; 0: off). Default: the preset's.",
    0.0,
    0.99,
)
flags.DEFINE_float("epoch_fraction", 1.0, "Fraction of the balanced epoch per training epoch.", 0.0)
flags.DEFINE_list(
    "freeze",
    [],
    "TAO-Net parts kept fixed in the gru/joint stages: backbone, recurrent "
    "(e.g. SN vs NT finetuning with the GRUs fixed, paper Table 5).",
)
flags.DEFINE_enum(
    "normalization",
    None,
    ["object", "image"],
    "Pixel noise scale: one per object from its first dates (keeps flux ratios between dates) "
    "or one per image (the former rule, for comparison). Default: the preset's (object).",
)
flags.DEFINE_enum(
    "per_date",
    None,
    ["choose", "coadd"],
    "One image per observation date: choose an exposure (random in training, the first in "
    "evaluation; the paper) or coadd the date's exposures (a random subset in training, all in "
    "evaluation and serving). Default: the preset's (cpu: coadd, paper: choose).",
)
flags.DEFINE_enum(
    "aggregation",
    None,
    ["last", "add", "mean"],
    "TAO-Net output over time (default: the preset's): last valid step, masked sum, masked mean.",
)
flags.DEFINE_boolean(
    "photometry",
    None,
    "TAO-Net's per-date forced photometry input (aperture flux at the centre in units of the "
    "object's noise scale, docs/science.md); default: the preset's.",
)
flags.DEFINE_boolean(
    "photometry_statistics",
    None,
    "Whole-sequence statistics of the per-date photometry (mean, spread, extremes, chi2 against "
    "a constant, skewness, count) through a small Dense layer beside the GRU's output before the "
    "classifier; needs the photometry input (docs/science.md); default: the preset's.",
)
flags.DEFINE_float(
    "modality_dropout",
    None,
    "In training, the probability that an object's whole GRU output is zeroed, so the "
    "classifier also learns to read the photometry statistics alone (needs them; inference "
    "never drops); default: the preset's.",
    lower_bound=0.0,
    upper_bound=0.99,
)
flags.DEFINE_boolean(
    "photometry_eta",
    None,
    "Among the photometry statistics, the von Neumann ratio of successive dates (is the change "
    "correlated in time, or noise?); needs the photometry statistics; default: the preset's.",
)
flags.DEFINE_boolean(
    "statistics_expert",
    None,
    "Beside the GRU's classifier, a second classifier on the photometry statistics alone (with "
    "the von Neumann ratio), fitted apart on the training objects' statistics and frozen; the "
    "model's probabilities are the mean of the two; needs the photometry statistics "
    "(docs/science.md); default: the preset's.",
)
flags.DEFINE_integer(
    "expert_members",
    None,
    "Small networks averaged in the statistics expert (default: the preset's; cpu 5).",
    lower_bound=1,
)
flags.DEFINE_float(
    "fused_loss",
    None,
    "With the statistics expert: the share of the GRU classifier's loss taken on the served "
    "mean of it and the frozen expert instead of on its own output (0: it learns alone; 1: it "
    "learns what the expert leaves; docs/science.md). Default: the preset's.",
    0.0,
    1.0,
)
flags.DEFINE_integer(
    "gru_layers", None, "TAO-Net's GRU layers (default: the preset's; paper 2).", lower_bound=1
)
flags.DEFINE_integer(
    "gru_units", None, "Units of each GRU layer (default: the preset's; paper 128).", lower_bound=1
)
flags.DEFINE_integer(
    "model_roi_size",
    None,
    "Model RoI side in pixels, a central crop of the records' RoI (--roi_size of "
    "tools.fits_to_tfrecords) "
    "(default: the preset's; paper Table 10: 64, 32, 16).",
    lower_bound=8,
)
flags.DEFINE_float(
    "max_minutes",
    None,
    "Wall-clock budget of the training stages: each stage gets its share "
    "(tao_keras.training.protocol.BUDGET_SHARE) and stops at the first epoch end past it.",
    0.0,
)
flags.DEFINE_bool(
    "baseline",
    True,
    "Also train the paper's light-curve Random Forest on the same records and put its row first "
    "in the report (photometry measured once per records directory, then cached).",
)
flags.DEFINE_bool(
    "deterministic",
    True,
    "Same command, same seed, same machine: same report.json numbers (TensorFlow op "
    "determinism and ordered tf.data; about 5% of the main job's time, docs/evidence.md). "
    "--nodeterministic lets tf.data deliver out of order.",
)
flags.DEFINE_string(
    "init_from",
    None,
    "A previous run directory: start from its last stage's model "
    "(layers with matching names and shapes), e.g. binary tasks from a multiclass run.",
)


def _first_given(*values):
    """The first of values that is not None (a flag given, else the next fallback); None if
    every one is."""
    return next((v for v in values if v is not None), None)


def train_config(task):
    """The TrainConfig of a run: the --preset's, with every flag that was given applied."""
    from tao_keras.training import config as train_cfg
    from tao_keras.training import precision

    base = train_cfg.TRAINING_PRESETS[FLAGS.preset]
    stages = {}
    for stage in ("densenet", "gru", "joint"):
        s = getattr(base, stage)
        stages[stage] = dataclasses.replace(
            s,
            epochs=getattr(FLAGS, f"epochs_{stage}") or s.epochs,
            learning_rate=(
                s.learning_rate * FLAGS.learning_rate_scale
                if getattr(FLAGS, f"learning_rate_{stage}") is None
                else getattr(FLAGS, f"learning_rate_{stage}")
            ),
            batch_size=FLAGS.batch_size or s.batch_size,
            average_epochs=_first_given(
                getattr(FLAGS, f"average_epochs_{stage}"), FLAGS.average_epochs, s.average_epochs
            ),
        )
    return dataclasses.replace(
        base,
        task=task,
        sequence_length=_sequence_length(base),
        date_dropout=_first_given(FLAGS.date_dropout, base.date_dropout),
        prefix_fraction=_first_given(FLAGS.prefix_fraction, base.prefix_fraction),
        aux_weight=FLAGS.aux_weight,
        teacher_weight=_first_given(FLAGS.teacher_weight, base.teacher_weight),
        weight_decay=_first_given(FLAGS.weight_decay, base.weight_decay),
        learning_rate_schedule=FLAGS.learning_rate_schedule or base.learning_rate_schedule,
        epoch_fraction=FLAGS.epoch_fraction,
        frozen=tuple(FLAGS.freeze),
        seed=FLAGS.seed,
        precision=precision.resolve(FLAGS.precision),
        normalization=FLAGS.normalization or base.normalization,
        per_date=FLAGS.per_date or base.per_date,
        aggregation=FLAGS.aggregation,
        photometry=FLAGS.photometry,
        photometry_statistics=FLAGS.photometry_statistics,
        photometry_eta=FLAGS.photometry_eta,
        statistics_expert=FLAGS.statistics_expert,
        expert_members=FLAGS.expert_members,
        fused_loss=_first_given(FLAGS.fused_loss, base.fused_loss),
        modality_dropout=FLAGS.modality_dropout,
        gru_layers=FLAGS.gru_layers,
        gru_units=FLAGS.gru_units,
        model_roi_size=FLAGS.model_roi_size,
        max_minutes=FLAGS.max_minutes,
        deterministic=FLAGS.deterministic,
        **stages,
    )


def _sequence_length(base):
    """--sequence_length as a TrainConfig value: the preset's when not given, None (every date)
    for 0; 1 and 2 are refused (a sequence needs one triplet)."""
    from tao_keras.pipeline import windows

    if FLAGS.sequence_length is None:
        return base.sequence_length
    if FLAGS.sequence_length == 0:
        return None
    if FLAGS.sequence_length < windows.MIN_DATES:
        raise ValueError(
            f"--sequence_length {FLAGS.sequence_length}: 0 (every date) or at least "
            f"{windows.MIN_DATES} (one triplet)"
        )
    return FLAGS.sequence_length


@dataclasses.dataclass
class ModelResults:
    """What the report shows of the models of a run, filled stage by stage and by the forest.

    scores: {model: {split: metrics.evaluate}}; early: {model: early F1}; predictions: {model:
    {split: evaluation.predictions}}; calibration: {model: {"temperature", split: summary}}."""

    scores: dict = dataclasses.field(default_factory=dict)
    early: dict = dataclasses.field(default_factory=dict)
    predictions: dict = dataclasses.field(default_factory=dict)
    calibration: dict = dataclasses.field(default_factory=dict)

    def add(self, model, scores, early=None, predictions=None, calibration=None, first=False):
        """Add one model's results (first=True puts it before the others, as the reference)."""
        for table, value in (
            (self.scores, scores),
            (self.early, early),
            (self.predictions, predictions),
            (self.calibration, calibration),
        ):
            if value:
                table[model] = value
                if first:
                    table.update({k: table.pop(k) for k in list(table) if k != model})


def stage_calibration(found, split_names=("val", "test")):
    """A stage's scores.json content -> {"temperature", split: calibration.summary} or None."""
    if "temperature" not in found:
        return None
    splits = {s: v for s, v in found.get("calibration", {}).items() if s in split_names}
    return {"temperature": found["temperature"], **splits}


def baseline_results(records, task, seed, out_dir=None):
    """The light-curve Random Forest on the same records (the comparison the paper makes):
    a ModelResults entry's arguments {"scores", "early", "predictions", "calibration"} (the
    forest's temperature fitted like the networks', for comparison; it is not exported), or
    None with a warning when it cannot be trained. With out_dir, its early curve also goes to
    TensorBoard (logs/random_forest/evaluation) beside the networks'."""
    from tao_keras import calibration, run_layout
    from tao_keras.lightcurves import baseline
    from tao_keras.lightcurves import curves as curve_io
    from tao_keras.training import protocol

    began = time.perf_counter()
    try:
        curves = curve_io.of_records(records)
        scores, info = baseline.run(curves, task, seed=seed)
        early_f1 = baseline.early_run(curves, task, seed=seed, whole=scores)
    except ValueError as e:
        logging.warning("no light-curve baseline in the report: %s", e)
        return None
    logging.info("light-curve Random Forest: %.0f s", time.perf_counter() - began)
    predictions = info["predictions"]
    if out_dir is not None:
        import tensorflow as tf

        writer = tf.summary.create_file_writer(
            os.path.join(run_layout.logs_dir(out_dir, "random_forest"), "evaluation")
        )
        protocol.write_early(writer, early_f1)
    return {
        "scores": scores,
        "early": early_f1,
        "predictions": predictions,
        "calibration": calibration.fit_on_validation(predictions),
    }


def run(task):
    """Train `task` end to end; prints the report and where the logs and models are."""
    import keras

    from tao_keras import classes, export, files, run_layout
    from tao_keras.lightcurves import baseline
    from tao_keras.training import multiworker, precision, protocol, reports

    std_logging.getLogger().setLevel(std_logging.INFO)
    began = time.perf_counter()
    strategy = protocol.make_strategy()  # first: multi-worker collectives start here
    unknown = [s for s in FLAGS.stages if s not in protocol.STAGES]
    if unknown:
        raise ValueError(f"--stages: unknown {unknown}; choose from {protocol.STAGES}")
    keras.utils.set_random_seed(FLAGS.seed)
    if FLAGS.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    try:
        records = prepare_records(FLAGS.data, FLAGS.cache_dir, FLAGS.num_objects, FLAGS.seed)
    except (ConversionError, manifest.ManifestError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    out_dir = FLAGS.output or os.path.join("runs", task)
    if not multiworker.is_chief():
        # Every worker saves; the others into a fixed directory of their own, so that a
        # restarted worker finds its backup again.
        out_dir = os.path.join(out_dir, f".worker-{strategy.cluster_resolver.task_id}")
    os.makedirs(out_dir, exist_ok=True)
    try:
        held = run_layout.lock(out_dir)  # noqa: F841  (held until the process exits)
    except run_layout.RunInUse as e:
        sys.exit(f"error: {e}")
    try:
        config = train_config(task)
        contract = protocol.model_contract(config, manifest.load(records)["roi_size"])
        if "joint" in FLAGS.stages:  # before any training: records without a teacher fail now
            protocol.teacher_targets(records, config, "joint")
    except (precision.PrecisionError, ValueError) as e:
        sys.exit(f"error: {e}")
    files.write_json_atomic(
        run_layout.config_path(out_dir),
        {"records": os.path.abspath(records), **dataclasses.asdict(config)},
    )
    logging.info(
        "%d replica(s); records %s; output %s", strategy.num_replicas_in_sync, records, out_dir
    )

    previous = None
    if FLAGS.init_from:
        previous = keras.saving.load_model(run_layout.last_model(FLAGS.init_from))
    models, stage_seconds = ModelResults(), {}
    for stage in FLAGS.stages:
        stage_began = time.perf_counter()
        previous, scores = protocol.run_stage(
            stage, records, out_dir, config, contract, strategy, previous
        )
        found = protocol.stage_results(out_dir, stage)
        models.add(
            protocol.MODEL_NAMES[stage],
            scores,
            found.get("early"),
            found.get("predictions"),
            stage_calibration(found),
        )
        stage_seconds[protocol.MODEL_NAMES[stage]] = time.perf_counter() - stage_began
    names = classes.task_class_names(task)
    trained = time.perf_counter() - began
    reference = None
    if FLAGS.baseline and multiworker.is_chief():
        forest = baseline_results(records, task, FLAGS.seed, out_dir)
        if forest is not None:
            reference = baseline.MODEL_NAME
            models.add(reference, **forest, first=True)
    text = reports.write(
        out_dir,
        models.scores,
        task,
        names,
        extra={
            "records": os.path.abspath(records),
            "seconds": time.perf_counter() - began,
            "training_seconds": trained,
            "stage_seconds": stage_seconds,
            "deterministic": config.deterministic,
        },
        early_f1=models.early,
        predictions=models.predictions,
        calibration=models.calibration,
        reference=reference,
    )
    print(text)
    print(f"TensorBoard: tensorboard --logdir {run_layout.logs_dir(out_dir)}")
    print(f"Keras model: {run_layout.stage_model(out_dir, FLAGS.stages[-1])}")
    if multiworker.is_chief() and export.is_sequence_model(previous):
        target = export.export_run(out_dir, run_layout.export_root(out_dir), stage=FLAGS.stages[-1])
        print(f"SavedModel: {target}   (python -m tools.predict --model {target} --data DIR ...)")
    elif not export.is_sequence_model(previous):
        print(
            "No SavedModel: the last stage is the DenseNet on triplets, which needs the catalog "
            "date of maximum; run a TAO-Net stage (gru, joint) to get a servable model."
        )
    print(f"Finished in {time.perf_counter() - began:.0f} s")
