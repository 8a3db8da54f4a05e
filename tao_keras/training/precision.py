"""Training precision: float32, or Keras mixed_bfloat16 (bfloat16 compute, float32 weights and
heads) where the hardware computes bfloat16 natively. Measured on this 2-core AVX512-BF16 CPU:
the paper preset's training step 1.6x faster, the cpu preset's 1.13x (tools.benchmark)."""

import contextlib

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


def resolve(precision):
    """'auto' -> 'mixed_bfloat16' where has_fast_bfloat16(), else 'float32'; others unchanged."""
    if precision not in CHOICES:
        raise ValueError(f"precision {precision!r} not in {CHOICES}")
    if precision == "auto":
        return "mixed_bfloat16" if has_fast_bfloat16() else "float32"
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
