"""One test per reader rule of docs/data-format.md (catalog layout), with its message."""

import glob
import gzip
import os
import shutil

import numpy as np
import pytest
from astropy.io import fits

from tao_keras import classes
from tfrecords import parser
from tools.conversion import convert, exposures
from tools.conversion.sources import ConversionError

import fitsfiles

NIGHTS = fitsfiles.four_a_night([0, 20, 45])  # 12 exposures on 3 dates


def run(directory, out, **options):
    options = {"workers": 1, "min_shards": 1, **options}
    return convert.convert(
        [str(directory)], str(out), convert.ConvertOptions(**options), progress=False
    )


def records_by_id(out):
    return {
        r.object_id: r
        for r in parser.read_records(sorted(glob.glob(os.path.join(out, "*.tfrecord"))))
    }


def reasons(manifest, kind):
    return [(p["path"], p["reason"]) for p in manifest["problems"][kind]]


@pytest.fixture
def dataset(tmp_path):
    """A valid two-object catalog dataset the tests then break in one way each."""
    root = tmp_path / "in"
    fitsfiles.write_catalog(
        root,
        [
            {"object_id": "CSS071204:100029+071116", "label": "SN", "max_mjd": NIGHTS[4]},
            {"object_id": "good-2", "label": "NT"},
        ],
    )
    for oid in ("CSS071204:100029+071116", "good-2"):
        fitsfiles.write_nights(root / "images" / oid, NIGHTS)
    return root


def test_valid_dataset_converts(dataset, tmp_path):
    manifest = run(dataset, tmp_path / "out")
    assert manifest["summary"]["objects_written"] == 2
    assert not any(manifest["problems"].values())
    recs = records_by_id(tmp_path / "out")
    assert recs["CSS071204:100029+071116"].label == classes.CLASS_NAMES.index("SN")
    assert recs["good-2"].num_exposures == 12 and recs["good-2"].num_dates == 3


def test_missing_object_id_column_is_fatal(tmp_path):
    fitsfiles.write_catalog(tmp_path, [{"name": "x", "label": "SN"}], fields=("name", "label"))
    with pytest.raises(ConversionError, match=r"catalog.csv: header row has no 'object_id' column"):
        run(tmp_path, tmp_path / "out")


def test_no_layout_is_fatal(tmp_path):
    with pytest.raises(ConversionError, match="neither a catalog layout"):
        run(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    "bad_id, message",
    [
        ("../escape", "is not allowed"),
        (".hidden", "do not start with '.'"),
        ("has space", "is not allowed"),
        ("back\\slash", "is not allowed"),
        ("", "object_id is empty"),
    ],
)
def test_bad_object_id_rejects_row(dataset, tmp_path, bad_id, message):
    fitsfiles.write_catalog(
        dataset, [{"object_id": "good-2", "label": "NT"}, {"object_id": bad_id, "label": "SN"}]
    )
    manifest = run(dataset, tmp_path / "out")
    ((path, reason),) = reasons(manifest, "rows_rejected")
    assert path.endswith("catalog.csv:3") and message in reason
    assert manifest["summary"]["objects_written"] == 1


ALIASES = ["Supernova", "blazar", "UNKNOWN", "non-transient", "nontransient", "Non_Transient"]
ALIASES += ["non-t", "agn", "cv"]


def test_label_aliases_and_unknown_label(dataset, tmp_path):
    for i, alias in enumerate(ALIASES):
        fitsfiles.write_nights(dataset / "images" / f"a{i}", NIGHTS)
    rows = [{"object_id": f"a{i}", "label": alias} for i, alias in enumerate(ALIASES)]
    rows.append({"object_id": "good-2", "label": "quasar"})
    fitsfiles.write_catalog(dataset, rows)
    manifest = run(dataset, tmp_path / "out")
    ((path, reason),) = reasons(manifest, "rows_rejected")
    assert "unknown label 'quasar'" in reason and path.endswith(":11")
    got = {oid: classes.CLASS_NAMES[r.label] for oid, r in records_by_id(tmp_path / "out").items()}
    assert got == {
        "a0": "SN",
        "a1": "BZ",
        "a2": "OTHER",
        "a3": "NT",
        "a4": "NT",
        "a5": "NT",
        "a6": "NT",
        "a7": "AGN",
        "a8": "CV",
    }


