"""The paper's training protocol (section 3.3), stage by stage, under a tf.distribute strategy.

Stage 1 trains a DenseNet on triplets; stage 2 freezes its weights inside TAO-Net and trains
the GRU stack on the complete, variable-length sequences; stage 3 trains everything jointly
on at most S dates with the auxiliary loss after the backbone. With TrainConfig.
prefix_fraction, stages 2 and 3 also train on sequences cut after a random date. Each stage
keeps its best weights by validation mean F1, resumes after a kill (BackupAndRestore), writes
TensorBoard logs, and is scored on the validation and test splits on whole sequences; TAO-Net
stages also on the first N dates of each object (early.NIGHTS: early classification).
"""

import dataclasses
import functools
import json
import logging
import math
import os

import keras
import tensorflow as tf

from tao_keras import calibration, early, files, run_layout
from tao_keras import contract as contract_module
from tao_keras.models import densenet, presets, taonet
from tao_keras.models import layers as tao_layers
from tao_keras.pipeline import datasets
from tao_keras.training import (
    callbacks,
    evaluation,
    expert,
    losses,
    multiworker,
    precision,
    tensorboard_views,
)
from tao_keras.training import config as config_module
from tfrecords import manifest as manifest_file

STAGES = run_layout.STAGES
# Settings that only later stages read: a finished stage 1 is reused whatever they are.
LATER_STAGE_SETTINGS = {
    "densenet": (
        "prefix_fraction",
        "date_dropout",
        "sequence_length",
        "aux_weight",
        "aggregation",
        "photometry",
        "photometry_statistics",
        "photometry_eta",
        "modality_dropout",
        "statistics_expert",
        "expert_members",
        "gru_layers",
        "gru_units",
        "frozen",
        "teacher_weight",
        "fused_loss",
    ),
    # the GRU stage has no auxiliary loss (training.config.STAGES): its weight is the joint's
    "gru": ("teacher_weight", "aux_weight"),
}
# Shares of TrainConfig.max_minutes per stage (about what each stage takes with the cpu preset).
BUDGET_SHARE = {"densenet": 0.3, "gru": 0.2, "joint": 0.5}
MODEL_NAMES = {
    "densenet": "DenseNet (triplets)",
    "gru": "TAO-Net, GRU on frozen DenseNet",
    "joint": "TAO-Net, joint + double supervision",
}


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG is set (with the Keras fix of
    tao_keras.training.multiworker), else MirroredStrategy over the local GPUs (or the CPU).
    Create it before any other TensorFlow work: collective ops are configured at start-up."""
    if os.environ.get("TF_CONFIG"):
        multiworker.apply()
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def pipeline_config(config, stage, contract):
    """The input pipeline settings of one stage of a TrainConfig: triplets (densenet),
    variable-length sequences (gru) or fixed length S (joint), at the stage's batch size,
    feeding a model of `contract` (its normalization, per-date rule, crop and stride)."""
    common = dict(
        batch_size=getattr(config, stage).batch_size,
        seed=config.seed,
        deterministic=config.deterministic,
    )
    traits = config_module.stage(stage)
    if not traits.on_sequences:
        return datasets.for_contract(contract, mode="triplet", **common)
    sequence_length = config.sequence_length if traits.window_of_s_dates else None
    return datasets.for_contract(
        contract,
        mode="sequence",
        sequence_length=sequence_length,
        prefix_fraction=config.prefix_fraction,
        date_dropout=config.date_dropout,
        **common,
    )


def evaluation_config(pipeline, max_dates=None):
    """A stage's PipelineConfig for scoring: no augmentation, no prefixes, no dates left out,
    whole sequences or their first max_dates dates (what serving does with an object observed
    that many nights)."""
    return dataclasses.replace(
        pipeline,
        augment=False,
        prefix_fraction=0.0,
        date_dropout=0.0,
        sequence_length=None,
        max_dates=max_dates,
    )


def two_outputs(features, label):
    """(features, label) -> (features, {probabilities: label, aux_probabilities: label}): the
    targets of a TAO-Net, whose auxiliary per-step head is supervised with the object's label.
    A label {"label", "soft"} (a training dataset with the teacher's soft targets) gives the
    final output the soft rows and the auxiliary head the label."""
    if isinstance(label, dict):
        return features, {"probabilities": label["soft"], "aux_probabilities": label["label"]}
    return features, {"probabilities": label, "aux_probabilities": label}


def expert_outputs(features, label, fused=False):
    """two_outputs for a TAO-Net with the statistics expert (TAONetConfig.statistics_expert):
    the GRU's classifier (taonet.HEAD_OUTPUT) learns what the final output learns without the
    expert, and with `fused` (TrainConfig.fused_loss > 0) so does the mean of it and the
    expert, "probabilities" (else it has no target: each classifier trains alone, as two models
    of a late fusion do); the expert (fitted apart and frozen: training.expert) has none."""
    features, targets = two_outputs(features, label)
    kept = {taonet.HEAD_OUTPUT: targets["probabilities"], **targets}
    if not fused:
        del kept["probabilities"]
    return features, kept


def training_targets(architecture, fused_loss=0.0):
    """The map (features, label) -> (features, targets) that a TAO-Net of `architecture` (a
    TAONetConfig) trains on: expert_outputs with the statistics expert (the mean's target too
    when fused_loss > 0, as losses.compile_stage gives it a loss), else two_outputs."""
    if not architecture.statistics_expert:
        return two_outputs
    return functools.partial(expert_outputs, fused=fused_loss > 0.0)


def teacher_targets(records_dir, config, stage):
    """The soft targets of a stage's training objects (lightcurves.teacher.for_records) when
    the stage learns from the teacher and config.teacher_weight > 0, else None."""
    if not (config_module.stage(stage).teacher and config.teacher_weight > 0):
        return None
    from tao_keras.lightcurves import teacher

    targets = teacher.for_records(records_dir, config.task, config.teacher_weight, config.seed)
    logging.info(
        "stage %s: soft targets of the light-curve forest (weight %.2f) for %d training objects",
        stage,
        config.teacher_weight,
        len(targets[0]),
    )
    return targets


def compile_model(model, stage, config, stage_config, steps_per_epoch=1, soft_targets=False):
    """Compile a stage's model (losses.compile_stage) with the stage's learning rate and weight
    average (stage_config.average_epochs epochs of steps_per_epoch steps), the run's weight
    decay and auxiliary weight, and the learning-rate schedule (over the stage's epochs);
    soft_targets: the final output learns the teacher's probability rows (teacher_targets);
    with the statistics expert, config.fused_loss of it through the served mean."""
    losses.compile_stage(
        model,
        stage,
        stage_config.learning_rate,
        config.weight_decay,
        config.aux_weight,
        config_module.ema_momentum(stage_config.average_epochs, steps_per_epoch),
        config_module.decay_steps(config, stage_config, steps_per_epoch),
        soft_targets,
        config.fused_loss,
    )


# TrainConfig fields that, when set (not None), replace the TAONetConfig field of that name.
ARCHITECTURE_OVERRIDES = (
    "aggregation",
    "photometry",
    "photometry_statistics",
    "photometry_eta",
    "modality_dropout",
    "statistics_expert",
    "expert_members",
    "gru_layers",
    "gru_units",
)


def model_contract(config, roi_size):
    """The ModelContract of a run, built once by the trainer: the TrainConfig's model preset
    with its overrides (aggregation, photometry input and statistics, GRU stack, model RoI;
    photometry False alone also turns the statistics off), its task, per-date rule and
    normalization, for records (and requests) of roi_size x roi_size cutouts; every stage is
    scored and served on whole sequences (sequence_length None). ValueError when
    config.fused_loss asks for a loss through an expert the architecture lacks."""
    overrides = {
        name: getattr(config, name)
        for name in ARCHITECTURE_OVERRIDES
        if getattr(config, name) is not None
    }
    if config.photometry is False and config.photometry_statistics is None:
        overrides["photometry_statistics"] = False  # pixels only: no statistics of photometry
    if overrides.get("photometry_statistics") is False:
        # no statistics: neither their von Neumann ratio nor a classifier that reads them alone
        for name, off in (
            ("photometry_eta", False),
            ("modality_dropout", 0.0),
            ("statistics_expert", False),
        ):
            if getattr(config, name) is None:
                overrides[name] = off
    net = dataclasses.replace(presets.preset(config.model_preset), **overrides)
    if config.fused_loss > 0 and not net.statistics_expert:
        raise ValueError(
            f"fused_loss {config.fused_loss}: the mean it trains through is the statistics "
            f"expert's with the GRU's classifier, and model preset {config.model_preset!r} with "
            "these flags has no expert (add --statistics_expert, or drop --fused_loss)"
        )
    if config.model_roi_size is not None:
        net = dataclasses.replace(
            net, backbone=dataclasses.replace(net.backbone, roi_size=config.model_roi_size)
        )
    return contract_module.ModelContract(
        architecture=net,
        roi_size=roi_size,
        task=config.task,
        per_date=config.per_date,
        normalization=config.normalization,
    )


def build_model(stage, config, contract, previous, replicas=1):
    """The model of one stage of `contract`'s architecture: the DenseNet on triplets
    (densenet), or TAO-Net with weights carried from `previous` (the earlier stage's model, or
    a run to finetune from) and the backbone/GRUs frozen as the stage and config.frozen say.
    replicas > 1 synchronizes BatchNorm across replicas and workers."""
    net = contract.architecture
    num_classes = len(contract.class_names)
    if replicas > 1:  # every replica and worker then keeps the same BatchNorm statistics
        net = dataclasses.replace(
            net, backbone=dataclasses.replace(net.backbone, synchronized_batchnorm=True)
        )
    traits = config_module.stage(stage)
    if not traits.on_sequences:
        return densenet.build_densenet(net.backbone, num_classes, "early")
    model = taonet.build_taonet(net, num_classes)
    if previous is not None:
        if not any(isinstance(layer, tao_layers.StepwiseBackbone) for layer in previous.layers):
            taonet.load_backbone_weights(model, previous)  # from the DenseNet on triplets
        else:
            transfer_matching_weights(model, previous)
    taonet.set_trainable(
        model,
        backbone=traits.trains_backbone and "backbone" not in config.frozen,
        recurrent="recurrent" not in config.frozen,
    )
    return model


def transfer_matching_weights(target, source):
    """Copy weights layer by layer where names and shapes agree (finetuning across tasks:
    the classifier heads differ in size and keep their fresh initialization). Returns the names
    copied."""
    copied = []
    for layer in target.layers:
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        weights = other.get_weights()
        if weights and [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied.append(layer.name)
    return copied


def _stage_settings(values, stage):
    """The entries of a TrainConfig dict that a stage's result depends on."""
    later = STAGES[STAGES.index(stage) + 1 :] + LATER_STAGE_SETTINGS.get(stage, ())
    return json.loads(json.dumps({k: v for k, v in values.items() if k not in later}))


def _settings(config, stage):
    """The settings a stage's result depends on: the TrainConfig less the later stages'."""
    return _stage_settings(dataclasses.asdict(config), stage)


def _saved_settings(saved, stage):
    """The settings a finished stage recorded, with the TrainConfig's defaults for settings
    added since (a new setting's default is the behaviour before it existed, so a run written
    before it is still reused); None when they do not make a TrainConfig."""
    try:
        return _stage_settings(dataclasses.asdict(config_module.from_dict(saved)), stage)
    except (TypeError, ValueError):
        return None


def _contract_part(contract, stage):
    """What of a contract a stage's model depends on (the DenseNet on triplets: all but the
    temporal head), as JSON values."""
    values = contract_module.to_dict(contract)
    if not config_module.stage(stage).on_sequences:
        values["architecture"] = {"backbone": values["architecture"]["backbone"]}
    return values


def _saved_contract_part(out_dir, stage):
    """_contract_part of the contract saved with a stage's model, None when it has none or
    it cannot be read (a run written before contracts, or a damaged file)."""
    try:
        saved = contract_module.load(run_layout.stage_file(out_dir, stage, run_layout.CONTRACT))
    except (OSError, ValueError):
        return None
    return _contract_part(saved, stage)


def finished_stage(out_dir, stage, config, contract, records_dir, previous_identity):
    """What a stage finished earlier with the same settings, the same model contract, the
    same records and the same starting weights wrote (its scores.json), else None (with the
    reason logged when a finished stage is not reused). A scores.json of an older format
    (without the predictions) counts as unfinished scoring: the caller scores its model.keras
    again."""
    try:
        with open(run_layout.stage_file(out_dir, stage, run_layout.SCORES)) as f:
            done = json.load(f)
    except (OSError, ValueError):
        return None
    if not os.path.exists(run_layout.stage_model(out_dir, stage)):
        return None
    reasons = []
    if _saved_settings(done.get("config", {}), stage) != _settings(config, stage):
        reasons.append("other settings")
    if _saved_contract_part(out_dir, stage) != _contract_part(contract, stage):
        reasons.append("another model contract (or none saved)")
    if done.get("records") != manifest_file.identity(records_dir):
        reasons.append(f"other records than {records_dir}")
    if done.get("started_from") != previous_identity:
        reasons.append("other starting weights")
    if reasons:
        logging.info(
            "stage %s finished earlier with %s: training it again", stage, ", ".join(reasons)
        )
        return None
    return done


def run_stage(stage, records_dir, out_dir, config, contract, strategy, previous=None):
    """Train one stage; returns (best model, {split: metrics}) and writes OUT/<stage>/.

    stage: 'densenet', 'gru' or 'joint'; records_dir: converted records; out_dir: the run
    directory (tao_keras.run_layout); config: the TrainConfig; contract: the run's
    ModelContract (model_contract), saved with the stage's model; strategy: a tf.distribute
    strategy (make_strategy); previous: the earlier stage's model (or a run's, to finetune)
    whose weights the stage starts from.

    A stage that finished earlier with the same settings (OUT/<stage>/scores.json, written
    after its model.keras) is not trained again: a rerun after a kill in a later stage loads
    its model and scores and goes on.
    """
    stage_dir = run_layout.stage_dir(out_dir, stage)
    os.makedirs(stage_dir, exist_ok=True)
    started_from = None if previous is None else taonet.weights_digest(previous)
    done = finished_stage(out_dir, stage, config, contract, records_dir, started_from)
    if done is not None:
        logging.info("stage %s finished earlier with these settings: reusing %s", stage, stage_dir)
        model = keras.saving.load_model(run_layout.stage_model(out_dir, stage))
        # The same model; the saved contract may differ in what this stage does not read.
        contract_module.save(contract, run_layout.stage_file(out_dir, stage, run_layout.CONTRACT))
        if "predictions" not in done:  # written before predictions were kept: score again
            writer = _evaluation_writer(out_dir, stage)
            return model, score_stage(
                model, stage, records_dir, out_dir, config, contract, writer, started_from
            )
        return model, done["scores"]
    manifest_file.check_roi(manifest_file.load(records_dir), records_dir, contract.model_roi_size)
    writer = _evaluation_writer(out_dir, stage)
    model = train_stage(stage, records_dir, out_dir, config, contract, strategy, previous, writer)
    return model, score_stage(
        model, stage, records_dir, out_dir, config, contract, writer, started_from
    )


def train_stage(stage, records_dir, out_dir, config, contract, strategy, previous, writer):
    """Fit one stage's model (resuming from its backup) and return it with its best weights;
    writer: the stage's TensorBoard evaluation writer (validation F1, PR curves, HParams)."""
    names = contract.class_names
    stage_config = getattr(config, stage)
    pipeline = pipeline_config(config, stage, contract)
    soft = teacher_targets(records_dir, config, stage)
    train, steps = datasets.training_dataset(records_dir, pipeline, soft_targets=soft)
    steps = max(1, math.ceil(steps * config.epoch_fraction))
    val = datasets.evaluation_dataset(records_dir, evaluation_config(pipeline), split="val")
    if config_module.stage(stage).on_sequences:
        train = train.map(training_targets(contract.architecture, config.fused_loss))
    with strategy.scope(), precision.policy(config.precision):
        model = build_model(stage, config, contract, previous, strategy.num_replicas_in_sync)
        compile_model(model, stage, config, stage_config, steps, soft is not None)
    if taonet.expert_layers(model) and not expert.carried(model, previous):
        # fitted apart once, then frozen (training.expert); a resumed stage's backup then
        # restores the weights it was trained with
        expert.fit(
            model,
            *expert.training_statistics(
                model, records_dir, [evaluation_config(pipeline, n) for n in early.NIGHTS]
            ),
        )
    best = run_layout.stage_file(out_dir, stage, "best.weights.h5")
    history = run_layout.stage_file(out_dir, stage, "history.csv")
    tensorboard_views.write_hparams(
        writer,
        {
            "stage": stage,
            "preset": config.model_preset,
            "task": config.task,
            "sequence_length": config.sequence_length,
            "aux_weight": config.aux_weight,
            "teacher_weight": config.teacher_weight,
            "seed": config.seed,
            **dataclasses.asdict(stage_config),
        },
    )
    stage_callbacks = [
        callbacks.ValidationF1(val, names, writer),
        callbacks.BestWeights(best, history),
        keras.callbacks.TensorBoard(run_layout.logs_dir(out_dir, stage)),
        keras.callbacks.CSVLogger(history, append=True),
        # Last: an epoch is only marked done once everything above has recorded it.
        callbacks.ResumableBackup(run_layout.stage_file(out_dir, stage, "backup")),
    ]
    if config.max_minutes:
        stage_callbacks.insert(
            -1, callbacks.TimeBudget(60 * config.max_minutes * BUDGET_SHARE[stage])
        )
    if config_module.ema_momentum(stage_config.average_epochs, steps) > 0:
        # the averaged weights are scored, kept as the best and logged; the backup (last)
        # saves the raw weights and the average, as an uninterrupted run holds them
        averaged, raw = callbacks.averaged_weights()
        stage_callbacks = [averaged, *stage_callbacks[:-1], raw, stage_callbacks[-1]]
    logging.info(
        "stage %s: %d epochs x %d steps of %d",
        stage,
        stage_config.epochs,
        steps,
        pipeline.batch_size,
    )
    model.fit(
        train,
        epochs=stage_config.epochs,
        steps_per_epoch=steps,
        callbacks=stage_callbacks,
        verbose=2,
    )
    if callbacks.verified(best):
        model.load_weights(best)
    else:
        logging.warning("%s: no whole best weights; keeping the last epoch's", best)
    return model


def _evaluation_writer(out_dir, stage):
    return tf.summary.create_file_writer(
        os.path.join(run_layout.logs_dir(out_dir, stage), "evaluation")
    )


def score_stage(model, stage, records_dir, out_dir, config, contract, writer, started_from=None):
    """Score a stage's kept model and write OUT/<stage>/model.keras, its contract.json and
    scores.json (last).

    On the validation and test splits: predictions per object (kept for the paired bootstrap),
    the paper's metric with its context (metrics.evaluate), a temperature fitted on the
    validation predictions with NLL and reliability before and after it (tao_keras.calibration),
    for TAO-Net stages the first-N-dates scores (early classification); TensorBoard gets the
    kept model's confusion matrix and example strips (writer). scores.json also records what
    the stage was trained from (the records' identity, started_from: the starting weights'
    digest), which a rerun must match to reuse it. -> {split: metrics}.
    """
    names = contract.class_names
    eval_config = evaluation_config(pipeline_config(config, stage, contract))
    predictions = {}
    for split in ("val", "test"):
        try:
            predictions[split] = evaluation.predictions(model, records_dir, eval_config, split)
        except ValueError as e:  # e.g. a tiny data set without a test split for this task
            if split == "val":
                raise
            logging.warning("not scoring test: %s", e)
    scores = {s: evaluation.score_predictions(p, names) for s, p in predictions.items()}
    val = predictions["val"]
    calibrated = calibration.fit_on_validation(predictions)
    temperature = calibrated.pop("temperature")
    tensorboard_views.write_kept_model(
        writer,
        datasets.evaluation_dataset(records_dir, eval_config, "val"),
        val,
        names,
        scores["val"]["confusion_matrix"],
    )
    early_f1 = {}
    if config_module.stage(stage).on_sequences:  # triplets need the catalog date of maximum
        early_f1 = early_scores(model, records_dir, eval_config, names, scores)
        write_early(writer, early_f1)
    model.save(run_layout.stage_model(out_dir, stage))
    contract_module.save(contract, run_layout.stage_file(out_dir, stage, run_layout.CONTRACT))
    scores = json.loads(json.dumps(scores, default=float))
    files.write_json_atomic(
        run_layout.stage_file(out_dir, stage, run_layout.SCORES),
        {
            "config": _settings(config, stage),
            "records": manifest_file.identity(records_dir),
            "started_from": started_from,
            "scores": scores,
            "early": early_f1,
            "temperature": temperature,
            "calibration": calibrated,
            "predictions": predictions,
        },
    )
    return scores


def early_scores(model, records_dir, eval_config, class_names, whole=None, nights=early.NIGHTS):
    """The metric of a sequence model on the first N dates of every object, per split.

    model: a TAO-Net; records_dir: converted records; eval_config: the stage's evaluation
    PipelineConfig; class_names: the task's; whole: {split: metrics} already computed on whole
    sequences (reused for None, and naming the splits to score); nights: the N to try.
    -> {split: {early.label(N): early.summary(metrics)}}.
    """
    out = {}
    for split in whole or ("val", "test"):
        out[split] = {}
        for n in nights:
            if n is None and whole:
                r = whole[split]
            else:
                dataset = datasets.evaluation_dataset(
                    records_dir, dataclasses.replace(eval_config, max_dates=n), split
                )
                r = evaluation.score(model, dataset, class_names)
            out[split][early.label(n)] = early.summary(r)
    return out


def write_early(writer, early):
    """TensorBoard scalars early_mean_f1/<split> with the number of dates as the step (whole
    sequences are the epoch scalars already)."""
    with writer.as_default():
        for split, by_nights in early.items():
            for label, r in by_nights.items():
                if label != "all":
                    tf.summary.scalar(f"early_mean_f1/{split}", r["mean_f1"], step=int(label))
    writer.flush()


def stage_results(out_dir, stage):
    """Everything a finished stage wrote in its scores.json ({} when none): "scores", "early",
    "temperature", "calibration", "predictions" ({split: evaluation.predictions})."""
    try:
        with open(run_layout.stage_file(out_dir, stage, run_layout.SCORES)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
