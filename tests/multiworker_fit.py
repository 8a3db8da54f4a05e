"""Run by test_multiworker.py as one of two workers (TF_CONFIG set by the test): a tiny
Keras fit under MultiWorkerMirroredStrategy, with or without tao-keras' fix."""

import sys

import tensorflow as tf

strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

if sys.argv[1] == "patched":
    from tao_keras.training import multiworker

    multiworker.apply()
keras.utils.set_random_seed(0)
with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, (x[:, 0] > 0).astype("int32"))).repeat().batch(8)
model.fit(dataset, steps_per_epoch=3, epochs=1, verbose=0)
print("WEIGHTS", float(np.sum(model.get_weights()[0])))
