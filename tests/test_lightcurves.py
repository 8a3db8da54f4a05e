"""Light-curve baseline: photometry against injected sources, nightly means, features on known
curves, resampling, CSV input, the RF trainer's report and the comparison table."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from tao_keras import classes, metrics
from tao_keras.lightcurves import baseline, curve_features, photometry, resampling
from tao_keras.lightcurves import curves as curve_io

from conftest import REPO


def star_images(fluxes, fwhm=2.5, sky=1000.0, gain=2.0, read_noise=5.0, roi=64, seed=0):
    """Gaussian point sources of the given total fluxes (ADU) at the RoI centre, Poisson + read
    noise."""
    rng = np.random.default_rng(seed)
    sigma = fwhm / 2.3548
    y, x = np.mgrid[:roi, :roi]
    c = (roi - 1) / 2.0
    psf = np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))
    psf /= psf.sum()
    model = sky + np.asarray(fluxes)[:, None, None] * psf[None]
    electrons = rng.poisson(model * gain) + rng.normal(0, read_noise, model.shape)
    return (electrons / gain).astype(np.float32), psf


def test_photometry_recovers_injected_fluxes_within_their_errors():
    fluxes = np.repeat([300.0, 3000.0, 30000.0], 150)
    images, psf = star_images(fluxes)
    config = photometry.PhotometryConfig()
    measured, error = photometry.measure(images, config)
    from photutils.aperture import CircularAperture, aperture_photometry

    fraction = aperture_photometry(psf, CircularAperture((31.5, 31.5), config.radius))[
        "aperture_sum"
    ][0]
    assert 0.9 < fraction < 1.0
    inside = fluxes * fraction  # the injected flux that falls in the aperture
    pulls = (measured - inside) / error
    for level in range(3):
        p = pulls[level * 150 : (level + 1) * 150]
        assert abs(p.mean()) < 0.3 and 0.75 < p.std() < 1.3, (level, p.mean(), p.std())
    # Bad pixels are masked, not summed: a NaN column off the source changes little.
    images[:, :, 5] = np.nan
    again, _ = photometry.measure(images[:10], config)
    np.testing.assert_allclose(again, measured[:10], atol=3 * error[:10].max())


def test_nightly_means_and_magnitudes():
    mjd = np.array([0.0, 0.01, 0.02, 5.0, 5.01])
    flux = np.array([100.0, 200.0, np.nan, 50.0, 50.0])
    error = np.array([10.0, 20.0, 10.0, 5.0, 5.0])
    t, f, e = photometry.nightly(mjd, flux, error, np.array([0, 0, 0, 1, 1]))
    w = np.array([1 / 100, 1 / 400])
    np.testing.assert_allclose(f, [(w * [100, 200]).sum() / w.sum(), 50.0])
    np.testing.assert_allclose(e, [1 / np.sqrt(w.sum()), 5 / np.sqrt(2)])
    np.testing.assert_allclose(t, [0.005, 5.005])
    mag, magerr = photometry.to_magnitudes(np.array([1000.0, -5.0]), np.array([10.0, 10.0]))
    np.testing.assert_allclose(mag, [photometry.ZERO_POINT - 7.5, photometry.ZERO_POINT - 2.5])
    np.testing.assert_allclose(magerr, [2.5 / np.log(10) * 0.01, 2.5 / np.log(10)])


def test_features_of_known_curves():
    t = np.arange(10.0) * 3
    linear = curve_features.compute([(t, 18.0 + 0.01 * t, np.full(10, 0.05))])[0]
    f = dict(zip(curve_features.FEATURE_NAMES, linear))
    assert f["linear_trend"] == pytest.approx(0.01)
    assert f["amplitude"] == pytest.approx(0.5 * 0.27)
    assert f["mean"] == pytest.approx(18.135) and f["median"] == pytest.approx(18.135)
    flat = dict(
        zip(
            curve_features.FEATURE_NAMES,
            curve_features.compute([(t, np.full(10, 17.0), np.full(10, 0.1))])[0],
        )
    )
    assert flat["amplitude"] == 0 and flat["standard_deviation"] == 0 and flat["chi2"] == 0
    assert np.isnan(flat["kurtosis"])  # undefined for a flat curve
    with pytest.raises(ValueError, match="at least 5"):
        curve_features.compute([(t[:4], np.zeros(4), np.ones(4))])


def test_gaussian_resampling_balances_and_keeps_dates():
    rng = np.random.default_rng(0)
    curves = [
        (np.arange(n, dtype=float), rng.normal(18, 1, n), np.full(n, 0.2))
        for n in (5, 6, 7, 8, 9, 10)
    ]
    labels = np.array([0, 0, 0, 0, 1, 2])
    out, out_labels = resampling.balance(curves, labels, seed=1)
    assert [int((out_labels == c).sum()) for c in range(3)] == [4, 4, 4]
    assert out[:6] == curves  # originals first, untouched
    for (t, m, e), label in zip(out[6:], out_labels[6:]):
        source = [c for c, lab in zip(curves, labels) if lab == label and len(c[0]) == len(t)]
        assert len(source) == 1 and np.array_equal(source[0][0], t)
        assert not np.array_equal(source[0][1], m) and np.abs(m - source[0][1]).max() < 6 * 0.2


def synthetic_curves(per_class=12, seed=0):
    """Labelled light curves whose class shows in amplitude and trend, no split."""
    rng = np.random.default_rng(seed)
    out = []
    for label in range(len(classes.CLASS_NAMES)):
        for k in range(per_class):
            n = int(rng.integers(6, 20))
            t = np.sort(rng.uniform(53500, 54500, n))
            m = 18 + 0.3 * label * np.sin(t / (20 + 10 * label)) + rng.normal(0, 0.05, n)
            out.append((f"obj{label}-{k}", classes.CLASS_NAMES[label], t, m, np.full(n, 0.05)))
    return out


def write_curves(path, curves):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["mjd", "object_id", "mag", "magerr", "label"])  # any column order
        for object_id, label, t, m, e in curves:
            for row in zip(t, m, e):
                writer.writerow([row[0], object_id, row[1], row[2], label])


def test_csv_light_curves_are_split_per_class_and_errors_name_the_line(tmp_path):
    write_curves(tmp_path / "lc.csv", synthetic_curves())
    curves = curve_io.from_csv(tmp_path / "lc.csv")
    assert len(curves) == 72 and {c.split for c in curves} == {"train", "val", "test"}
    for c in curves:
        assert np.all(np.diff(c.mjd) > 0)
    (tmp_path / "bad.csv").write_text("object_id,mjd,mag,magerr\na,1,18,0.1\na,2,x,0.1\n")
    with pytest.raises(ValueError, match=r"bad.csv:3: mjd, mag and magerr must be numbers"):
        curve_io.from_csv(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("object_id,mjd,mag\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['magerr'\]"):
        curve_io.from_csv(tmp_path / "cols.csv")


def test_rf_trainer_writes_the_neural_report_format_and_compare_tabulates_it(tmp_path, trained_run):
    write_curves(tmp_path / "lc.csv", synthetic_curves(per_class=20))
    out = tmp_path / "rf"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.light_curve_rf",
            "--light_curves",
            str(tmp_path / "lc.csv"),
            "--task",
            "multiclass",
            "--output",
            str(out),
            "--trees",
            "50",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rf, neural = json.load(open(out / "report.json")), json.load(open(trained_run / "report.json"))
    assert rf["task"] == neural["task"] and rf["class_names"] == neural["class_names"]
    rf_val = rf["results"][baseline.MODEL_NAME]["val"]
    neural_val = next(iter(neural["results"].values()))["val"]
    assert (
        set(rf_val)
        == set(neural_val)
        == set(metrics.evaluate([0], np.ones((1, 6)) / 6, classes.CLASS_NAMES))
    )
    assert rf_val["mean_f1"] > 0.5  # the classes differ clearly in these curves
    assert "| Random Forest (light curves) |" in (out / "report.md").read_text()

    compared = subprocess.run(
        [sys.executable, "-m", "tools.compare", str(out), str(trained_run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compared.returncode == 0, compared.stderr[-2000:]
    assert "| mean ± std | chance | accuracy | macro-F1 | objects |" in compared.stdout
    lines = [line for line in compared.stdout.splitlines() if line.startswith("| ")]
    models = [line.split("|")[1].strip() for line in lines if not line.startswith("| model")]
    assert models[:4] == [
        baseline.MODEL_NAME,
        "DenseNet (triplets)",
        "TAO-Net, GRU on frozen DenseNet",
        "TAO-Net, joint + double supervision",
    ]


def test_light_curves_from_records_cover_every_object(tiny_records):
    records, manifest = tiny_records
    curves = curve_io.from_records(str(records), progress=False)
    assert len(curves) == manifest["summary"]["objects_written"]
    nt = [c for c in curves if c.label == classes.CLASS_NAMES.index("NT")]
    assert nt and all(len(c.mjd) >= 3 and np.all(np.isfinite(c.mag)) for c in curves)
