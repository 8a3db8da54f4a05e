"""The survey simulator: determinism, class mix, observing model and per-class physics."""

import csv
import filecmp
import glob
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from tools.simulation import calibration, observing, rendering, survey, variability

SHARED_CATALOG = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data", "crts-transients-catalog.tsv"
)


def read_catalog(directory):
    with open(os.path.join(directory, "catalog.csv")) as f:
        return list(csv.DictReader(f))


def test_same_seed_same_survey_whatever_the_workers(tiny_survey, tmp_path):
    from conftest import TINY_SURVEY

    again = tmp_path / "again"
    survey.simulate_survey(str(again), TINY_SURVEY, workers=1, progress=False)
    assert read_catalog(tiny_survey) == read_catalog(again)
    files = sorted(
        os.path.relpath(p, tiny_survey) for p in glob.glob(f"{tiny_survey}/images/*/*.fits")
    )
    assert files == sorted(os.path.relpath(p, again) for p in glob.glob(f"{again}/images/*/*.fits"))
    assert not filecmp.cmpfiles(tiny_survey, again, files, shallow=False)[1]


def test_catalog_layout_and_exact_class_mix(tiny_survey):
    rows = read_catalog(tiny_survey)
    labels = [
        r["label"] for r in rows
    ]  # 16 over 6 equal weights: largest remainders, in table order
    assert {name: labels.count(name) for name in set(labels)} == {
        "BZ": 3,
        "AGN": 3,
        "CV": 3,
        "OTHER": 3,
        "SN": 2,
        "NT": 2,
    }
    for row in rows:
        folder = os.path.join(tiny_survey, "images", row["object_id"])
        assert len(os.listdir(folder)) == int(row["num_exposures"])
        assert (row["max_mjd"] == "") == (row["label"] == "NT")
    assert calibration.class_counts(300, calibration.PAPER_CLASS_COUNTS) == {
        "BZ": 4,
        "AGN": 10,
        "CV": 12,
        "OTHER": 13,
        "SN": 21,
        "NT": 240,
    }


@pytest.mark.skipif(
    not os.path.exists(SHARED_CATALOG), reason="shared/ CRTS catalogue not beside the checkout"
)
def test_peak_magnitude_tables_match_the_crts_catalogue():
    with open(SHARED_CATALOG) as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if not r[0].startswith("#")]
    for group, names in calibration.CATALOG_GROUPS.items():
        mags = [float(r[4]) for r in rows if r[-1].split() and r[-1].split()[0] in names]
        np.testing.assert_allclose(
            np.percentile(mags, calibration.PERCENTILES),
            calibration.PEAK_MAG_PERCENTILES[group],
            atol=0.006,
        )
        if group in calibration.OTHER_SUBTYPE_COUNTS:
            assert len(mags) == calibration.OTHER_SUBTYPE_COUNTS[group]


def test_sampled_peak_magnitudes_follow_the_tables():
    rng = np.random.default_rng(0)
    for group, table in calibration.PEAK_MAG_PERCENTILES.items():
        draws = calibration.sample_magnitude(rng, group, size=40000)
        np.testing.assert_allclose(
            np.percentile(draws, [10, 50, 90]), np.array(table)[[2, 4, 6]], atol=0.05
        )


def test_limiting_magnitude_is_that_of_css():
    assert 19.5 <= observing.limiting_magnitude(2.3, 21.3) <= 20.0
    assert observing.limiting_magnitude(3.5, 20.0) < observing.limiting_magnitude(1.6, 21.6)


def test_schedule_window_seasons_and_nights():
    rng = np.random.default_rng(1)
    nights = observing.allowed_nights(120.0, 54000.0, 54000.0 + observing.WINDOW_DAYS)
    assert np.diff(nights).max() > 60  # a seasonal gap each year (Sun + monsoon)
    day_of_year = (nights - 51544.5) % 365.25
    assert not np.any((day_of_year > 195) & (day_of_year < 230))
    chosen = observing.choose_nights(rng, nights, 20, must_include=nights[100])
    assert len(chosen) == 20 and nights[100] in chosen and np.all(np.diff(chosen) > 0)
    exposures = observing.schedule_exposures(rng, chosen)
    per_night = np.bincount(np.searchsorted(chosen, [e.night for e in exposures]))
    assert np.mean(per_night == 4) > 0.4 and per_night.max() <= 5
    gaps = np.diff([e.mjd for e in exposures]) * 1440
    assert 8 < np.median(gaps[gaps < 60]) < 12  # ~10 min within a night
    assert all(1.3 <= e.fwhm_px <= 4.2 for e in exposures)


def test_simulated_exposures_have_a_wcs_on_the_target(tiny_survey):
    row = read_catalog(tiny_survey)[0]
    for path in sorted(glob.glob(os.path.join(tiny_survey, "images", row["object_id"], "*.fits")))[
        :5
    ]:
        with fits.open(path) as hdul:
            header, data = hdul[0].header, hdul[0].data
        assert data.shape == (120, 120) and data.dtype == np.uint16 and header["BZERO"] == 32768
        x, y = WCS(header).world_to_pixel_values(float(row["ra"]), float(row["dec"]))
        assert abs(x - 59.5) <= 9 and abs(y - 59.5) <= 9  # near, not exactly at, the centre
        assert abs(x - 59.5) + abs(y - 59.5) > 0


