"""Export a trained TAO-Net as a self-contained SavedModel (raw cutouts and times in, class
probabilities out), for TF Serving and alert brokers: no project code is needed to serve it.

Signatures (every output has the batch as its first axis, as TF Serving's row format needs):
  serving_default(images float32 [B, E, H, W] raw pixels (NaN = bad), mjd float64 [B, E],
                  num_exposures int32 [B]: exposures beyond it are padding and ignored)
  serialized(records string [B]: records as written by tools.fits_to_tfrecords)
    -> probabilities float32 [B, C], class_id int32 [B], class_name string [B],
       class_names string [B, C], num_dates int32 [B] (observation dates used)
  metadata() -> json string: task, class names, schema version, RoI, sequence length, training
  config.

Inside the graph, with the functions the pipeline uses (tao_keras.pipeline): exposures sorted by
time, exposures without a single finite pixel dropped (as the converter drops such files),
dates grouped by the converter's rule, the first exposure of each date (the evaluation choice),
normalization, fixed length S (when the model was evaluated at one), sliding triplets, the model.
Malformed requests fail with InvalidArgument and a message naming the batch row.
"""

import json
import logging
import os

import keras
import tensorflow as tf

from tao_keras import classes
from tao_keras.models import layers as _custom_layers  # noqa: F401  registers them for load_model
from tao_keras.pipeline import dates, features
from tfrecords import parser, schema

MIN_DATES = 3  # one triplet
METADATA_FILE = "tao_keras.json"


def _check(condition, message_format, values):
    """An assertion whose message is formatted only in the graph (values: list of tensors)."""
    return tf.debugging.Assert(condition, [tf.strings.format(message_format, values)])


class _DropCapturedInputNames(logging.Filter):
    """Drops TensorFlow's INFO record listing every captured input of a signature by name."""

    def filter(self, record):
        return "contains input name(s)" not in str(record.msg)


def _padded(features_per_object):
    """Ragged per-object features -> padded model inputs {"images", "dt", "length"}."""
    images = features_per_object["images"]
    return {
        "images": images.to_tensor(),
        "dt": features_per_object["dt"].to_tensor(),
        "length": tf.cast(images.row_lengths(), tf.int32),
    }


