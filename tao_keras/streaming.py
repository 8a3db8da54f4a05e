"""Night-by-night classification for alert brokers: the `update` graph function of an exported
TAO-Net, which runs the backbone on the one new triplet and one step of each GRU, so that the
cost of a night does not grow with the object's history.

A broker keeps three tensors per object and passes them back on the next night:

  state            float32 [B, state_size(model)]: zeros for a new object (layout below)
  previous_images  float32 [B, 2, H, W]: the raw one-image-per-date of the last two nights
                   (the per-date rule applied, not normalized), the older first
  previous_mjd     float64 [B, 2]: their times

and sends the new night's exposures (images float32 [B, E, H, W], NaN = bad; mjd float64
[B, E]; num_exposures int32 [B], exposures beyond it are padding). The outputs are the next
state, previous_images and previous_mjd, the probabilities [B, C], class_id [B] and class_name
[B] after this night, and num_dates [B] (observation dates seen). Before an object's third
date there is no triplet: probabilities are zeros, class_id -1, class_name "".

After the last night the answer equals the full-sequence signature's on all the exposures
(tests/test_streaming.py, 1e-5), provided each call holds one observation date (the
converter's rule: exposures closer than schema.SAME_DATE_DAYS) and nights come in time
order; an update whose exposures are all unusable (no finite pixel) changes nothing.

State layout (float32, per object): the L GRU states (L x H), the running sum of the last
GRU's outputs (H; the masked sum or mean over time), for a model with whole-sequence
photometry statistics (TAONetConfig.photometry_statistics) the running moments of each step's
middle-date photometry (MOMENTS: mean, the sums of squared and cubed deviations by Welford's
and Terriberry's one-pass updates, the chi2 weights' sum, weighted mean and weighted sum of
squared deviations, max and min, the latest value and the sum of squared successive steps;
the statistics then equal the whole-sequence layer's), then
steps (triplets seen), dates (dates seen), scale (the object's noise scale, fixed on its third
date: pipeline.normalization), span (days from the last date's time to its last exposure: the
night-grouping rule needs it) and tag (the model's identity: a state is only accepted by the
model that made it).

The graph trusts no state: non-finite values, counts that are not whole numbers in range,
a non-positive noise scale after the third date, photometry moments no update returns (a
negative sum of squares, of successive steps or of weights, a maximum below the minimum),
another model's tag,
and a night whose first exposure lies within schema.SAME_DATE_DAYS of the previous night's
last exposure (one night split over several calls: the converter and serving_default would
count it as the same date) are INVALID_ARGUMENT naming the batch row.
"""

import keras
import tensorflow as tf

from tao_keras import calibration, request_cleanup
from tao_keras.models import layers as tao_layers
from tao_keras.models import taonet
from tao_keras.pipeline import dates, forced_photometry, model_inputs, normalization, windows
from tfrecords import schema

# Bookkeeping entries after the GRU states and the running sum (see the module docstring).
BOOKKEEPING = ("steps", "dates", "scale", "span", "tag")
# Running moments of the middle-date photometry, before BOOKKEEPING, for a model with
# photometry statistics (the module docstring; `steps` is their count).
MOMENTS = (
    "mean",
    "m2",
    "m3",
    "weight",
    "weighted_mean",
    "weighted_m2",
    "max",
    "min",
    "last",  # the latest value, and the sum of squared steps between successive values (the
    "successive",  # von Neumann ratio's numerator, TAONetConfig.photometry_eta)
)
# More dates than this in one object's state cannot be a real history (and would overflow).
MAX_DATES = 1_000_000


def model_tag(model):
    """The model's identity in its states: a digest of its weights as a whole number in
    [1, 2**24) (exact in float32)."""
    return float(int(taonet.weights_digest(model)[:12], 16) % (2**24 - 1) + 1)


def _first_bad(ok):
    """Index of the first False of a [B] bool (B when all hold; defined for B = 0 too): the
    row named in messages."""
    return tf.argmax(tf.cast(~tf.concat([ok, [False]], 0), tf.int32), output_type=tf.int32)


