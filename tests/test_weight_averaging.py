"""Weight averaging (TrainConfig.average_epochs): the callbacks after `averaged` see the moving
average of the weights, the backup sees the raw weights training continues from."""

import keras
import numpy as np
import pytest

from tao_keras.training import callbacks, config, losses

MOMENTUM = 0.8


class _Seen(keras.callbacks.Callback):
    """Records the model's first kernel at every batch end (raw) or epoch end (when placed)."""

    def __init__(self, on_batches=False):
        super().__init__()
        self.on_batches, self.values = on_batches, []

    def on_train_batch_end(self, batch, logs=None):
        if self.on_batches:
            self.values.append(keras.ops.convert_to_numpy(self.model.layers[0].kernel))

    def on_epoch_end(self, epoch, logs=None):
        if not self.on_batches:
            self.values.append(keras.ops.convert_to_numpy(self.model.layers[0].kernel))


def test_scored_weights_are_the_moving_average_and_the_backup_sees_the_raw_ones():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    losses.compile_stage(model, "densenet", 0.05, 0.0, 0.0, ema_momentum=MOMENTUM)
    x = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)
    raw, scored, backed_up = _Seen(on_batches=True), _Seen(), _Seen()
    averaged, back = callbacks.averaged_weights()
    epochs, batches = 3, 5
    model.fit(
        x, y, batch_size=8, epochs=epochs, verbose=0,
        callbacks=[averaged, scored, raw, back, backed_up],
    )  # fmt: skip
    average, expected = None, []
    for step, weights in enumerate(raw.values):
        average = weights if average is None else MOMENTUM * average + (1 - MOMENTUM) * weights
        if (step + 1) % batches == 0:
            expected.append(average)
    assert len(scored.values) == epochs
    for epoch in range(epochs):
        np.testing.assert_allclose(scored.values[epoch], expected[epoch], rtol=1e-5, atol=1e-6)
        assert not np.allclose(expected[epoch], raw.values[(epoch + 1) * batches - 1])
    # Keras swaps by adding and subtracting (no third copy): back to one float32 rounding
    for epoch in range(epochs - 1):  # the last epoch's backup holds the average (training is over)
        last_step = raw.values[(epoch + 1) * batches - 1]
        np.testing.assert_allclose(backed_up.values[epoch], last_step, rtol=0, atol=1e-6)
    # what the stage keeps after fit: the average
    kept = keras.ops.convert_to_numpy(model.layers[0].kernel)
    np.testing.assert_allclose(kept, expected[-1], rtol=1e-5, atol=1e-6)


def test_the_horizon_in_epochs_sets_the_momentum():
    assert config.ema_momentum(2.0, 50) == pytest.approx(0.99)
    assert config.ema_momentum(0.0, 50) == 0.0  # off
    assert config.ema_momentum(0.5, 2) == 0.0  # one step: nothing to average
    with pytest.raises(ValueError, match="average_epochs"):
        config.TrainConfig(average_epochs=-1.0)