class _Server:
    """The graph functions of the export, closing over the model and its settings."""

    def __init__(
        self, model, class_names, roi_size, sequence_length, stride, objects_per_call, scale, crop
    ):
        self.model = model
        self.scale = scale
        self.crop = crop
        self.objects_per_call = objects_per_call
        self.class_names = tf.constant(class_names)
        self.roi_size = roi_size
        self.sequence_length = sequence_length
        self.stride = stride

    def _output_signature(self):
        roi = self.roi_size
        return {
            "images": tf.RaggedTensorSpec([None, roi, roi, 3], tf.float32, ragged_rank=0),
            "dt": tf.RaggedTensorSpec([None, 2], tf.float32, ragged_rank=0),
            "num_dates": tf.TensorSpec([], tf.int32),
        }

    def _object_features(self, images, mjd, date_index, row):
        """One object's exposures sorted by time -> its model input and number of dates."""
        num_dates = tf.cast(tf.reduce_max(tf.concat([[-1], date_index], 0)) + 1, tf.int32)
        check = _check(
            num_dates >= MIN_DATES,
            "batch row {}: {} observation date(s) with usable pixels; at least 3 are needed",
            [row, num_dates],
        )
        with tf.control_dependencies([check]):
            images, mjd = dates.select_dates(images, mjd, date_index, num_dates)
        out = features.evaluation_features(
            images, mjd, self.sequence_length, self.stride, self.scale, self.crop
        )
        return {"images": out["images"], "dt": out["dt"], "num_dates": num_dates}

    def _raw_object(self, item):
        images, mjd, count, row = item
        images, mjd = images[:count], mjd[:count]
        check = _check(
            tf.reduce_all(tf.math.is_finite(mjd)),
            "batch row {}: mjd has NaN or infinite values",
            [row],
        )
        with tf.control_dependencies([check]):
            images, mjd = tf.identity(images), tf.identity(mjd)
        usable = tf.reduce_any(tf.math.is_finite(images), axis=[1, 2])
        images, mjd = tf.boolean_mask(images, usable), tf.boolean_mask(mjd, usable)
        order = tf.argsort(mjd, stable=True)
        images, mjd = tf.gather(images, order), tf.gather(mjd, order)
        return self._object_features(images, mjd, dates.group_dates(mjd), row)

    def _record_object(self, item):
        serialized, row = item
        record = parser.parse(serialized, self.roi_size)
        return self._object_features(record["images"], record["mjd"], record["date_index"], row)

    def _probabilities(self, inputs):
        """The model over chunks of at most objects_per_call objects, one after the other, so that
        the backbone's activations stay bounded whatever the request's batch. Chunks are made as
        even as possible; the last is filled up with copies of the first object (results
        dropped)."""
        batch = tf.shape(inputs["length"])[0]
        chunks = tf.maximum((batch + self.objects_per_call - 1) // self.objects_per_call, 1)
        size = (batch + chunks - 1) // chunks
        index = tf.concat([tf.range(batch), tf.zeros([chunks * size - batch], tf.int32)], axis=0)

        def split(x):
            return tf.reshape(
                tf.gather(x, index), tf.concat([[chunks, size], tf.shape(x)[1:]], axis=0)
            )

        num_classes = self.class_names.shape[0]
        out = tf.map_fn(
            lambda part: tf.cast(self.model(part, training=False)["probabilities"], tf.float32),
            {k: split(v) for k, v in inputs.items()},
            parallel_iterations=1,
            fn_output_signature=tf.TensorSpec([None, num_classes], tf.float32),
        )
        return tf.reshape(out, [-1, num_classes])[:batch]

    def _classify(self, per_object):
        probabilities = self._probabilities(_padded(per_object))
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        batch = tf.shape(probabilities)[0]
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.class_names, class_id),
            "class_names": tf.tile(self.class_names[None], [batch, 1]),
            "num_dates": per_object["num_dates"],
        }

    def serve_raw(self, images, mjd, num_exposures):
        shape = tf.shape(images)
        checks = [
            _check(
                tf.reduce_all(tf.equal(shape[2:], self.roi_size)),
                f"images has shape {{}}; it must be "
                f"[batch, exposures, {self.roi_size}, {self.roi_size}]",
                [shape],
            ),
            _check(
                tf.reduce_all(tf.equal(tf.shape(mjd), shape[:2])),
                "mjd has shape {} but images {}: both must be [batch, exposures]",
                [tf.shape(mjd), shape],
            ),
            _check(
                tf.equal(tf.shape(num_exposures)[0], shape[0]),
                "num_exposures has {} rows but images {}",
                [tf.shape(num_exposures)[0], shape[0]],
            ),
            _check(
                tf.reduce_all((num_exposures >= 0) & (num_exposures <= shape[1])),
                "num_exposures {} must lie in [0, {}] (the exposures axis of images)",
                [num_exposures, shape[1]],
            ),
        ]
        with tf.control_dependencies(checks):  # nothing reads the inputs before the checks pass
            images, mjd, num_exposures = (
                tf.identity(images),
                tf.identity(mjd),
                tf.identity(num_exposures),
            )
            rows = tf.range(shape[0])
        per_object = tf.map_fn(
            self._raw_object,
            (images, mjd, num_exposures, rows),
            fn_output_signature=self._output_signature(),
        )
        return self._classify(per_object)

    def serve_records(self, records):
        rows = tf.range(tf.shape(records)[0])
        per_object = tf.map_fn(
            self._record_object, (records, rows), fn_output_signature=self._output_signature()
        )
        return self._classify(per_object)


def _float32_policies(config):
    """A copy of a serialized Keras object with every dtype policy set to float32."""
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy":
        return {**config, "config": {**config.get("config", {}), "name": "float32"}}
    return {k: _float32_policies(v) for k, v in config.items()}


def compute_precision(model):
    """The model's compute dtype policy: "float32", or the mixed policy its layers were built
    with."""
    mixed = sorted({layer.dtype_policy.name for layer in model._flatten_layers()} - {"float32"})
    return mixed[0] if mixed else "float32"


