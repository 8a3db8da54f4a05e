"""Training precision: hardware detection, the policy context, bfloat16 TAO-Net training and saving,
and the trainers building their models under the resolved policy."""

import json

import keras
import numpy as np
import pytest

from tao_keras.models import densenet, taonet
from tao_keras.training import losses, precision


def test_cpu_bfloat16_detection_reads_the_flags(tmp_path):
    (tmp_path / "bf16").write_text("processor : 0\nflags : fpu sse2 avx512f avx512_bf16 fma\n")
    (tmp_path / "plain").write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert precision.has_fast_bfloat16(str(tmp_path / "bf16"))
    assert not precision.has_fast_bfloat16(str(tmp_path / "plain"))
    assert not precision.has_fast_bfloat16(str(tmp_path / "missing"))
    assert precision.resolve("auto") == (
        "mixed_bfloat16" if precision.has_fast_bfloat16() else "float32"
    )
    assert precision.resolve("float32") == "float32"
    with pytest.raises(ValueError, match="precision 'fp16'"):
        precision.resolve("fp16")


def test_bfloat16_taonet_trains_saves_and_keeps_float32_outputs(tmp_path):
    with precision.policy("mixed_bfloat16"):
        model = taonet.build_taonet(
            taonet.TAONetConfig(
                backbone=densenet.DenseNetConfig(growth_rate=4, depth=10, stem_stride=2),
                gru_layers=1,
                gru_units=8,
            ),
            6,
        )
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    assert model.get_layer("gru1").dtype_policy.name == "mixed_bfloat16"
    rng = np.random.default_rng(0)
    x = {
        "images": rng.normal(size=(4, 5, 64, 64, 3)).astype("float32"),
        "dt": np.zeros((4, 5, 2), "float32"),
        "length": np.array([5, 3, 4, 2], "int32"),
    }
    y = np.arange(4)
    model.compile(
        "adam",
        loss={
            "probabilities": keras.losses.SparseCategoricalCrossentropy(),
            "aux_probabilities": losses.masked_step_crossentropy,
        },
    )
    history = model.fit(
        x, {"probabilities": y, "aux_probabilities": y}, epochs=2, verbose=0
    ).history
    assert np.all(np.isfinite(history["loss"]))
    out = model(x, training=False)
    assert out["probabilities"].dtype == "float32"
    np.testing.assert_allclose(np.asarray(out["probabilities"]).sum(axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert again.get_layer("gru1").dtype_policy.name == "mixed_bfloat16"
    np.testing.assert_array_equal(again(x)["probabilities"], out["probabilities"])


def test_trainer_builds_under_the_resolved_precision(trained_run):
    config = json.load(open(trained_run / "config.json"))
    assert config["precision"] == precision.resolve("auto")
    model = keras.saving.load_model(trained_run / "joint" / "model.keras", compile=False)
    assert model.get_layer("gru1").dtype_policy.name == config["precision"]
