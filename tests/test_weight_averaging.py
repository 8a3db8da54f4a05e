"""Weight averaging (StageConfig.average_epochs, per stage): the callbacks after `averaged`
see the moving average of the weights, the backup sees the raw weights training continues
from; the trainer's flags set each stage's horizon."""

import dataclasses

import keras
import numpy as np
import pytest

from tao_keras.training import callbacks, config, losses, protocol

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
        config.StageConfig(epochs=1, learning_rate=1e-3, batch_size=4, average_epochs=-1.0)


def test_the_average_is_each_stage_s_own_and_a_joint_average_keeps_stages_1_and_2():
    base = config.TRAINING_PRESETS["cpu"]
    averaged = dataclasses.replace(base, joint=dataclasses.replace(base.joint, average_epochs=3.0))
    for stage in ("densenet", "gru"):  # a kept run's stages 1 and 2 are reused
        assert protocol._settings(averaged, stage) == protocol._settings(base, stage)
    assert protocol._settings(averaged, "joint") != protocol._settings(base, "joint")
    steps = 10
    for stage, expected in (("gru", 0.0), ("joint", config.ema_momentum(3.0, steps))):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        protocol.compile_model(model, "densenet", averaged, getattr(averaged, stage), steps)
        assert model.optimizer.use_ema == (expected > 0)
        if expected:
            assert model.optimizer.ema_momentum == pytest.approx(expected)


def test_a_config_with_the_run_wide_average_gives_it_to_every_stage():
    base = config.TRAINING_PRESETS["cpu"]
    values = dataclasses.asdict(base)
    for stage in config.STAGES:
        del values[stage]["average_epochs"]  # as written when the average was run-wide
    unaveraged = {
        s: dataclasses.replace(getattr(base, s), average_epochs=0.0) for s in config.STAGES
    }
    assert config.from_dict(values) == dataclasses.replace(base, **unaveraged)  # nothing invented
    values["average_epochs"] = 2.0
    loaded = config.from_dict(values)
    assert [getattr(loaded, s).average_epochs for s in config.STAGES] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], (0.0, 0.0, 4.0)),  # the cpu preset averages the joint stage only
        (["--average_epochs=2"], (2.0, 2.0, 2.0)),
        (["--average_epochs_joint=3"], (0.0, 0.0, 3.0)),
        (["--average_epochs_joint=0"], (0.0, 0.0, 0.0)),
        (["--average_epochs=0"], (0.0, 0.0, 0.0)),
        (["--average_epochs=2", "--average_epochs_densenet=0"], (0.0, 2.0, 2.0)),
    ],
)
def test_the_trainer_flags_set_each_stage_s_average(argv, expected):
    from trainers import common

    common.FLAGS(["trainer", *argv])
    try:
        found = common.train_config("multiclass")
    finally:
        common.FLAGS.unparse_flags()
    assert tuple(getattr(found, s).average_epochs for s in config.STAGES) == expected