def test_empty_label_is_unlabelled(dataset, tmp_path):
    fitsfiles.write_catalog(dataset, [{"object_id": "good-2", "label": ""}])
    manifest = run(dataset, tmp_path / "out")
    assert manifest["splits"]["unlabelled"]["records"] == {"UNLABELLED": 1}
    assert records_by_id(tmp_path / "out")["good-2"].label == classes.UNLABELLED


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("ra", "abc", "ra is not a number: 'abc'"),
        ("ra", "400", "ra=400.0 outside [0.0, 360.0]"),
        ("dec", "-91", "dec=-91.0 outside [-90.0, 90.0]"),
        ("max_mjd", "yesterday", "max_mjd is not a number"),
        ("split", "training", "split 'training' is not one of train, val, test"),
    ],
)
def test_bad_catalog_values_reject_row(dataset, tmp_path, column, value, message):
    fitsfiles.write_catalog(
        dataset,
        [
            {"object_id": "good-2", "label": "NT", column: value},
            {"object_id": "CSS071204:100029+071116", "label": "SN"},
        ],
    )
    manifest = run(dataset, tmp_path / "out")
    ((path, reason),) = reasons(manifest, "rows_rejected")
    assert path.endswith("catalog.csv:2") and message in reason
    assert list(records_by_id(tmp_path / "out")) == ["CSS071204:100029+071116"]


def test_all_rows_rejected_is_an_error(dataset, tmp_path):
    fitsfiles.write_catalog(dataset, [{"object_id": "good-2", "label": "quasar"}])
    with pytest.raises(ConversionError, match="nothing usable was written"):
        run(dataset, tmp_path / "out")


def test_duplicate_object_id_row(dataset, tmp_path):
    fitsfiles.write_catalog(
        dataset, [{"object_id": "good-2", "label": "NT"}, {"object_id": "good-2", "label": "SN"}]
    )
    manifest = run(dataset, tmp_path / "out")
    ((_, reason),) = reasons(manifest, "rows_rejected")
    assert "appears on an earlier row" in reason
    assert classes.CLASS_NAMES[records_by_id(tmp_path / "out")["good-2"].label] == "NT"


def test_row_without_folder_is_dropped_and_folder_without_row_ignored(dataset, tmp_path):
    fitsfiles.write_catalog(
        dataset, [{"object_id": "good-2", "label": "NT"}, {"object_id": "ghost", "label": "CV"}]
    )
    manifest = run(dataset, tmp_path / "out")
    ((path, reason),) = reasons(manifest, "objects_dropped")
    assert (
        path.endswith(os.path.join("images", "ghost"))
        and reason == "no image folder for this catalog row"
    )
    assert manifest["ignored_folders"] == [os.path.join(str(dataset), "CSS071204:100029+071116")]


def test_folder_with_no_readable_exposure_is_dropped(dataset, tmp_path):
    folder = dataset / "images" / "good-2"
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "notes.txt").write_text("not an exposure")
    manifest = run(dataset, tmp_path / "out")
    assert "no readable exposure" in reasons(manifest, "objects_dropped")[0][1]
    assert not manifest["problems"]["files_skipped"]  # the .txt is ignored, not reported


def test_compressed_and_alternative_suffixes_are_read(dataset, tmp_path):
    folder = dataset / "images" / "good-2"
    shutil.rmtree(folder)
    folder.mkdir()
    suffixes = [".fits", ".fit", ".fts", ".fits.gz", ".fz", ".FITS"]
    for i, mjd in enumerate(NIGHTS[: len(suffixes)] + NIGHTS[8:]):
        suffix = suffixes[i] if i < len(suffixes) else ".fits"
        path = folder / f"e{i:02d}{suffix}"
        image = fitsfiles.star_image(seed=i)
        if suffix == ".fz":
            fitsfiles.write_exposure(path, image, {"MJD-OBS": mjd}, compress=True)
        elif suffix.endswith(".gz"):
            fitsfiles.write_exposure(folder / "tmp.fits", image, {"MJD-OBS": mjd})
            with open(folder / "tmp.fits", "rb") as f, gzip.open(path, "wb") as g:
                g.write(f.read())
            os.remove(folder / "tmp.fits")
        else:
            fitsfiles.write_exposure(path, image, {"MJD-OBS": mjd})
    run(dataset, tmp_path / "out")
    assert records_by_id(tmp_path / "out")["good-2"].num_exposures == len(suffixes) + 4


def _replace_first_exposure(dataset, data=None, cards=None, raw=None, **kw):
    path = dataset / "images" / "good-2" / "e000.fits"
    if raw is not None:
        path.write_bytes(raw)
    else:
        fitsfiles.write_exposure(
            path, fitsfiles.star_image() if data is None else data, cards, **kw
        )
    return str(path)


