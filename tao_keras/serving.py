"""The serving module of a TAO-Net: its graph functions (signatures) and the checks that
guard them, apart from the code that writes the SavedModel (tao_keras.export).

Signatures (every output has the batch as its first axis, as TF Serving's row format needs):
  serving_default(images float32 [B, E, H, W] raw pixels (NaN = bad), mjd float64 [B, E],
                  num_exposures int32 [B]: exposures beyond it are padding and ignored)
  serialized(records string [B]: records as written by tools.fits_to_tfrecords)
    -> probabilities float32 [B, C] (calibrated by the exported temperature), class_id int32
       [B], class_name string [B],
       class_names string [B, C], num_dates int32 [B] (observation dates used)

Inside the graph, with the functions the pipeline uses (tao_keras.pipeline): exposures sorted by
time, exposures without a single finite pixel dropped (as the converter drops such files),
dates grouped by the converter's rule, the first exposure of each date (the evaluation choice),
normalization, the most recent S dates (when set; else all), the per-date forced photometry
(for a model that takes it), sliding triplets, the model.
Malformed requests fail with InvalidArgument and a message naming the batch row.
"""

import tensorflow as tf

from tao_keras import calibration, request_cleanup
from tao_keras.models import taonet
from tao_keras.pipeline import dates, model_inputs
from tfrecords import parser


def _padded(features_per_object):
    """Ragged per-object features -> padded model inputs {"images", "dt", "length"} (and
    "photometry" when the model takes it)."""
    images = features_per_object["images"]
    padded = {
        name: features_per_object[name].to_tensor()
        for name in ("images", "dt", "photometry")
        if name in features_per_object
    }
    return {**padded, "length": tf.cast(images.row_lengths(), tf.int32)}