def _recurrent_layers(model):
    """The GRU layers of a TAO-Net in order (ValueError for bidirectional ones)."""
    grus = taonet.recurrent_layers(model)
    if any(isinstance(layer, keras.layers.Bidirectional) for layer in grus):
        raise ValueError("a bidirectional GRU needs the whole sequence: no night-by-night update")
    if not grus:
        raise ValueError(f"model {model.name!r} has no GRU layers")
    return grus


def state_size(model):
    """Length of the per-object state vector of `model` (a TAO-Net)."""
    grus = _recurrent_layers(model)
    moments = len(MOMENTS) if taonet.uses_photometry_statistics(model) else 0
    return sum(g.cell.units for g in grus) + grus[-1].cell.units + moments + len(BOOKKEEPING)


def update_moments(moments, value, weight, count, step):
    """One value per row added to the running MOMENTS where `step` holds: moments {name:
    [B]}, value and weight [B] (tao_layers.photometry_point), count [B] the values seen
    before -> the new moments (rows without a step unchanged)."""
    n = count + 1.0
    delta = value - moments["mean"]
    total_weight = moments["weight"] + weight
    weighted_delta = value - moments["weighted_mean"]
    weighted_mean = moments["weighted_mean"] + tf.math.divide_no_nan(weight, total_weight) * (
        weighted_delta
    )
    first = count < 1
    new = {
        "mean": moments["mean"] + delta / n,
        "m2": moments["m2"] + delta * delta * count / n,
        "m3": moments["m3"]
        + delta**3 * count * (count - 1.0) / (n * n)
        - 3.0 * delta * moments["m2"] / n,
        "weight": total_weight,
        "weighted_mean": weighted_mean,
        "weighted_m2": moments["weighted_m2"] + weight * weighted_delta * (value - weighted_mean),
        "max": tf.where(first, value, tf.maximum(moments["max"], value)),
        "min": tf.where(first, value, tf.minimum(moments["min"], value)),
        "last": value,
        "successive": moments["successive"]
        + tf.where(first, 0.0, tf.square(value - moments["last"])),
    }
    return {name: tf.where(step, new[name], moments[name]) for name in MOMENTS}


def statistics(moments, count, eta=False):
    """The PhotometryStatistics [B, 7] of the running moments of `count` [B] values ([B, 8]
    with eta, TAONetConfig.photometry_eta)."""
    chi2 = moments["weighted_m2"] + moments["weight"] * tf.square(
        moments["weighted_mean"] - moments["mean"]
    )
    return tao_layers.statistics_from_moments(
        count,
        moments["mean"],
        moments["m2"],
        moments["m3"],
        chi2,
        moments["max"],
        moments["min"],
        moments["successive"] if eta else None,
    )


def _night_order_checks(usable, seen, night_mjd, first, previous_mjd, span):
    """Assertions that each row's new night follows the nights its state has seen: later than
    the last one, and at least schema.SAME_DATE_DAYS after its last exposure (the converter's
    date rule), for rows with a usable night and a history."""
    follows = ~usable | (seen < 1) | (night_mjd > previous_mjd[:, 1])
    in_order = tf.debugging.Assert(
        tf.reduce_all(follows),
        [
            tf.strings.format(
                "batch row {}: nights must come in time order: a night earlier than the "
                "last one seen",
                [_first_bad(follows)],
            )
        ],
    )
    previous_last = previous_mjd[:, 1] + tf.cast(span, tf.float64)
    new_date = ~usable | (seen < 1) | (first - previous_last >= schema.SAME_DATE_DAYS)
    one_night = tf.debugging.Assert(
        tf.reduce_all(new_date),
        [
            tf.strings.format(
                "batch row {}: an exposure within {} days of the previous night's last "
                "exposure belongs to that night (the converter's date rule): send each "
                "night's exposures in one update call",
                [_first_bad(new_date), schema.SAME_DATE_DAYS],
            )
        ],
    )
    return [in_order, one_night]