@pytest.mark.parametrize(
    "data, cards, raw, message",
    [
        (None, None, b"this is not FITS at all" * 200, "unreadable FITS file"),
        (None, {}, None, "no observation time (none of MJD-OBS, DATE-OBS, MJD, JD in the header)"),
        (None, {"MJD-OBS": "soon"}, None, "MJD-OBS is not a number: 'soon'"),
        (
            None,
            {"DATE-OBS": "2009-06-18"},
            None,
            "DATE-OBS '2009-06-18' holds only a date and TIME-OBS is missing",
        ),
        (None, {"DATE-OBS": "18/06/2009"}, None, "is not ISO 8601"),
        (
            np.zeros(80, np.float32),
            {"MJD-OBS": NIGHTS[0]},
            None,
            "image has shape (80,), expected 2-D",
        ),
        (
            np.zeros((2, 80, 80), np.float32),
            {"MJD-OBS": NIGHTS[0]},
            None,
            "image has shape (2, 80, 80)",
        ),
        (
            np.zeros((40, 80), np.float32),
            {"MJD-OBS": NIGHTS[0]},
            None,
            "smaller than the 64x64 region of interest",
        ),
        (
            np.full((80, 80), np.nan, np.float32),
            {"MJD-OBS": NIGHTS[0]},
            None,
            "every pixel of the region of interest is NaN or blank",
        ),
    ],
)
def test_bad_exposure_is_skipped_with_reason(dataset, tmp_path, data, cards, raw, message):
    path = _replace_first_exposure(dataset, data, cards, raw)
    manifest = run(dataset, tmp_path / "out")
    ((got_path, reason),) = reasons(manifest, "files_skipped")
    assert got_path == path and message in reason
    assert records_by_id(tmp_path / "out")["good-2"].num_exposures == len(NIGHTS) - 1


@pytest.mark.parametrize(
    "cards, expected",
    [
        ({"MJD-OBS": 55000.25, "DATE-OBS": "2000-01-01T00:00:00"}, 55000.25),  # MJD-OBS preferred
        ({"DATE-OBS": "2009-06-18T06:00:00", "MJD": 1.0}, 55000.25),  # then DATE-OBS
        ({"DATE-OBS": "2009-06-18", "TIME-OBS": "12:00:00"}, 55000.5),  # date + TIME-OBS
        ({"MJD": 55000.125, "JD": 1.0}, 55000.125),  # then MJD
        ({"JD": 2455000.75}, 55000.25),  # then JD
    ],
)
def test_observation_time_keywords(cards, expected):
    assert exposures.observation_mjd(fits.Header(cards)) == pytest.approx(expected, abs=1e-9)


def test_time_in_primary_header_of_compressed_file(tmp_path):
    path = tmp_path / "x.fits"
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(header=fits.Header({"MJD-OBS": 55001.5})),
            fits.ImageHDU(fitsfiles.star_image()),
        ]
    )
    hdul.writeto(path)
    assert exposures.read_exposure(str(path), 64).mjd == 55001.5


def test_bscale_bzero_and_blank(tmp_path):
    raw = np.arange(80 * 80, dtype=np.int16).reshape(80, 80) % 1000
    raw[40, 40] = -999
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 2.0, 10.0, -999
    hdu.header["MJD-OBS"] = 55000.0
    hdu.writeto(tmp_path / "scaled.fits")
    roi = exposures.read_exposure(str(tmp_path / "scaled.fits"), 64).roi
    centre = raw[8:72, 8:72] * 2.0 + 10.0
    finite = np.isfinite(roi)
    assert not finite[32, 32] and finite.sum() == 64 * 64 - 1
    np.testing.assert_array_equal(roi[finite], centre[finite])
    # unsigned 16-bit (BZERO=32768) with BLANK: astropy keeps integers, the reader applies BLANK
    data = np.full((80, 80), 1000, np.uint16)
    data[10:20, 33] = 0
    hdu = fits.PrimaryHDU(data)
    hdu.header["BLANK"], hdu.header["MJD-OBS"] = -32768, 55000.0
    hdu.writeto(tmp_path / "u16.fits")
    roi = exposures.read_exposure(str(tmp_path / "u16.fits"), 64).roi
    assert np.isnan(roi).sum() == 10 and np.nanmax(roi) == 1000.0


