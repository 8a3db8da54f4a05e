"""The TAO release layout (one multi-extension FITS per object), built by hand in its structure."""

import glob
import os

import numpy as np
import pytest
from astropy.io import fits

import fitsfiles
from tao_keras import classes
from tfrecords import parser
from tools.conversion import convert, sources

MJDS = fitsfiles.four_a_night([0, 30, 61, 90])


def _images(n, bright_night=2, size=64):
    return [fitsfiles.star_image(size, flux=20000.0 if i // 4 == bright_night else 3000.0, sky=1000.0, seed=i)
            for i in range(n)]


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "TAO_transients"
    for folder, crts_id in [("AGN", "CSS080409:154159+253324"), ("NON", "NT_000123"), ("SN", "CSS100101:000000+000000")]:
        fitsfiles.write_release_object(root / "data" / folder / f"{crts_id}.fits", crts_id, MJDS, _images(len(MJDS)))
    return root


def convert_release(*inputs, out):
    return convert.convert([str(i) for i in inputs], str(out),
                           convert.ConvertOptions(workers=1, min_shards=1), progress=False)


def read_all(out):
    return {r.object_id: r for r in parser.read_records(sorted(glob.glob(os.path.join(out, "*.tfrecord"))))}


def test_release_layout_is_detected_and_converted(release, tmp_path):
    assert sources.detect_layout(str(release)) == sources.RELEASE_LAYOUT
    manifest = convert_release(release, out=tmp_path / "out")
    assert manifest["layouts"] == ["tao-release"]
    records = read_all(tmp_path / "out")
    labels = {oid: classes.CLASS_NAMES[r.label] for oid, r in records.items()}
    assert labels == {"CSS080409:154159+253324": "AGN", "NT_000123": "NT", "CSS100101:000000+000000": "SN"}
    record = records["CSS080409:154159+253324"]
    assert record.num_exposures == 16 and record.num_dates == 4
    np.testing.assert_array_equal(record.mjd, MJDS)
    assert (record.ra, record.dec) == (150.0, 20.0)
    # int16 with BZERO=32768 read back as the original unsigned values
    expected = np.clip(np.round(_images(16)[5]), 0, 65535).astype(np.uint16).astype(np.float32)
    np.testing.assert_array_equal(record.images[5], expected)
    # no max_mjd in the release: estimated from the images, the bright night
    assert record.max_mjd_estimated and record.max_date_index == 2


def test_release_root_may_be_given_without_data_folder(release, tmp_path):
    manifest = convert_release(release / "data", out=tmp_path / "out")
    assert manifest["summary"]["objects_written"] == 3


def test_transients_and_non_transients_repositories_together(release, tmp_path):
    other = tmp_path / "TAO_non-transients"
    fitsfiles.write_release_object(other / "data" / "NON" / "NT_9.fits", "NT_9", MJDS, _images(16))
    manifest = convert_release(release, other, out=tmp_path / "out")
    assert manifest["summary"]["objects_written"] == 4


def test_duplicate_rows_are_dropped_and_counted(release, tmp_path):
    path = release / "data" / "AGN" / "CSS080409:154159+253324.fits"
    rows = [(2 + i, mjd) for i, mjd in enumerate(MJDS)]
    rows.insert(3, (2 + 17, MJDS[2]))           # same exposure listed twice, for another cutout
    rows.insert(9, (2 + 18, MJDS[7]))
    fitsfiles.write_release_object(path, "CSS080409:154159+253324", MJDS, _images(19), table_rows=rows)
    manifest = convert_release(release, out=tmp_path / "out")
    assert manifest["summary"]["duplicate_exposures_dropped"] == 2
    assert not manifest["problems"]["files_skipped"]
    assert read_all(tmp_path / "out")["CSS080409:154159+253324"].num_exposures == 16


def test_bad_table_row_skips_that_image_only(release, tmp_path):
    path = release / "data" / "SN" / "CSS100101:000000+000000.fits"
    rows = [(2 + i, mjd) for i, mjd in enumerate(MJDS)]
    rows[4] = (99, MJDS[4])
    fitsfiles.write_release_object(path, "CSS100101:000000+000000", MJDS, _images(16), table_rows=rows)
    manifest = convert_release(release, out=tmp_path / "out")
    (problem,) = manifest["problems"]["files_skipped"]
    assert problem["path"] == f"{path}[HDU 99, table row 4]"
    assert "HDU_Ext 99 is not an image extension of this file (18 HDUs)" == problem["reason"]
    assert read_all(tmp_path / "out")["CSS100101:000000+000000"].num_exposures == 15


def test_file_without_image_table_is_dropped(release, tmp_path):
    path = release / "data" / "SN" / "CSS100101:000000+000000.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((64, 64), np.int16))]).writeto(path, overwrite=True)
    manifest = convert_release(release, out=tmp_path / "out")
    (problem,) = manifest["problems"]["objects_dropped"]
    assert problem["path"] == str(path)
    assert "expected a primary HDU, an image table in HDU 1 and images after it" in problem["reason"]


def test_unknown_class_folder_is_ignored(release, tmp_path):
    (release / "data" / "QSO").mkdir()
    manifest = convert_release(release, out=tmp_path / "out")
    assert manifest["ignored_folders"] == [os.path.join(str(release), "QSO")]
    assert manifest["summary"]["objects_written"] == 3


def test_smaller_roi_is_centre_cropped(release, tmp_path):
    convert.convert([str(release)], str(tmp_path / "out"),
                    convert.ConvertOptions(workers=1, min_shards=1, roi_size=32), progress=False)
    shards = sorted(glob.glob(str(tmp_path / "out" / "*.tfrecord")))
    record = next(r for r in parser.read_records(shards, roi_size=32) if r.object_id == "NT_000123")
    expected = np.clip(np.round(_images(16)[0]), 0, 65535).astype(np.uint16)[16:48, 16:48]
    np.testing.assert_array_equal(record.images[0], expected)