class ServingModule:
    """The graph functions of a served TAO-Net, closing over the model and its settings.

    model: a float32 TAO-Net; contract: its ModelContract (tao_keras.contract: the side of the
    cutouts a request carries and the model's crop of them, one image per date by its
    per-date rule ("choose": the first exposure; "coadd": their mean), the normalization, the
    dates seen (the most recent S, or all: never dates around a centre, which a live object
    has not seen yet), the triplets' stride, the task's class names); objects_per_call:
    objects the model sees at once (bounds memory whatever the batch); temperature: the
    calibration applied to the model's probabilities (tao_keras.calibration: softmax(log p / T)).
    """

    def __init__(self, model, contract, objects_per_call, temperature=1.0):
        self.model = model
        self.contract = contract
        self.temperature = float(temperature)
        self.objects_per_call = objects_per_call
        self.class_names = tf.constant(contract.class_names)
        self.roi_size = contract.roi_size

    def _output_signature(self):
        roi = self.contract.model_roi_size
        signature = {
            "images": tf.RaggedTensorSpec([None, roi, roi, 3], tf.float32, ragged_rank=0),
            "dt": tf.RaggedTensorSpec([None, 2], tf.float32, ragged_rank=0),
            "num_dates": tf.TensorSpec([], tf.int32),
        }
        if self.contract.architecture.photometry:
            width = taonet.PHOTOMETRY_WIDTH
            signature["photometry"] = tf.RaggedTensorSpec([None, width], tf.float32, ragged_rank=0)
        return signature

    def _object_features(self, images, mjd, date_index, row):
        """One object's exposures sorted by time -> its model input and number of dates."""
        num_dates = tf.cast(tf.reduce_max(tf.concat([[-1], date_index], 0)) + 1, tf.int32)
        check = request_cleanup.check(
            num_dates >= self.contract.min_dates,
            "batch row {}: {} observation date(s) with usable pixels; at least "
            f"{self.contract.min_dates} are needed",
            [row, num_dates],
        )
        with tf.control_dependencies([check]):
            images, mjd = dates.per_date_images(
                images, mjd, date_index, num_dates, self.contract.per_date
            )
        out = model_inputs.evaluation_features(images, mjd, self.contract)
        del out["length"]
        return {**out, "num_dates": num_dates}

    def _raw_object(self, item):
        images, mjd, count, row = item
        images, mjd = request_cleanup.usable_in_time_order(images[:count], mjd[:count], row)
        return self._object_features(images, mjd, request_cleanup.group_dates(mjd), row)

    def _record_object(self, item):
        """One serialized record, checked as strictly as a raw request: finite and sorted times,
        a date_index that describes its exposures (from 0, steps of 0 or 1, num_dates dates);
        exposures without a finite pixel are dropped (and dates renumbered) like raw ones."""
        serialized, row = item
        # A tf.train.Example starts with its features field (tag byte 0x0A): anything else is
        # refused here, before the parser, whose error would quote the whole input.
        looks_like_record = request_cleanup.check(
            tf.equal(tf.strings.substr(serialized, 0, 1), "\n"),
            "batch row {}: not a serialized record (a tf.train.Example written by "
            "tools.fits_to_tfrecords)",
            [row],
        )
        with tf.control_dependencies([looks_like_record]):
            serialized = tf.identity(serialized)
        record = parser.parse(serialized, self.roi_size)
        images, mjd, date_index = record["images"], record["mjd"], record["date_index"]
        n = tf.shape(mjd)[0]
        steps = date_index[1:] - date_index[:-1]
        last = tf.reduce_max(tf.concat([[-1], date_index], 0))
        checks = [
            request_cleanup.check(
                tf.equal(tf.shape(images)[0], n) & tf.equal(tf.shape(date_index)[0], n),
                "batch row {}: record has {} images, {} times and {} date indices",
                [row, tf.shape(images)[0], n, tf.shape(date_index)[0]],
            ),
            request_cleanup.check(
                tf.reduce_all(tf.math.is_finite(mjd)),
                "batch row {}: record mjd has NaN or infinite values",
                [row],
            ),
            request_cleanup.plausible_times(mjd, row),
            request_cleanup.check(
                tf.reduce_all(mjd[1:] >= mjd[:-1]), "batch row {}: record mjd is not sorted", [row]
            ),
            request_cleanup.check(
                tf.reduce_all((steps == 0) | (steps == 1))
                & tf.reduce_all(date_index[:1] == 0)
                & tf.equal(last + 1, record["num_dates"]),
                "batch row {}: date_index does not describe num_dates={} over its exposures",
                [row, record["num_dates"]],
            ),
        ]
        with tf.control_dependencies(checks):
            images, mjd, date_index = tf.identity(images), tf.identity(mjd), tf.identity(date_index)
        usable = tf.reduce_any(tf.math.is_finite(images), axis=[1, 2])
        images, mjd = tf.boolean_mask(images, usable), tf.boolean_mask(mjd, usable)
        _, date_index = tf.unique(tf.boolean_mask(date_index, usable))  # dense again, in order
        return self._object_features(images, mjd, tf.cast(date_index, tf.int64), row)

    def _chunked(self, per_object, inputs, batch):
        """Classify `batch` objects, objects_per_call at a time with their features, so that
        memory stays bounded whatever the batch. per_object(inputs of one chunk, their batch
        rows) -> the chunk's ragged features; inputs: tensors with the batch first. The last
        chunk is filled up with copies of the batch's last object (results dropped). An empty
        batch gives empty outputs. -> (probabilities [batch, C], num_dates [batch])."""
        size = self.objects_per_call
        chunks = (batch + size - 1) // size
        num_classes = self.class_names.shape[0]

        def one_chunk(k):
            rows = tf.minimum(k * size + tf.range(size), batch - 1)
            features = per_object([tf.gather(x, rows) for x in inputs], rows)
            out = self.model(_padded(features), training=False)["probabilities"]
            out = calibration.scale_log_probabilities(tf.cast(out, tf.float32), self.temperature)
            return out, features["num_dates"]

        probabilities, num_dates = tf.map_fn(
            one_chunk,
            tf.range(chunks),
            parallel_iterations=1,
            fn_output_signature=(
                tf.TensorSpec([size, num_classes], tf.float32),
                tf.TensorSpec([size], tf.int32),
            ),
        )
        probabilities = tf.reshape(probabilities, [-1, num_classes])[:batch]
        return probabilities, tf.reshape(num_dates, [-1])[:batch]

    def _classify(self, probabilities, num_dates):
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        batch = tf.shape(probabilities)[0]
        return {
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.gather(self.class_names, class_id),
            "class_names": tf.tile(self.class_names[None], [batch, 1]),
            "num_dates": num_dates,
        }

    def serve_raw(self, images, mjd, num_exposures):
        shape = tf.shape(images)
        checks = [
            request_cleanup.check(
                tf.reduce_all(tf.equal(shape[2:], self.roi_size)),
                f"images has shape {{}}; it must be "
                f"[batch, exposures, {self.roi_size}, {self.roi_size}]",
                [shape],
            ),
            request_cleanup.check(
                tf.reduce_all(tf.equal(tf.shape(mjd), shape[:2])),
                "mjd has shape {} but images {}: both must be [batch, exposures]",
                [tf.shape(mjd), shape],
            ),
            request_cleanup.check(
                tf.equal(tf.shape(num_exposures)[0], shape[0]),
                "num_exposures has {} rows but images {}",
                [tf.shape(num_exposures)[0], shape[0]],
            ),
            request_cleanup.check(
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

        def per_object(part, rows):
            return tf.map_fn(
                self._raw_object, (*part, rows), fn_output_signature=self._output_signature()
            )

        return self._classify(*self._chunked(per_object, [images, mjd, num_exposures], shape[0]))

    def serve_records(self, records):
        def per_object(part, rows):
            return tf.map_fn(
                self._record_object, (*part, rows), fn_output_signature=self._output_signature()
            )

        return self._classify(*self._chunked(per_object, [records], tf.shape(records)[0]))
