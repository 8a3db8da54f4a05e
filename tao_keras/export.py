"""Write a trained TAO-Net as a self-contained SavedModel (raw cutouts and times in, class
probabilities out) for TF Serving and alert brokers: no project code is needed to serve it.

The graph functions and their checks are tao_keras.serving.ServingModule (whole sequences)
and tao_keras.streaming.NightUpdate (the `update` signature: one night at a time); this module
writes them with the model, the metadata() signature (JSON: task, class names, schema version,
RoI, dates used, normalization, update state size, training config) and
assets.extra/tao_keras.json, and finds the model to export in a trainer's run directory
(tao_keras.run_layout).
"""

import json
import logging
import os

import keras
import tensorflow as tf

from tao_keras import contract as contract_module
from tao_keras import run_layout, serving, streaming
from tao_keras.models import layers as _custom_layers  # noqa: F401  registers them for load_model
from tao_keras.training import precision
from tfrecords import schema

METADATA_FILE = "tao_keras.json"


class _DropCapturedInputNames(logging.Filter):
    """Drops TensorFlow's INFO record listing every captured input of a signature by name."""

    def filter(self, record):
        return "contains input name(s)" not in str(record.msg)


def is_sequence_model(model):
    """True for TAO-Net models (sequence inputs images/dt/length), False for triplet DenseNets."""
    return isinstance(model.input, dict) and {"images", "dt", "length"} <= set(model.input)


def export_model(
    model,
    export_dir,
    contract,
    training_config=None,
    objects_per_call=8,
    temperature=1.0,
    onnx=False,
):
    """Write the SavedModel to export_dir (e.g. EXPORT/<model name>/<version>); returns its
    metadata.

    model: a TAO-Net (Keras); export_dir: the version directory to write; contract: the
    model's ModelContract (tao_keras.contract: the cutouts a request carries, the crop,
    per-date rule, normalization, stride and dates seen, the task; checked against the
    model's layers), written into the metadata and read back by tao_keras.load;
    training_config: a dict kept in the metadata. objects_per_call: objects the model sees at
    once: memory grows with it, so a request of any size runs in chunks of this many
    (docs/performance.md gives the peaks measured). temperature: the calibration fitted on the
    validation split (tao_keras.calibration), applied to the probabilities of every signature;
    1.0 leaves them as the model gives them. onnx: also write the night-by-night update for
    onnxruntime into export_dir/onnx (tao_keras.onnx_export; needs the onnx package).
    """
    if not is_sequence_model(model):
        raise ValueError(
            "only TAO-Net (sequence) models can be served: the DenseNet on triplets needs the "
            "date of maximum brightness, a catalog value that alerts do not carry"
        )
    contract_module.check_model(contract, model)
    trained_precision = precision.compute_precision(model)
    model = precision.float32_copy(model)
    updater = _night_update(model, contract, temperature)
    metadata = {
        **_contract_metadata(contract),
        "trained_precision": trained_precision,
        "objects_per_call": objects_per_call,
        "training_config": training_config or {},
        **_serving_metadata(contract, updater, temperature),
    }
    text = json.dumps(metadata, indent=2, sort_keys=True)
    server = serving.ServingModule(model, contract, objects_per_call, temperature)
    _write(_archive(model, server, updater, contract.roi_size, text), export_dir, text)
    if onnx:
        if updater is None:
            raise ValueError("no night-by-night update for this model, so no ONNX export")
        from tao_keras import onnx_export

        onnx_export.write(updater, os.path.join(export_dir, "onnx"), text)
    return metadata


def _contract_metadata(contract):
    """The metadata entries of a contract: the whole contract (read back by tao_keras.load)
    and its fields flat, for clients without our code (TF Serving, tools/replay_nights.py)."""
    return {
        "contract": contract_module.to_dict(contract),
        "task": contract.task,
        "class_names": list(contract.class_names),
        "roi_size": contract.roi_size,
        "model_roi_size": contract.model_roi_size,
        "sequence_length": contract.sequence_length,
        "dates_used": "all"
        if contract.sequence_length is None
        else f"most recent {contract.sequence_length}",
        "stride": contract.stride,
        "normalization": contract.normalization,
        "per_date": contract.per_date,
        "same_date_days": schema.SAME_DATE_DAYS,
        "min_dates": contract.min_dates,
    }


def _serving_metadata(contract, updater, temperature):
    """The metadata entries of how the export serves: format versions, precision, the
    calibration, the `update` state (None when the model has no update)."""
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "serving_precision": "float32",
        "calibration": {
            "temperature": float(temperature),
            "method": "temperature scaling fitted on the validation split (minimum NLL); "
            "probabilities = softmax(log(p) / temperature) in every signature",
        },
        "update": None
        if updater is None
        else {
            "state_size": updater.state_size,
            "previous_dates": contract.min_dates - 1,
            "min_dates": contract.min_dates,
        },
    }


