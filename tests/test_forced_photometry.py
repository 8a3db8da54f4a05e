"""TAO-Net's per-date photometry input (tao_keras.pipeline.forced_photometry): the graph's
forced photometry against the light-curve baseline's photutils measurement on simulated
images, its invariance to sky level and gain, its place in the pipeline's steps, and the
exported model computing it from the pixels of a request as the pipeline does."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from test_lightcurves import star_images

from tao_keras import classes, contract, export
from tao_keras.lightcurves import photometry
from tao_keras.models import presets, taonet
from tao_keras.pipeline import datasets, forced_photometry, model_inputs, normalization
from tfrecords import manifest as manifest_file
from tfrecords import parser

from conftest import pack


def survey_images(records_dir, limit=600):
    """Raw exposures [N, 64, 64] of the tiny simulated survey's records (NaN = bad)."""
    shards = classes.task_shards(
        manifest_file.load(records_dir), records_dir, "train", "multiclass"
    )
    paths = [p for label in sorted(shards) for p, _ in shards[label]]
    images = [parser.decode(s.numpy()).images for s in tf.data.TFRecordDataset(paths)]
    return np.concatenate(images)[:limit].astype(np.float32)


def test_graph_photometry_matches_the_baselines_measure_on_simulated_images(tiny_records):
    records_dir, _ = tiny_records
    images = survey_images(records_dir)
    stars, _ = star_images(np.repeat([30.0, 300.0, 3000.0, 30000.0], 10))
    images = np.concatenate([images, stars])
    images[::7, 20:23, 30:40] = np.nan  # bad pixels inside the aperture and the annulus
    images[3] = np.nan  # an exposure with no usable pixel at all
    flux, error = photometry.measure(images)
    graph_flux, graph_error, _ = (x.numpy() for x in forced_photometry.measure_graph(images))
    usable = np.isfinite(flux)
    assert usable.sum() == len(images) - 1 and np.isnan(graph_flux[3])
    # the same flux to a hundredth of its error (float32 against float64)
    assert np.all(np.abs(graph_flux - flux)[usable] <= 0.01 * error[usable]), np.max(
        np.abs(graph_flux - flux)[usable] / error[usable]
    )
    # the background-only error: never above photutils' total, equal where the sky dominates
    ratio = graph_error[usable] / error[usable]
    assert np.all(ratio <= 1.001), ratio.max()
    faint = np.abs(flux[usable]) < 3 * error[usable]
    assert faint.sum() > 20 and np.all(ratio[faint] > 0.95), ratio[faint].min()


def test_photometry_input_is_invariant_to_sky_level_and_gain():
    images, _ = star_images(np.array([0.0, 1000.0, 10000.0, 100000.0]), seed=3)
    scaled = 3.7 * images + 850.0  # another gain and a brighter sky, the same exposures
    for rule in ("object", "image"):
        out = []
        for x in (images, scaled):
            reference = normalization.object_scale(x, rule)
            scale = normalization.image_scales(x) if reference is None else reference
            out.append(forced_photometry.features(x, scale).numpy())
        np.testing.assert_allclose(out[0], out[1], atol=2e-3)
    signal = out[0][:, 0]
    assert abs(signal[0]) < 1.5 and np.all(np.diff(signal) > 0)  # blank sky ~0, then rising
    blank = forced_photometry.features(np.full((2, 64, 64), np.nan, np.float32), 1.0)
    np.testing.assert_array_equal(blank.numpy(), 0.0)  # no usable pixel: zeros, never NaN


def test_a_roi_without_the_background_annulus_is_refused():
    with pytest.raises(ValueError, match="annulus.*16x16.*at least 29"):
        forced_photometry.features(np.zeros((3, 16, 16), np.float32), 1.0)
    architecture = dataclasses.replace(presets.preset("cpu"), photometry=True)
    with pytest.raises(contract.ContractError, match="roi_size 24: the photometry.*29"):
        contract.ModelContract(architecture, 24)  # found when the contract is made


def test_each_step_carries_its_three_dates_photometry():
    images, _ = star_images(np.array([10.0, 100.0, 1000.0, 10000.0, 100000.0]), seed=1)
    mjd = np.arange(5, dtype=np.float64) * 30.0
    prepared = model_inputs.prepare_dates(images, mjd, model_roi_size=16, photometry=True)
    per_date = prepared["photometry"].numpy()
    assert prepared["images"].shape == (5, 16, 16) and per_date.shape == (5, 2)
    features = model_inputs.sequence_features(prepared)
    steps = features["photometry"].numpy()
    assert steps.shape == (3, taonet.PHOTOMETRY_WIDTH)
    for k in range(3):
        np.testing.assert_array_equal(steps[k], per_date[k : k + 3].reshape(-1))
    assert "photometry" not in model_inputs.prepare_dates(images, mjd)


def test_the_exported_model_computes_the_photometry_the_pipeline_feeds(tiny_records, tmp_path):
    records_dir, _ = tiny_records
    architecture = dataclasses.replace(presets.preset("cpu"), photometry=True)
    assert architecture == presets.preset("cpu")  # the cpu preset's input
    served = contract.ModelContract(architecture, 64, per_date="coadd")
    with pytest.raises(contract.ContractError, match="photometry statistics: False"):
        without = dataclasses.replace(
            architecture, photometry_statistics=False, statistics_expert=False
        )
        contract.check_model(served, taonet.build_taonet(without, 6))
    model = taonet.build_taonet(architecture, 6)
    contract.check_model(served, model)
    pixels_only = dataclasses.replace(
        architecture, photometry=False, photometry_statistics=False, statistics_expert=False
    )
    with pytest.raises(contract.ContractError, match="photometry input: False"):
        contract.check_model(served, taonet.build_taonet(pixels_only, 6))
    config = datasets.for_contract(
        served, mode="sequence", sequence_length=None, augment=False, batch_size=4
    )
    features, _ = next(iter(datasets.evaluation_dataset(str(records_dir), config, split="train")))
    assert features["photometry"].shape[-1] == taonet.PHOTOMETRY_WIDTH
    expected = model(features, training=False)["probabilities"].numpy()
    export.export_model(model, str(tmp_path / "m"), served)
    loaded = tf.saved_model.load(str(tmp_path / "m"))
    shards = classes.task_shards(
        manifest_file.load(records_dir), records_dir, "train", "multiclass"
    )
    paths = [p for label in sorted(shards) for p, _ in shards[label]]  # the evaluation order
    serialized = [s.numpy() for s in tf.data.TFRecordDataset(paths).take(4)]
    out = loaded.signatures["serialized"](records=tf.constant(serialized))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    images, mjd, counts = pack([parser.decode(s) for s in serialized], pad=1)
    raw = loaded.signatures["serving_default"](
        images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
    )
    np.testing.assert_allclose(raw["probabilities"].numpy(), expected, atol=1e-5)
