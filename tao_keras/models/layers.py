"""Small Keras layers TAO-Net needs, in keras.ops only (backend-agnostic, serializable)."""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="tao_keras")
class LengthMask(layers.Layer):
    """lengths [B] (int) + a [B, T, ...] tensor -> boolean mask [B, T], True on valid steps."""

    def call(self, lengths, reference):
        steps = ops.arange(ops.shape(reference)[1], dtype="int32")
        return ops.less(steps[None, :], ops.cast(lengths, "int32")[:, None])

    def compute_output_spec(self, lengths, reference):
        return keras.KerasTensor(reference.shape[:2], dtype="bool")


@keras.saving.register_keras_serializable(package="tao_keras")
class SampleMaskedBatchNormalization(layers.BatchNormalization):
    """BatchNormalization whose training statistics can leave out whole samples.

    call(inputs [B, ..., C], valid [B] bool or None): in training, mean and variance over the
    valid samples only (Keras' own masked moments; None: all samples, the plain layer, whose
    `synchronized` option then holds). Inference uses the moving statistics either way.
    """

    def call(self, inputs, valid=None, training=None):
        mask = None
        if valid is not None:
            per_sample = ops.reshape(valid, (-1,) + (1,) * (len(inputs.shape) - 2))
            mask = ops.broadcast_to(per_sample, ops.shape(inputs)[:-1])
        return super().call(inputs, training=training, mask=mask)

    def compute_mask(self, inputs, mask=None):
        return None  # the sample mask is consumed here, not propagated to the convolutions