class NightUpdate:
    """The `update` graph function of a float32 TAO-Net (see the module docstring).

    model: the TAO-Net (unidirectional GRUs); contract: its ModelContract (tao_keras.contract:
    the cutouts' and the model's RoI, per-date rule, normalization, stride 1, and the temporal
    head this update reproduces: aggregation over time, date gaps); temperature: the
    calibration (tao_keras.calibration) applied to the probabilities, as serving_default
    applies it.
    """

    def __init__(self, model, contract, temperature=1.0):
        if contract.stride != 1:
            raise ValueError(f"stride {contract.stride}: the night-by-night update needs 1")
        self.grus = _recurrent_layers(model)
        self.contract = contract
        self.aggregation = contract.architecture.aggregation
        self.use_dt = contract.architecture.use_dt
        self.model = model
        # the classifier: the layer behind the model's "probabilities" output, or with the
        # statistics expert the GRU's classifier and the expert, whose mean it is
        self.head = taonet.final_classifier(model)
        self.expert_layers = taonet.expert_layers(model)  # [(hidden, softmax)] per member, or []
        # whole-sequence photometry statistics: their Dense layer (taonet._temporal_head)
        self.statistics = contract.architecture.photometry_statistics
        self.eta = contract.architecture.photometry_eta
        self.statistics_dense = model.get_layer("statistics_dense") if self.statistics else None
        self.class_names = tf.constant(contract.class_names)
        self.roi_size = contract.roi_size
        self.state_size = state_size(model)
        self.temperature = float(temperature)
        self.tag = model_tag(model)

    def _night(self, item):
        """One object's new exposures -> (raw image of the date [H, W], its time, usable):
        exposures without a finite pixel dropped, sorted by time, the per-date rule applied."""
        images, mjd, count, row = item
        images, mjd = request_cleanup.usable_in_time_order(images[:count], mjd[:count], row)
        one_date = tf.debugging.Assert(
            tf.reduce_all(mjd[1:] - mjd[:-1] < schema.SAME_DATE_DAYS),
            [
                tf.strings.format(
                    "batch row {}: the exposures span more than one observation date "
                    "(a gap of {} days or more); send one date per update",
                    [row, schema.SAME_DATE_DAYS],
                )
            ],
        )
        any_usable = tf.size(mjd) > 0
        with tf.control_dependencies([one_date]):
            # a night without a usable exposure gets a blank stand-in, dropped by the caller
            images, mjd = tf.cond(
                any_usable,
                lambda: (images, mjd),
                lambda: (tf.zeros([1, self.roi_size, self.roi_size]), tf.zeros([1], tf.float64)),
            )
        image, time = dates.per_date_images(
            images, mjd, tf.zeros_like(mjd, tf.int64), 1, self.contract.per_date
        )
        return image[0], time[0], any_usable, mjd[0], mjd[-1]

    def _split_state(self, state):
        """state [B, state_size] -> (GRU states [L x [B, H]], running sum [B, H], {name: [B]}
        for MOMENTS (empty for a model without photometry statistics), {name: [B]} for
        BOOKKEEPING)."""
        sizes = [g.cell.units for g in self.grus] + [self.grus[-1].cell.units]
        names = (MOMENTS if self.statistics else ()) + BOOKKEEPING
        *hidden, total, rest = tf.split(state, sizes + [len(names)], axis=1)
        values = dict(zip(names, tf.unstack(rest, axis=1)))
        moments = {name: values.pop(name) for name in names if name in MOMENTS}
        return hidden, total, moments, values

    def _check_state(self, state, previous_mjd):
        """Assertions that each row's state and previous times are ones this model returned."""
        _, _, moments, book = self._split_state(state)
        dates_seen, steps = book["dates"], book["steps"]

        def whole(x, high):
            return (x >= 0) & (x <= high) & tf.equal(x, tf.round(x))

        checks = []
        if moments:  # sums of non-negative terms, and extremes in order once a value is in
            ok = (
                (moments["m2"] >= 0)
                & (moments["weight"] >= 0)
                & (moments["successive"] >= 0)
                & ((steps < 1) | (moments["max"] >= moments["min"]))
            )
            message = (
                "batch row {}: the photometry moments in the state are not ones an update returns"
            )
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all(ok), [tf.strings.format(message, [_first_bad(ok)])]
                )
            )
        for ok, message in (
            (
                tf.reduce_all(tf.math.is_finite(state), axis=1)
                & tf.reduce_all(tf.math.is_finite(previous_mjd), axis=1),
                "batch row {}: state or previous_mjd has NaN or infinite values",
            ),
            (
                whole(dates_seen, MAX_DATES)
                & whole(steps, tf.maximum(dates_seen - (windows.MIN_DATES - 1), 0.0)),
                "batch row {}: the counts of dates and steps in the state are not ones an "
                "update returns (whole numbers, at most " + str(MAX_DATES) + " dates)",
            ),
            (
                tf.equal(dates_seen, 0.0) | tf.equal(book["tag"], self.tag),
                "batch row {}: the state was made by another model (its tag differs from this "
                "model's); start the object again from a zero state",
            ),
            (
                (dates_seen < windows.MIN_DATES)
                | (book["scale"] > 0)
                | tf.constant(self.contract.normalization == "image"),
                "batch row {}: the noise scale in the state must be positive after the third date",
            ),
        ):
            checks.append(
                tf.debugging.Assert(
                    tf.reduce_all(ok), [tf.strings.format(message, [_first_bad(ok)])]
                )
            )
        return checks

    def _normalized(self, triplets, scale, starting):
        """Raw [B, 3, H, W] -> (the model's triplets [B, h, w, 3], each object normalized with
        its scale (its reference_scale computed here on its third date), that scale [B], and
        the triplet's photometry [B, taonet.PHOTOMETRY_WIDTH], zeros for a model without
        that input)."""

        def one(item):
            images, object_scale, third = item
            if self.contract.normalization == "image":
                reference = None
            else:
                reference = tf.where(third, normalization.reference_scale(images), object_scale)
            out = normalization.normalize_images(images, reference)
            used = object_scale if reference is None else reference
            photometry = tf.zeros([taonet.PHOTOMETRY_WIDTH])
            if self.contract.architecture.photometry:
                per_date = normalization.image_scales(images) if reference is None else reference
                photometry = tf.reshape(forced_photometry.features(images, per_date), [-1])
            return model_inputs.center_crop(out, self.contract.model_roi_size), used, photometry

        roi = self.contract.model_roi_size
        images, scale, photometry = tf.map_fn(
            one,
            (triplets, scale, starting),
            fn_output_signature=(
                tf.TensorSpec([3, roi, roi], tf.float32),
                tf.TensorSpec([], tf.float32),
                tf.TensorSpec([taonet.PHOTOMETRY_WIDTH], tf.float32),
            ),
        )
        return tf.transpose(images, [0, 2, 3, 1]), scale, photometry

    def update(self, state, previous_images, previous_mjd, images, mjd, num_exposures):
        """One night of B objects: state [B, state_size], previous_images [B, 2, H, W],
        previous_mjd [B, 2], images [B, E, H, W], mjd [B, E], num_exposures [B] -> the dict
        of outputs described in the module docstring (the next three inputs included)."""
        batch = tf.shape(images)[0]
        inputs = (state, previous_images, previous_mjd, images, mjd, num_exposures)
        shapes = self._shape_checks(*inputs)
        with tf.control_dependencies(shapes):  # nothing reads the inputs before they are checked
            state, previous_images, previous_mjd = (
                tf.identity(state),
                tf.identity(previous_images),
                tf.identity(previous_mjd),
            )
            images, mjd, num_exposures = (
                tf.identity(images),
                tf.identity(mjd),
                tf.identity(num_exposures),
            )
        with tf.control_dependencies(self._check_state(state, previous_mjd)):
            state = tf.identity(state)
        # An empty batch runs as one blank row (a new object with no exposure: no check reads
        # its times), then sliced away: the backbone's layers refuse a batch of zero.
        blank = tf.maximum(1 - batch, 0)

        def padded(x):
            return tf.concat([x, tf.zeros(tf.concat([[blank], tf.shape(x)[1:]], 0), x.dtype)], 0)

        state, previous_images, previous_mjd, images, mjd, num_exposures = (
            padded(x) for x in (state, previous_images, previous_mjd, images, mjd, num_exposures)
        )
        out = self._advance(state, previous_images, previous_mjd, images, mjd, num_exposures)
        return {name: value[:batch] for name, value in out.items()}

    def _shape_checks(self, state, previous_images, previous_mjd, images, mjd, num_exposures):
        """Assertions on the shapes of update's inputs (and num_exposures' range), each with a
        message saying what was expected."""
        batch, shape, roi = tf.shape(images)[0], tf.shape(images), self.roi_size
        return [
            tf.debugging.Assert(
                tf.reduce_all(tf.equal(shape[2:], roi)),
                [f"images must be [batch, exposures, {roi}, {roi}]; got", shape],
            ),
            tf.debugging.Assert(
                tf.reduce_all(tf.equal(tf.shape(state), [batch, self.state_size])),
                [
                    f"state must be [batch, {self.state_size}] (zeros for a new object); got",
                    tf.shape(state),
                ],
            ),
            tf.debugging.Assert(
                tf.reduce_all(tf.equal(tf.shape(previous_images), [batch, 2, roi, roi])),
                [
                    f"previous_images must be [batch, 2, {roi}, {roi}]; got",
                    tf.shape(previous_images),
                ],
            ),
            tf.debugging.Assert(
                tf.reduce_all(tf.equal(tf.shape(previous_mjd), [batch, 2]))
                & tf.reduce_all(tf.equal(tf.shape(mjd), shape[:2]))
                & tf.equal(tf.shape(num_exposures)[0], batch),
                [
                    "previous_mjd [batch, 2], mjd [batch, exposures] and num_exposures [batch] "
                    "must match images"
                ],
            ),
            tf.debugging.Assert(
                tf.reduce_all((num_exposures >= 0) & (num_exposures <= shape[1])),
                ["num_exposures must lie in [0, exposures]", num_exposures],
            ),
        ]

    def _advance(self, state, previous_images, previous_mjd, images, mjd, num_exposures):
        """update's work on checked inputs of at least one row."""
        batch, roi = tf.shape(images)[0], self.roi_size
        night, night_mjd, usable, first, last = tf.map_fn(
            self._night,
            (images, mjd, num_exposures, tf.range(batch)),
            fn_output_signature=(
                tf.TensorSpec([roi, roi], tf.float32),
                tf.TensorSpec([], tf.float64),
                tf.TensorSpec([], tf.bool),
                tf.TensorSpec([], tf.float64),
                tf.TensorSpec([], tf.float64),
            ),
        )
        hidden, total, moments, book = self._split_state(state)
        steps, seen, scale = book["steps"], book["dates"], book["scale"]
        checks = _night_order_checks(usable, seen, night_mjd, first, previous_mjd, book["span"])
        with tf.control_dependencies(checks):
            seen_now = seen + tf.cast(usable, tf.float32)
        step = usable & (seen_now >= windows.MIN_DATES)
        triplets = tf.concat([previous_images, night[:, None]], axis=1)
        times = tf.concat([previous_mjd, night_mjd[:, None]], axis=1)
        starting = usable & tf.equal(seen_now, float(windows.MIN_DATES))
        triplets, new_scale, photometry = self._normalized(triplets, scale, starting)
        gaps = tf.cast((times[:, 1:] - times[:, :-1]) / windows.DAYS_PER_YEAR, tf.float32)
        new_hidden, total, pooled, steps, moments = self.step(
            triplets, gaps, hidden, total, steps, step, photometry, moments
        )
        calibrated = calibration.scale_log_probabilities(
            self.classify(pooled, moments, steps), self.temperature
        )
        probabilities = tf.where((steps > 0)[:, None], calibrated, 0.0)
        class_id = tf.where(steps > 0, tf.argmax(probabilities, axis=-1, output_type=tf.int32), -1)
        scale = tf.where(starting, new_scale, scale)
        span = tf.where(usable, tf.cast(last - night_mjd, tf.float32), book["span"])
        tag = tf.fill(tf.shape(steps), self.tag)
        state = tf.concat(
            [
                *new_hidden,
                total,
                *([tf.stack([moments[name] for name in MOMENTS], axis=1)] if moments else []),
                tf.stack([steps, seen_now, scale, span, tag], axis=1),
            ],
            axis=1,
        )
        shift = usable[:, None, None, None]
        return {
            "state": state,
            "previous_images": tf.where(
                shift, tf.concat([previous_images[:, 1:], night[:, None]], 1), previous_images
            ),
            "previous_mjd": tf.where(
                usable[:, None],
                tf.concat([previous_mjd[:, 1:], night_mjd[:, None]], 1),
                previous_mjd,
            ),
            "probabilities": probabilities,
            "class_id": class_id,
            "class_name": tf.where(
                class_id >= 0, tf.gather(self.class_names, tf.maximum(class_id, 0)), ""
            ),
            "num_dates": tf.cast(seen_now, tf.int32),
        }

    def classify(self, pooled, moments, steps):
        """The model's "probabilities" [B, C] (float32) from step's pooled output, and with the
        statistics expert the mean of the GRU's classifier and the expert's (the mean of its
        members'), which reads the statistics of the running moments of `steps` [B] dates
        (the von Neumann ratio included, as taonet._temporal_head builds it)."""
        probabilities = tf.cast(self.head(pooled), tf.float32)
        if not self.expert_layers:
            return probabilities
        features = statistics(moments, steps, eta=True)
        members = [
            tf.cast(softmax(hidden(features)), tf.float32) for hidden, softmax in self.expert_layers
        ]
        return (probabilities + tf.add_n(members) / len(members)) / 2.0

    def step(self, triplets, gaps, hidden, total, steps, step, photometry=None, moments=None):
        """One time step where `step` [B] holds (the part of `update` that tao_keras.onnx_export
        converts to ONNX): the backbone on the new triplets [B, h, w, 3] (normalized),
        each GRU cell once, the aggregation updated -> (hidden states, running total, the
        classifier's input [B, H (+ STATISTICS_UNITS)], steps, moments); rows without a step
        keep their state. photometry: the triplet's [B, taonet.PHOTOMETRY_WIDTH], read when the
        model takes it; moments: {name: [B]} of MOMENTS, updated with its middle date for a
        model with photometry statistics (returned as given otherwise)."""
        if self.statistics:
            value, weight = tao_layers.photometry_point(
                photometry[:, taonet.MIDDLE_SIGNAL], photometry[:, taonet.MIDDLE_SIGNAL + 1]
            )
            moments = update_moments(moments, value, weight, steps, step)
        x = taonet.triplet_features(self.model, triplets)
        if self.use_dt:
            x = tf.concat([x, gaps], axis=-1)
        if self.contract.architecture.photometry:
            x = tf.concat([x, photometry], axis=-1)
        new_hidden = []
        keep = step[:, None]
        for gru, h in zip(self.grus, hidden):
            out, _ = gru.cell(x, [h], training=False)
            new_hidden.append(tf.where(keep, out, h))
            x = out
        steps = steps + tf.cast(step, tf.float32)
        if self.aggregation == "last":
            pooled = new_hidden[-1]
        else:
            total = total + tf.where(keep, x, 0.0)
            pooled = (
                total / tf.maximum(steps, 1.0)[:, None] if self.aggregation == "mean" else total
            )
        if self.statistics:
            dense = self.statistics_dense(statistics(moments, steps, self.eta))
            pooled = tf.concat([pooled, tf.cast(dense, pooled.dtype)], axis=-1)
        return new_hidden, total, pooled, steps, moments