def _render(source, fwhm=2.3, seed=0, index=0):
    exposure = observing.Exposure(55000.3, 55000, fwhm, 21.3, 1.0, 300.0, (0.0, 0.0))
    empty = (np.zeros(0), np.zeros((0, 2)), [])
    return rendering.render_exposure(np.random.default_rng(seed), exposure, source, index, empty)[0]


def test_star_flux_and_noise_are_calibrated():
    star = variability.SourceModel("NT", "STAR", 14.0, None, np.array([14.0]), np.zeros((1, 2)))
    image = _render(star).astype(float)
    sky_e = observing.sky_electrons_per_pixel(21.3)
    background = 300.0 + sky_e / observing.GAIN
    assert np.median(image[:20, :20]) == pytest.approx(background, rel=0.02)
    expected_noise = np.sqrt(sky_e + observing.READ_NOISE_E**2) / observing.GAIN
    assert np.std(image[:30, :30]) == pytest.approx(expected_noise, rel=0.1)
    flux_e = (image[45:75, 45:75] - background).sum() * observing.GAIN  # noise ~1% of 1e5 e-
    assert flux_e == pytest.approx(observing.electrons(14.0), rel=0.03)
    weights = np.clip(image[45:75, 45:75] - background, 0, None)
    yy, xx = np.mgrid[45:75, 45:75]
    centroid = (np.sum(xx * weights) / weights.sum(), np.sum(yy * weights) / weights.sum())
    np.testing.assert_allclose(centroid, (59.5, 59.5), atol=0.3)  # the cutout centre (offset 0)


def test_supernova_peaks_at_max_mjd_and_fades():
    rng = np.random.default_rng(0)
    times = np.linspace(54800, 55300, 400)
    sn = variability.supernova(rng, times, 55000.0, 18.0)
    assert sn.max_mjd == 55000.0
    assert abs(times[np.argmin(sn.point_mag)] - 55000.0) < 2.0 and np.min(
        sn.point_mag
    ) == pytest.approx(18.0, abs=0.01)
    assert sn.point_mag[np.searchsorted(times, 55150)] > 20.0  # faded after 150 days
    assert sn.point_mag[np.searchsorted(times, 54900)] > 25.0  # not there 100 days before


def test_cv_outburst_from_faint_quiescence():
    rng = np.random.default_rng(2)
    times = np.arange(54500, 55600, 1.0)
    cv = variability.cataclysmic_variable(rng, times, 55000.0, 15.0)
    assert cv.point_mag[np.searchsorted(times, 55000.0)] == pytest.approx(15.0)
    assert np.max(cv.point_mag) - 15.0 >= 2.0 and np.median(cv.point_mag) > 16.5


def test_moving_objects():
    rng = np.random.default_rng(3)
    times = np.array([54500.3, 55000.3, 55000.307, 55500.3])
    hpm = variability.high_proper_motion(rng, times, 55000.3, 14.0)
    step = np.hypot(*(hpm.point_offset[3] - hpm.point_offset[0]))
    assert 0.3 * 1000 / 365.25 <= step <= 5.0 * 1000 / 365.25 and np.allclose(
        hpm.point_offset[1], 0
    )
    ast = variability.asteroid(rng, times, 55000.3, 18.5)
    assert np.isinf(ast.point_mag[[0, 3]]).all() and np.isfinite(ast.point_mag[[1, 2]]).all()
    moved = np.hypot(*(ast.point_offset[2] - ast.point_offset[1]))
    assert 0.05 * 3600 * 0.007 * 0.9 <= moved <= 0.6 * 3600 * 0.007 * 1.1  # 10 minutes of motion


def test_dead_columns_are_blank_pixels(tmp_path):
    star = variability.SourceModel("NT", "STAR", 16.0, None, np.array([16.0]), np.zeros((1, 2)))
    for seed in range(400):
        image = _render(star, seed=seed)
        if (image == 0).any():
            break
    else:
        pytest.fail("no dead column in 400 exposures (expected ~2%)")
    assert (image == 0).sum(axis=0).max() == 120


def test_rerun_into_the_same_directory_leaves_no_stale_exposures(tmp_path):
    config = survey.SurveyConfig(num_objects=2, seed=1, median_nights=6.0)
    survey.simulate_survey(str(tmp_path), config, workers=1, progress=False)
    fewer = survey.SurveyConfig(num_objects=2, seed=1, median_nights=3.0)
    survey.simulate_survey(str(tmp_path), fewer, workers=1, progress=False)
    for row in read_catalog(tmp_path):
        assert len(os.listdir(tmp_path / "images" / row["object_id"])) == int(row["num_exposures"])
