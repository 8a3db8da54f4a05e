"""The learning-rate schedule of a stage (TrainConfig.learning_rate_schedule): constant, or a
cosine from the stage's rate to COSINE_FLOOR of it over the stage's epochs, which a resumed
stage continues where it stopped; the trainers' flags for it and the weight decay."""

import dataclasses
import math

import keras
import numpy as np
import pytest

from tao_keras.training import callbacks, config, protocol

STAGE = config.StageConfig(epochs=4, learning_rate=0.02, batch_size=8)
STEPS = 5  # steps per epoch: 40 examples, batch 8


def _model():
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])


def _data():
    x = np.random.default_rng(1).normal(size=(40, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0)


def _rate_at(optimizer, step):
    optimizer.iterations.assign(step)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def test_cosine_falls_from_the_stage_rate_to_its_floor_over_the_stage():
    model = _model()
    cosine = config.TrainConfig(learning_rate_schedule="cosine")
    protocol.compile_model(model, "densenet", cosine, STAGE, STEPS)
    total = STAGE.epochs * STEPS
    assert config.decay_steps(cosine, STAGE, STEPS) == total
    rate = STAGE.learning_rate
    floor = config.COSINE_FLOOR
    for step in (0, total // 4, total // 2, total):
        expected = rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total)))
        assert _rate_at(model.optimizer, step) == pytest.approx(expected, rel=1e-5)
    assert _rate_at(model.optimizer, total) == pytest.approx(rate * floor, rel=1e-5)


def test_constant_is_the_default_and_keeps_the_stage_rate():
    model = _model()
    default = config.TrainConfig()
    assert default.learning_rate_schedule == "constant"
    assert config.decay_steps(default, STAGE, STEPS) == 0
    protocol.compile_model(model, "densenet", default, STAGE, STEPS)
    assert _rate_at(model.optimizer, 17) == pytest.approx(STAGE.learning_rate)


def test_an_unknown_schedule_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="learning_rate_schedule 'linear'.*constant, cosine"):
        config.TrainConfig(learning_rate_schedule="linear")


def test_a_resumed_stage_continues_the_schedule(tmp_path):
    """Stopped after 2 of 4 epochs (their backup written), the stage resumes from its backup
    with the optimizer's step count (so the rate) where it was: it ends where an uninterrupted
    stage ends."""
    x, y = _data()
    cosine = config.TrainConfig(learning_rate_schedule="cosine")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    def fit(extra=()):
        model = _model()
        protocol.compile_model(model, "densenet", cosine, STAGE, STEPS)
        backup = callbacks.ResumableBackup(str(tmp_path / "backup"))
        model.fit(
            x, y, batch_size=8, epochs=STAGE.epochs, verbose=0, shuffle=False,
            callbacks=[backup, *extra],
        )  # fmt: skip
        return model

    uninterrupted = _model()
    protocol.compile_model(uninterrupted, "densenet", cosine, STAGE, STEPS)
    uninterrupted.fit(x, y, batch_size=8, epochs=STAGE.epochs, verbose=0, shuffle=False)

    class Epochs(keras.callbacks.Callback):
        seen = []

        def on_epoch_begin(self, epoch, logs=None):
            self.seen.append(epoch)

    with pytest.raises(KeyboardInterrupt):
        fit([Stop()])
    resumed = fit([Epochs()])
    assert Epochs.seen == [2, 3]  # it did resume, and ran the last two epochs only
    assert int(resumed.optimizer.iterations) == STAGE.epochs * STEPS
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "flag, given, field, expected",
    [
        ("learning_rate_schedule", None, "learning_rate_schedule", "constant"),
        ("learning_rate_schedule", "cosine", "learning_rate_schedule", "cosine"),
        ("weight_decay", None, "weight_decay", config.TRAINING_PRESETS["cpu"].weight_decay),
        ("weight_decay", "0.05", "weight_decay", 0.05),
        ("learning_rate_joint", None, "joint", config.TRAINING_PRESETS["cpu"].joint),
        ("learning_rate_joint", "1.5e-4", "joint.learning_rate", 1.5e-4),
        ("learning_rate_densenet", "1e-3", "densenet.learning_rate", 1e-3),
        ("learning_rate_gru", "3e-3", "gru.learning_rate", 3e-3),
        ("learning_rate_joint", "1.5e-4", "gru", config.TRAINING_PRESETS["cpu"].gru),
        ("gru_units", None, "gru_units", None),
        ("gru_units", "128", "gru_units", 128),
        ("gru_layers", "2", "gru_layers", 2),
        ("date_dropout", None, "date_dropout", 0.0),
        ("date_dropout", "0.2", "date_dropout", 0.2),
    ],
)
def test_the_trainer_flags_set_the_training_settings(flag, given, field, expected):
    from trainers import common

    argv = ["trainer", *([] if given is None else [f"--{flag}", given])]
    common.FLAGS(argv)
    try:
        found = common.train_config("multiclass")
    finally:
        common.FLAGS.unparse_flags()
    for part in field.split("."):
        found = getattr(found, part)
    assert found == expected


def test_the_weight_decay_reaches_the_optimizer():
    model = _model()
    protocol.compile_model(model, "densenet", config.TrainConfig(weight_decay=0.05), STAGE, STEPS)
    assert model.optimizer.weight_decay == pytest.approx(0.05)


def test_a_later_stage_s_learning_rate_leaves_the_earlier_stages_reusable():
    base = config.TRAINING_PRESETS["cpu"]
    slower = dataclasses.replace(base, joint=dataclasses.replace(base.joint, learning_rate=1.5e-4))
    for stage in ("densenet", "gru"):  # a kept run's stages 1 and 2 are reused
        assert protocol._settings(slower, stage) == protocol._settings(base, stage)
    assert protocol._settings(slower, "joint") != protocol._settings(base, "joint")
    # the auxiliary loss counts in the joint stage only: its weight leaves stages 1 and 2 too
    heavier = dataclasses.replace(base, aux_weight=2.0)
    for stage in ("densenet", "gru"):
        assert protocol._settings(heavier, stage) == protocol._settings(base, stage)
    assert protocol._settings(heavier, "joint") != protocol._settings(base, "joint")
    other = dataclasses.replace(base, gru=dataclasses.replace(base.gru, learning_rate=1e-3))
    assert protocol._settings(other, "densenet") == protocol._settings(base, "densenet")
    assert protocol._settings(other, "gru") != protocol._settings(base, "gru")
