"""Training precision: float32, or Keras mixed_bfloat16 (bfloat16 compute, float32 weights and
heads) where the hardware computes bfloat16 natively (speed-ups measured in
docs/performance.md)."""

import contextlib
import os

import keras
import tensorflow as tf

CHOICES = ("auto", "float32", "mixed_bfloat16")


def has_fast_bfloat16(cpuinfo="/proc/cpuinfo"):
    """True on GPUs of compute capability >= 8.0 (all visible), or, without a GPU, on CPUs
    with AVX512-BF16 or AMX-BF16 instructions."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(
            tf.config.experimental.get_device_details(g).get("compute_capability", (0, 0)) >= (8, 0)
            for g in gpus
        )
    try:
        with open(cpuinfo) as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split()}
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


class PrecisionError(ValueError):
    """The precision asked for cannot run on this machine (the message says what to use)."""


def bfloat16_runs():
    """True when a bfloat16 convolution runs here. The CPU's flags are not enough: oneDNN may
    be limited to fewer instructions (ONEDNN_MAX_CPU_ISA=AVX2 on an AVX512-BF16 CPU), and then
    a bfloat16 convolution fails with "could not create a primitive descriptor". One tiny
    convolution, run once, tells."""
    try:
        x = tf.ones([1, 4, 4, 2], tf.bfloat16)
        tf.nn.conv2d(x, tf.ones([3, 3, 2, 2], tf.bfloat16), strides=1, padding="SAME").numpy()
    except (tf.errors.OpError, RuntimeError):
        return False
    return True


def resolve(precision):
    """'auto' -> 'mixed_bfloat16' where has_fast_bfloat16() and bfloat16 convolutions run
    (bfloat16_runs), else 'float32'; 'mixed_bfloat16' asked for where it cannot run ->
    PrecisionError; 'float32' unchanged."""
    if precision not in CHOICES:
        raise ValueError(f"precision {precision!r} not in {CHOICES}")
    if precision == "auto":
        return "mixed_bfloat16" if has_fast_bfloat16() and bfloat16_runs() else "float32"
    if precision == "mixed_bfloat16" and not bfloat16_runs():
        raise PrecisionError(
            "--precision mixed_bfloat16: bfloat16 convolutions do not run on this machine "
            f"(ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}); use "
            "--precision float32 or auto"
        )
    return precision


@contextlib.contextmanager
def policy(precision):
    """Layers built inside use this Keras dtype policy (kept in their saved config)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


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
    mixed = sorted({layer.dtype_policy.name for layer in model.layers} - {"float32"})
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