def test_image_extension_and_single_plane_cube(tmp_path):
    image = fitsfiles.star_image()
    fitsfiles.write_exposure(tmp_path / "ext.fits", image, {"MJD-OBS": 55000.0}, primary_empty=True)
    fitsfiles.write_exposure(tmp_path / "cube.fits", image[None], {"MJD-OBS": 55000.0})
    for name in ("ext.fits", "cube.fits"):
        roi = exposures.read_exposure(str(tmp_path / name), 64).roi
        np.testing.assert_array_equal(roi, image[8:72, 8:72])


def test_wcs_centres_the_region_on_ra_dec(tmp_path):
    image = fitsfiles.star_image(size=120, x=70.3, y=45.8, flux=50000.0)
    cards = {"MJD-OBS": 55000.0, **fitsfiles.tan_wcs_cards(150.0, 20.0, 70.3, 45.8)}
    fitsfiles.write_exposure(tmp_path / "w.fits", image, cards)
    exposure = exposures.read_exposure(str(tmp_path / "w.fits"), 64, ra=150.0, dec=20.0)
    y, x = np.unravel_index(np.argmax(exposure.roi), exposure.roi.shape)
    assert (x, y) in {(31, 31), (32, 32), (31, 32), (32, 31)}
    np.testing.assert_array_equal(
        exposure.roi, image[14:78, 39:103]
    )  # original values, no resampling
    assert not exposure.padded
    # without ra/dec the image centre is used
    centred = exposures.read_exposure(str(tmp_path / "w.fits"), 64)
    np.testing.assert_array_equal(centred.roi, image[28:92, 28:92])


def test_position_near_edge_is_padded_with_nan_and_outside_is_an_error(tmp_path):
    image = fitsfiles.star_image(size=120)
    fitsfiles.write_exposure(
        tmp_path / "w.fits",
        image,
        {"MJD-OBS": 55000.0, **fitsfiles.tan_wcs_cards(150.0, 20.0, 110.0, 60.0)},
    )
    exposure = exposures.read_exposure(str(tmp_path / "w.fits"), 64, ra=150.0, dec=20.0)
    assert (
        exposure.padded
        and np.isnan(exposure.roi[:, -22:]).all()
        and np.isfinite(exposure.roi[:, :42]).all()
    )
    with pytest.raises(exposures.ExposureError, match="falls outside the 120x120 image"):
        exposures.read_exposure(str(tmp_path / "w.fits"), 64, ra=149.9, dec=20.0)


def test_duplicate_exposure_time_is_skipped(dataset, tmp_path):
    folder = dataset / "images" / "good-2"
    shutil.copy(folder / "e003.fits", folder / "e003-copy.fits")
    manifest = run(dataset, tmp_path / "out")
    ((path, reason),) = reasons(manifest, "files_skipped")
    assert path.endswith("e003.fits") or path.endswith("e003-copy.fits")
    assert "duplicate exposure time" in reason


def test_fewer_than_three_dates_is_dropped(dataset, tmp_path):
    folder = dataset / "images" / "good-2"
    for path in sorted(folder.iterdir())[8:]:
        path.unlink()
    manifest = run(dataset, tmp_path / "out")
    ((_, reason),) = reasons(manifest, "objects_dropped")
    assert reason == "only 2 observation date(s), at least 3 needed"


def test_exposures_within_half_a_day_share_a_date(dataset, tmp_path):
    folder = dataset / "images" / "good-2"
    shutil.rmtree(folder)
    fitsfiles.write_nights(folder, [55000.1, 55000.4, 55000.55, 55001.2, 55003.0, 55003.49])
    run(dataset, tmp_path / "out")
    record = records_by_id(tmp_path / "out")["good-2"]
    np.testing.assert_array_equal(record.date_index, [0, 0, 0, 1, 2, 2])