def float32_copy(model):
    """The model computing in float32 with the same weights (mixed-precision training keeps its
    weights in float32): served models then run at full precision on any CPU, bfloat16 hardware
    or not, and give the same answer whatever the batch."""
    if compute_precision(model) == "float32":
        return model
    config = _float32_policies(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def is_sequence_model(model):
    """True for TAO-Net models (sequence inputs images/dt/length), False for triplet DenseNets."""
    return isinstance(model.input, dict) and {"images", "dt", "length"} <= set(model.input)


def export_model(
    model,
    export_dir,
    task,
    sequence_length,
    stride=1,
    training_config=None,
    objects_per_call=8,
    normalization="object",
    input_roi_size=None,
):
    """Write the SavedModel to export_dir (e.g. EXPORT/<model name>/<version>); returns its
    metadata.

    sequence_length: the fixed S the model was evaluated at (joint stage), or None (all dates).
    objects_per_call: objects the model sees at once (memory bound: a 64-object paper-preset
    request in one call was killed at 24 GiB; in chunks of 8 it peaked at 4 GiB).
    normalization: the pixel noise scale the model was trained with ("object" or "image",
    pipeline.normalization.SCALES); the served graph normalizes the same way.
    input_roi_size: side of the cutouts a request carries (the records' RoI), when the model
    takes a smaller central crop of them; default: the model's own RoI.
    """
    if not is_sequence_model(model):
        raise ValueError(
            "only TAO-Net (sequence) models can be served: the DenseNet on triplets needs the "
            "date of maximum brightness, a catalog value that alerts do not carry"
        )
    class_names = classes.task_class_names(task)
    model_roi = int(model.input["images"].shape[2])
    roi = input_roi_size or model_roi
    if roi < model_roi:
        raise ValueError(
            f"requests of {roi}x{roi} cutouts cannot feed a model of {model_roi}x{model_roi}"
        )
    num_classes = int(model.output["probabilities"].shape[-1])
    if num_classes != len(class_names):
        raise ValueError(
            f"model has {num_classes} outputs but task {task!r} has {len(class_names)} classes"
        )
    trained_precision = compute_precision(model)
    model = float32_copy(model)
    metadata = {
        "task": task,
        "class_names": list(class_names),
        "schema_version": schema.SCHEMA_VERSION,
        "serving_precision": "float32",
        "trained_precision": trained_precision,
        "roi_size": roi,
        "model_roi_size": model_roi,
        "sequence_length": sequence_length,
        "stride": stride,
        "normalization": normalization,
        "same_date_days": schema.SAME_DATE_DAYS,
        "min_dates": MIN_DATES,
        "objects_per_call": objects_per_call,
        "training_config": training_config or {},
    }
    text = json.dumps(metadata, indent=2, sort_keys=True)
    server = _Server(
        model, class_names, roi, sequence_length, stride, objects_per_call, normalization, model_roi
    )

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
    describe = tf.function(lambda: {"json": tf.constant(text)}, input_signature=[])
    describe()
    archive.add_endpoint("metadata", describe)
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
    return metadata


SERVED_STAGES = ("joint", "gru")  # TAO-Net stages, preferred first
STAGE_SEQUENCE_LENGTH = {"joint": "fixed", "gru": None}


def next_version(model_root):
    """1 + the highest integer version directory under model_root (TF Serving numbering)."""
    versions = (
        [int(d) for d in os.listdir(model_root) if d.isdigit()] if os.path.isdir(model_root) else []
    )
    return max(versions, default=0) + 1


def export_run(run_dir, export_root, name=None, version=None, stage=None):
    """Export a trainer's run directory -> the version directory written (export_root/name/version).

    stage: which stage's model.keras (default: joint, else gru); name: default taonet_<task>.
    """
    config_path = os.path.join(run_dir, "config.json")
    try:
        with open(config_path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{config_path}: not found; --run must be a directory written by a trainer"
        )
    available = [
        s for s in SERVED_STAGES if os.path.exists(os.path.join(run_dir, s, "model.keras"))
    ]
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
    model = keras.saving.load_model(os.path.join(run_dir, stage, "model.keras"), compile=False)
    sequence_length = config["sequence_length"] if STAGE_SEQUENCE_LENGTH[stage] == "fixed" else None
    model_root = os.path.join(export_root, name or f"taonet_{config['task']}")
    target = os.path.join(model_root, str(version or next_version(model_root)))
    if os.path.exists(target):
        raise FileExistsError(f"{target} exists; choose another --version")
    # Runs written before the per-object scale existed have no "normalization": they used per-image
    # scales.
    export_model(
        model,
        target,
        config["task"],
        sequence_length,
        training_config={**config, "stage": stage},
        normalization=config.get("normalization", "image"),
        input_roi_size=config.get("records_roi_size"),
    )
    return target