def _night_update(model, contract, temperature):
    """The `update` graph function's owner (streaming.NightUpdate), or None with a warning for
    a model that cannot advance night by night (bidirectional GRUs)."""
    try:
        return streaming.NightUpdate(model, contract, temperature)
    except ValueError as e:
        logging.getLogger(__name__).warning("no night-by-night `update` signature: %s", e)
        return None


def _archive(model, server, updater, roi, text):
    """A keras.export.ExportArchive of the model with its signatures: serving_default (raw
    cutouts), serialized (records), update (when updater is not None) and metadata (text)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serving_default",
        server.serve_raw,
        input_signature=[
            tf.TensorSpec([None, None, roi, roi], tf.float32, name="images"),
            tf.TensorSpec([None, None], tf.float64, name="mjd"),
            tf.TensorSpec([None], tf.int32, name="num_exposures"),
        ],
    )
    archive.add_endpoint(
        "serialized",
        server.serve_records,
        input_signature=[tf.TensorSpec([None], tf.string, name="records")],
    )
    if updater is not None:
        archive.add_endpoint(
            "update",
            updater.update,
            input_signature=[
                tf.TensorSpec([None, updater.state_size], tf.float32, name="state"),
                tf.TensorSpec([None, 2, roi, roi], tf.float32, name="previous_images"),
                tf.TensorSpec([None, 2], tf.float64, name="previous_mjd"),
                tf.TensorSpec([None, None, roi, roi], tf.float32, name="images"),
                tf.TensorSpec([None, None], tf.float64, name="mjd"),
                tf.TensorSpec([None], tf.int32, name="num_exposures"),
            ],
        )
    describe = tf.function(lambda: {"json": tf.constant(text)}, input_signature=[])
    describe()
    archive.add_endpoint("metadata", describe)
    return archive


def _write(archive, export_dir, text):
    """The SavedModel into export_dir, and the metadata beside it (assets.extra)."""
    # TensorFlow logs (through absl, at INFO) a page-long list of the graph's captured inputs here.
    quiet = _DropCapturedInputNames()
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(quiet)
    try:
        archive.write_out(export_dir, verbose=False)
    finally:
        absl_logger.removeFilter(quiet)
    os.makedirs(os.path.join(export_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(export_dir, "assets.extra", METADATA_FILE), "w") as f:
        f.write(text + "\n")


def export_run(run_dir, export_root, name=None, version=None, stage=None, onnx=False):
    """Export a trainer's run directory -> the version directory written (export_root/name/version).

    stage: which stage's model.keras (default: joint, else gru); name: default taonet_<task>;
    onnx: also the ONNX update (export_model's onnx).
    """
    config = run_layout.load_config(run_dir, "--run")
    available = run_layout.finished_models(run_dir, run_layout.SERVED_STAGES)
    if stage is None:
        if not available:
            raise FileNotFoundError(
                f"{run_dir}: no joint/ or gru/ model.keras; only TAO-Net stages can be served"
            )
        stage = available[0]
    elif stage not in available:
        raise FileNotFoundError(
            f"{run_dir}: stage {stage!r} has no model.keras (served stages found: {available})"
        )
    model = keras.saving.load_model(run_layout.stage_model(run_dir, stage), compile=False)
    contract_path = run_layout.stage_file(run_dir, stage, run_layout.CONTRACT)
    try:
        contract = contract_module.load(contract_path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{contract_path}: no model contract beside the {stage} model (a run written "
            "before contracts): run the trainer again on the same --output, which retrains "
            "that stage"
        ) from None
    model_root = os.path.join(export_root, name or f"taonet_{contract.task}")
    target = os.path.join(model_root, str(version or run_layout.next_version(model_root)))
    if os.path.exists(target):
        raise FileExistsError(f"{target} exists; choose another --version")
    export_model(
        model,
        target,
        contract,
        training_config={**config, "stage": stage},
        temperature=stage_temperature(run_dir, stage),
        onnx=onnx,
    )
    return target


def stage_temperature(run_dir, stage):
    """The temperature a stage fitted on its validation split (its scores.json), 1.0 for a run
    written before calibration existed (logged)."""
    try:
        with open(run_layout.stage_file(run_dir, stage, run_layout.SCORES)) as f:
            return float(json.load(f)["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        logging.getLogger(__name__).warning(
            "%s: stage %s has no fitted temperature; exporting uncalibrated probabilities",
            run_dir,
            stage,
        )
        return 1.0
