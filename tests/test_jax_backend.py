"""The models under Keras' JAX backend: the `cpu` and `paper` TAO-Net (paper at a 16x16 RoI to
stay tiny) build and train one XLA-compiled step, padding changes neither their outputs nor
their BatchNorm statistics, and for the same weights they give TensorFlow's outputs to 1e-4."""

import dataclasses
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tao_keras.models import presets, taonet

from conftest import REPO


def configs():
    paper = presets.preset("paper")
    return {
        "cpu": presets.preset("cpu"),
        "paper": dataclasses.replace(
            paper, backbone=dataclasses.replace(paper.backbone, roi_size=16)
        ),
    }


def perturbed_statistics(model, rng):
    """Moving means and variances away from 0 and 1, so that inference exercises them."""
    for weight in model.non_trainable_weights:
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 2.0, weight.shape).astype("float32"))
        elif "moving_mean" in weight.path:
            weight.assign(rng.normal(0, 0.1, weight.shape).astype("float32"))


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    directory = tmp_path_factory.mktemp("jax")
    rng = np.random.default_rng(0)
    expected = {}
    for name, config in configs().items():
        model = taonet.build_taonet(config, 6)
        perturbed_statistics(model, rng)
        model.save_weights(str(directory / f"{name}.weights.h5"))
        roi = config.backbone.roi_size
        inputs = {
            "images": rng.normal(size=(3, 5, roi, roi, 3)).astype("float32"),
            "dt": rng.uniform(0, 0.3, size=(3, 5, 2)).astype("float32"),
            "length": np.array([5, 2, 4], "int32"),
        }
        if config.photometry:  # the cpu preset: photometry and its whole-sequence statistics
            inputs["photometry"] = rng.normal(size=(3, 5, taonet.PHOTOMETRY_WIDTH)).astype(
                "float32"
            )
        np.savez(directory / f"{name}.npz", labels=np.array([0, 3, 5]), **inputs)
        expected[name] = {k: np.asarray(v) for k, v in model(inputs, training=False).items()}
    with open(directory / "configs.pkl", "wb") as f:
        pickle.dump(configs(), f)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "tests.jax_backend_checks", str(directory)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        name: (expected[name], dict(np.load(directory / f"{name}.jax.npz"))) for name in expected
    }


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_jax_gives_tensorflows_outputs_for_the_same_weights(jax_results, preset):
    tf_out, jax_out = jax_results[preset]
    assert tf_out["probabilities"].max() < 0.999  # not a saturated, trivially equal answer
    for key in ("probabilities", "aux_probabilities"):
        np.testing.assert_allclose(jax_out[key], tf_out[key], atol=1e-4)


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_under_jax_padding_changes_neither_outputs_nor_batchnorm_statistics(jax_results, preset):
    _, out = jax_results[preset]
    np.testing.assert_allclose(out["padded_probabilities"], out["probabilities"], atol=1e-5)
    if preset == "cpu":  # the statistics are checked on one preset (the same layers)
        assert out["statistics_clean"].size > 0
        assert bool(out["statistics_moved"])  # not a comparison between two no-ops
        np.testing.assert_allclose(out["statistics_junk"], out["statistics_clean"], atol=1e-5)


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_under_jax_one_compiled_training_step_runs_and_trains(jax_results, preset):
    _, out = jax_results[preset]
    assert np.isfinite(out["loss"]).all() and bool(out["trained"])
