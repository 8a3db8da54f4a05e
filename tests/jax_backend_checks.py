"""Run under KERAS_BACKEND=jax by tests/test_jax_backend.py (a backend is fixed per process).

python -m tests.jax_backend_checks DIR: for each PRESET.weights.h5 / PRESET.npz in DIR (saved
by the TensorFlow side), builds that TAO-Net under JAX, loads the weights and writes
PRESET.jax.npz: the inference outputs, the outputs with padding full of junk, the BatchNorm
statistics after one training-mode call with and without that padding (the `cpu` preset: the
layers are the same in both), and the loss of one XLA-compiled training step.
"""

import os
import sys

import jax
import keras
import numpy as np

from tao_keras.models import taonet


def junk_padded(inputs, extra=3):
    out = {}
    for key, value in inputs.items():
        if value.ndim > 1:
            pad = np.full((value.shape[0], extra) + value.shape[2:], 50.0, value.dtype)
            value = np.concatenate([value, pad], axis=1)
        out[key] = value
    return out


def statistics_after_training_call(model, inputs):
    """The non-trainable weights (BatchNorm's moving statistics) after one training-mode call
    of `model` on `inputs`, compiled (eager JAX compiles every op apart: far slower)."""
    call = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=True)[1])
    updated = call(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        inputs,
    )
    return np.concatenate([np.ravel(v) for v in updated])


def check(directory, preset, config):
    assert keras.backend.backend() == "jax", keras.backend.backend()
    inputs = dict(np.load(os.path.join(directory, f"{preset}.npz")))
    labels = inputs.pop("labels")
    model = taonet.build_taonet(config, 6)
    model.load_weights(os.path.join(directory, f"{preset}.weights.h5"))
    tracked = list(model.non_trainable_variables)  # BatchNorm's moving statistics
    before = np.concatenate([np.ravel(v) for v in tracked])
    out = model.predict_on_batch(inputs)
    padded = model.predict_on_batch(junk_padded(inputs))
    if preset == "cpu":  # the same layers in both presets: one check of the statistics
        clean = statistics_after_training_call(model, inputs)
        junk = statistics_after_training_call(model, junk_padded(inputs))
    else:
        clean = junk = np.zeros(0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={"probabilities": "sparse_categorical_crossentropy"},
        jit_compile=True,
    )
    loss = model.train_on_batch(inputs, {"probabilities": labels})
    after = np.concatenate([np.ravel(v) for v in tracked])
    np.savez(
        os.path.join(directory, f"{preset}.jax.npz"),
        probabilities=np.asarray(out["probabilities"]),
        aux_probabilities=np.asarray(out["aux_probabilities"]),
        padded_probabilities=np.asarray(padded["probabilities"]),
        statistics_clean=clean,
        statistics_junk=junk,
        statistics_moved=np.asarray(clean.size > 0 and not np.allclose(clean, before)),
        loss=np.asarray(loss, "float64"),
        trained=np.asarray(not np.allclose(after, before)),
    )


if __name__ == "__main__":
    import pickle

    directory = sys.argv[1]
    with open(os.path.join(directory, "configs.pkl"), "rb") as f:
        configs = pickle.load(f)
    import time

    for name, config in configs.items():
        start = time.perf_counter()
        check(directory, name, config)
        print(name, round(time.perf_counter() - start, 1), "s")
    print("ok", sorted(configs))
