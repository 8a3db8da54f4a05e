"""Run by test_distribution.py in a fresh process: two logical CPUs must exist before TF starts.

Trains stage 2 (GRU on the frozen backbone: no BatchNorm batch statistics) for two steps on
the same global batch with one and with two replicas; prints the largest weight difference.
"""

import json
import sys

import tensorflow as tf

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tao_keras.pipeline import datasets  # noqa: E402
from tao_keras.training import config as train_config  # noqa: E402
from tao_keras.training import protocol  # noqa: E402

records = sys.argv[1]
config = train_config.TrainConfig(
    gru=train_config.StageConfig(epochs=1, learning_rate=1e-2, batch_size=4)
)
contract = protocol.model_contract(config, 64)
train, _ = datasets.training_dataset(records, protocol.pipeline_config(config, "gru", contract))
batch = next(iter(train.map(protocol.training_targets(contract.architecture))))
weights, replicas = {}, {}
for name, devices in (("one", ["/cpu:0"]), ("two", ["/cpu:0", "/cpu:1"])):
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = protocol.build_model("gru", config, contract, None)
        protocol.compile_model(model, "gru", config, config.gru)
    initial = [w.numpy() for w in model.trainable_weights]
    history = model.fit(
        tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=2, epochs=1, verbose=0
    )
    weights[name] = [w.numpy() for w in model.trainable_weights]
    replicas[name] = strategy.num_replicas_in_sync
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial, weights[name]))
    assert np.isfinite(history.history["loss"][0])
changed = max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"]))
print(
    json.dumps(
        {
            "replicas": replicas,
            "max_difference": changed,
            "weights": len(weights["one"]),
            "moved": moved,
        }
    )
)