def test_max_mjd_far_from_any_observation_is_kept_by_default_and_dropped_with_a_tolerance(
    dataset, tmp_path
):
    fitsfiles.write_catalog(
        dataset,
        [
            {"object_id": "good-2", "label": "SN", "max_mjd": NIGHTS[4] + 9.0},
            {"object_id": "CSS071204:100029+071116", "label": "NT"},
        ],
    )
    manifest = run(dataset, tmp_path / "out")  # the contract: nearest date is the maximum
    assert not manifest["problems"]["objects_dropped"]
    record = records_by_id(tmp_path / "out")["good-2"]
    assert record.max_date_index == 1 and not record.max_mjd_estimated
    distance = manifest["max_date_distance"]
    assert distance["objects_with_catalog_max"] == 1 and distance["median_days"] == pytest.approx(
        9.0, abs=0.05
    )
    assert distance["further"] == [{"object_id": "good-2", "days": pytest.approx(9.0, abs=0.05)}]
    manifest = run(
        dataset, tmp_path / "out2", max_date_tolerance_days=5.0
    )  # the paper's stricter rule
    ((_, reason),) = reasons(manifest, "objects_dropped")
    assert "no observation at the date of maximum: nearest exposure is 9.0 d from" in reason
    manifest = run(dataset, tmp_path / "out3", max_date_tolerance_days=10.0)
    assert not manifest["problems"]["objects_dropped"]


def test_max_estimated_from_the_brightest_night(dataset, tmp_path):
    folder = dataset / "images" / "good-2"
    shutil.rmtree(folder)
    fluxes = [2000.0] * 4 + [9000.0] * 4 + [3000.0] * 4
    fluxes[1] = 50000.0  # one outlier exposure (a cosmic ray) must not win on its own
    fitsfiles.write_nights(folder, NIGHTS, flux_per_exposure=fluxes)
    run(dataset, tmp_path / "out")
    record = records_by_id(tmp_path / "out")["good-2"]
    assert record.max_mjd_estimated and record.max_date_index == 1
    assert record.max_mjd == pytest.approx(np.mean(NIGHTS[4:8]))


def test_strict_mode_stops_at_first_problem(dataset, tmp_path):
    _replace_first_exposure(dataset, cards={})
    with pytest.raises(ConversionError, match="strict mode: .*e000.fits: no observation time"):
        run(dataset, tmp_path / "out", strict=True)
    assert not glob.glob(str(tmp_path / "out" / ".*tmp*"))


def test_nothing_usable_is_an_error(dataset, tmp_path):
    for folder in (dataset / "images").iterdir():
        shutil.rmtree(folder)
    with pytest.raises(ConversionError, match="nothing usable was written"):
        run(dataset, tmp_path / "out")


def _wcs_header(extra):
    header = fits.Header(fitsfiles.tan_wcs_cards(150.0, 20.0, 60.0, 60.0))
    header.update(extra)
    return header


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"CD1_1": -5.9e-4, "CD1_2": 3.4e-4, "CD2_1": 3.4e-4, "CD2_2": 5.9e-4},  # rotated 30 degrees
        {
            "CTYPE1": "DEC--TAN",
            "CTYPE2": "RA---TAN",
            "CRVAL1": 20.0,
            "CRVAL2": 150.0,
        },  # swapped axes
        {
            "CTYPE1": "RA---TAN-SIP",
            "CTYPE2": "DEC--TAN-SIP",
            "A_ORDER": 2,
            "B_ORDER": 2,
            "A_2_0": 2e-4,
            "A_0_2": -1e-4,
            "B_1_1": 3e-4,
        },  # SIP distortion
    ],
)
@pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")
def test_fast_wcs_path_agrees_with_astropy(extra):
    header = _wcs_header(extra)
    header["MJD-OBS"], header["OBJECT"] = 55000.0, "unrelated card"
    ra, dec = 150.01, 20.008
    from astropy.wcs import WCS

    wcs = WCS(header)
    world = (dec, ra) if header["CTYPE1"].startswith("DEC") else (ra, dec)
    expected = wcs.all_world2pix([world], 0)[0]
    np.testing.assert_allclose(exposures._sky_position(header, ra, dec), expected, atol=1e-6)


def test_non_celestial_wcs_falls_back_to_the_image_centre():
    header = fits.Header({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR", "CRPIX1": 1.0, "CRPIX2": 1.0})
    assert exposures._sky_position(header, 150.0, 20.0) is None


def test_malformed_wcs_is_reported(dataset, tmp_path):
    path = _replace_first_exposure(
        dataset,
        cards={
            "MJD-OBS": NIGHTS[0],
            **fitsfiles.tan_wcs_cards(150.0, 20.0, 40, 40),
            "CTYPE1": "RA---XYZ",
        },
    )
    fitsfiles.write_catalog(
        dataset, [{"object_id": "good-2", "label": "NT", "ra": 150.0, "dec": 20.0}]
    )
    manifest = run(dataset, tmp_path / "out")
    ((got_path, reason),) = reasons(manifest, "files_skipped")
    assert got_path == path and reason.startswith("unreadable WCS")