@keras.saving.register_keras_serializable(package="tao_keras")
class StepwiseBackbone(layers.Layer):
    """Applies a backbone to each valid step of [B, T, H, W, C] -> [B, T, F] (zeros on padded
    steps); the time axis may be unknown (keras.layers.TimeDistributed is wrong there in
    Keras 3.15). The backbone takes {"images", "valid"} (densenet.build_backbone's
    sample_mask), so padded images never reach BatchNorm statistics on either path:

    - TensorFlow (dynamic shapes): batch and time are merged, only the valid steps are
      gathered, run and scattered back: no work is spent on padding, and synchronized
      BatchNorm (several replicas) keeps working;
    - other backends (JAX's jit needs static shapes): every step is run, padded images
      zeroed, and the BatchNorm statistics masked to the valid steps.
    Both give the same outputs and statistics (tests/test_models.py checks the masked path
    against the gathered one under TensorFlow).
    """

    def __init__(self, backbone, gather=None, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        # None: gather the valid steps where shapes may be dynamic (the TensorFlow backend)
        self.gather = gather

    def build(self, images_shape, mask_shape=None):
        self.built = True

    def call(self, images, mask, training=None):
        shape = ops.shape(images)
        flat = ops.reshape(images, (-1,) + tuple(images.shape[2:]))
        valid = ops.reshape(mask, (-1,))
        gather = keras.backend.backend() == "tensorflow" if self.gather is None else self.gather
        if gather:
            index = ops.nonzero(valid)[0]
            features = self.backbone(
                {"images": ops.take(flat, index, axis=0), "valid": None}, training=training
            )
            width = features.shape[-1]
            features = ops.scatter(
                ops.expand_dims(index, 1), features, (shape[0] * shape[1], width)
            )
        else:
            keep = ops.reshape(valid, (-1,) + (1,) * (len(flat.shape) - 1))
            flat = ops.where(keep, flat, ops.zeros_like(flat))  # NaN padding: no NaN gradients
            features = self.backbone({"images": flat, "valid": valid}, training=training)
            width = features.shape[-1]
            features = ops.where(valid[:, None], features, ops.zeros_like(features))
        return ops.reshape(features, (shape[0], shape[1], width))

    def compute_output_spec(self, images, mask, training=None):
        width = self.backbone.output_shape[-1]
        return keras.KerasTensor(
            (images.shape[0], images.shape[1], width), dtype=self.compute_dtype
        )

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "gather": self.gather,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tao_keras")
class ZeroPadded(layers.Layer):
    """[B, T, ...] with padded steps set to zero (per-step outputs that padding must not touch)."""

    def call(self, sequence, mask):
        mask = ops.cast(mask, sequence.dtype)
        return sequence * ops.reshape(
            mask, tuple(ops.shape(mask)) + (1,) * (len(sequence.shape) - 2)
        )

    def compute_output_spec(self, sequence, mask):
        return keras.KerasTensor(sequence.shape, dtype=self.compute_dtype)


@keras.saving.register_keras_serializable(package="tao_keras")
class MaskedSum(layers.Layer):
    """Sum over time of [B, T, H] counting valid steps only ('add' aggregation) -> [B, H]."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # consumes the GRU's mask; the output has none

    def compute_mask(self, sequence, mask=None):
        return None

    def call(self, sequence, mask):
        return ops.sum(sequence * ops.cast(mask, sequence.dtype)[..., None], axis=1)

    def compute_output_spec(self, sequence, mask):
        return keras.KerasTensor((sequence.shape[0], sequence.shape[2]), dtype=sequence.dtype)


@keras.saving.register_keras_serializable(package="tao_keras")
class MaskedMean(MaskedSum):
    """Mean over the valid steps of [B, T, H] ('mean' aggregation) -> [B, H]: unlike the sum,
    its scale does not grow with the number of dates an object has (zeros for no valid step)."""

    def call(self, sequence, mask):
        weights = ops.cast(mask, sequence.dtype)
        total = ops.sum(sequence * weights[..., None], axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)


@keras.saving.register_keras_serializable(package="tao_keras")
class SplitChannels(layers.Layer):
    """[B, H, W, C] -> [B*C, H, W, 1]: each channel (date) becomes an image of its own."""

    def call(self, images):
        h, w = images.shape[1], images.shape[2]
        return ops.reshape(ops.transpose(images, (0, 3, 1, 2)), (-1, h, w, 1))

    def compute_output_spec(self, images):
        return keras.KerasTensor((None, images.shape[1], images.shape[2], 1), dtype=images.dtype)


@keras.saving.register_keras_serializable(package="tao_keras")
class MergeStreams(layers.Layer):
    """[B*streams, F] -> [B, streams*F]: concatenate the per-date features of each object."""

    def __init__(self, streams, **kwargs):
        super().__init__(**kwargs)
        self.streams = streams

    def call(self, features):
        return ops.reshape(features, (-1, self.streams * features.shape[-1]))

    def compute_output_spec(self, features):
        return keras.KerasTensor((None, self.streams * features.shape[-1]), dtype=features.dtype)

    def get_config(self):
        return {**super().get_config(), "streams": self.streams}


# Whole-sequence statistics of the per-date photometry (PhotometryStatistics), in this order.
PHOTOMETRY_STATISTICS = (
    "mean",  # of the signal s (asinh of the flux's S/N against the object's noise scale)
    "log_sd",  # log of its standard deviation (floored by VARIANCE_FLOOR)
    "above",  # max - mean: the brightest excursion
    "below",  # mean - min: the faintest (eclipses, fading)
    "log_chi2",  # log(1 + chi2 / n) of s against a constant, each date with its own error
    "skew",  # third standardized moment
    "log_count",  # log n: how many dates the statistics rest on
)
# With TAONetConfig.photometry_eta, one more after them: the von Neumann ratio of successive
# dates, log((sum of (s_i - s_(i-1))^2 / (n - 1) + VARIANCE_FLOOR) / (variance +
# VARIANCE_FLOOR)): about log 2 for a constant source with any noise (no error model needed,
# so a bright star whose source Poisson noise the chi2 leaves out still reads constant),
# below it for variability that is correlated in time (AGN, blazars, a supernova's curve).
ETA_STATISTIC = "log_eta"
VARIANCE_FLOOR = 1e-6  # added to the variance: a constant sequence has log_sd = log(1e-3)
ERROR_FLOOR = 1e-3  # added to each date's error in the chi2 (asinh units)
ASINH_CLIP = 20.0  # cosh's argument clipped: no overflow for very bright dates


def photometry_point(signal, noise):
    """One date's value and chi2 weight from its photometry: signal s (asinh units) and noise
    log(background scatter / noise scale) -> (s, w = 1 / (e + ERROR_FLOOR)^2), with e =
    exp(noise) / cosh(s) the background error carried through the asinh. Any shape, float32."""
    error = ops.exp(noise) / ops.cosh(ops.clip(signal, -ASINH_CLIP, ASINH_CLIP))
    return signal, 1.0 / ops.square(error + ERROR_FLOOR)


def statistics_from_moments(count, mean, m2, m3, chi2, maximum, minimum, successive=None):
    """PHOTOMETRY_STATISTICS [..., 7] from the moments of n >= 1 values (each [...]): count n,
    mean, m2 = sum (s - mean)^2, m3 = sum (s - mean)^3, chi2 = sum w (s - mean)^2, maximum,
    minimum; with successive = sum (s_i - s_(i-1))^2 over consecutive values, ETA_STATISTIC
    as an 8th column [..., 8]. The one formula behind the layer and the night-by-night update
    (which keeps the moments as running sums, tao_keras.streaming)."""
    pairs = ops.maximum(count - 1.0, 1.0)
    count = ops.maximum(count, 1.0)
    variance = m2 / count + VARIANCE_FLOOR
    sd = ops.sqrt(variance)
    columns = [
        mean,
        ops.log(sd),
        maximum - mean,
        mean - minimum,
        ops.log1p(chi2 / count),
        (m3 / count) / (sd * sd * sd),
        ops.log(count),
    ]
    if successive is not None:
        columns.append(ops.log((successive / pairs + VARIANCE_FLOOR) / variance))
    return ops.stack(columns, axis=-1)


def statistic_names(eta=False):
    """The PhotometryStatistics columns' names, in order (eta: TAONetConfig.photometry_eta)."""
    return PHOTOMETRY_STATISTICS + ((ETA_STATISTIC,) if eta else ())


@keras.saving.register_keras_serializable(package="tao_keras")
class PhotometryStatistics(layers.Layer):
    """Whole-sequence variability statistics of one date per step of the per-date photometry.

    call(photometry [B, T, P], mask [B, T] (a prefix of valid steps)) -> [B, 7], or [B, 8]
    with eta (statistic_names(eta): ETA_STATISTIC last), float32: over
    the valid steps, the statistics of each step's date at columns signal_index (signal) and
    signal_index + 1 (noise) of P (taonet passes the triplet's middle date, so every date but
    the first and last counts once). What a light-curve classifier reads in one glance (is
    anything changing beyond the noise?) and a GRU fed one date at a time learns slowly from
    ~100 objects per class (docs/science.md). Steps' values enter through
    statistics_from_moments, as the night-by-night update's running sums do.
    """

    def __init__(self, signal_index=2, eta=False, **kwargs):
        super().__init__(**kwargs)
        self.signal_index = signal_index
        self.eta = eta

    def call(self, photometry, mask):
        m = ops.cast(mask, "float32")
        photometry = ops.cast(photometry, "float32")
        s, w = photometry_point(
            photometry[..., self.signal_index], photometry[..., self.signal_index + 1]
        )
        count = ops.sum(m, axis=1)
        mean = ops.sum(s * m, axis=1) / ops.maximum(count, 1.0)
        d = (s - mean[:, None]) * m
        big = 1e4  # padded steps never win the max or the min
        successive = None
        if self.eta:  # the valid steps are a prefix: consecutive valid steps are neighbours
            jump = (s[:, 1:] - s[:, :-1]) * m[:, 1:] * m[:, :-1]
            successive = ops.sum(jump * jump, axis=1)
        return statistics_from_moments(
            count,
            mean,
            ops.sum(d * d, axis=1),
            ops.sum(d * d * d, axis=1),
            ops.sum(w * d * d, axis=1),
            ops.max(s * m - big * (1.0 - m), axis=1),
            ops.min(s * m + big * (1.0 - m), axis=1),
            successive,
        )

    def compute_output_spec(self, photometry, mask):
        width = len(statistic_names(self.eta))
        return keras.KerasTensor((photometry.shape[0], width), "float32")

    def get_config(self):
        return {**super().get_config(), "signal_index": self.signal_index, "eta": self.eta}
