"""The TAO release layout (one multi-extension FITS per object), built by hand in its structure."""

import glob
import os

import numpy as np
import pytest
from astropy.io import fits

from tao_keras import classes
from tfrecords import parser
from tools.conversion import convert, sources

import fitsfiles

MJDS = fitsfiles.four_a_night([0, 30, 61, 90])


def _images(n, bright_night=2, size=64):
    return [
        fitsfiles.star_image(
            size, flux=20000.0 if i // 4 == bright_night else 3000.0, sky=1000.0, seed=i
        )
        for i in range(n)
    ]


@pytest.fixture
def release(tmp_path):
    root = tmp_path / "TAO_transients"
    for folder, crts_id in [
        ("AGN", "CSS080409:154159+253324"),
        ("NON", "NT_000123"),
        ("SN", "CSS100101:000000+000000"),
    ]:
        kind = "non-transient" if folder == "NON" else "transient"
        fitsfiles.write_release_object(
            root / "data" / folder / f"{crts_id}.fits",
            crts_id,
            MJDS,
            _images(len(MJDS)),
            kind=kind,
            header_id="CSS080409:154159+253324" if folder == "NON" else None,
        )
    return root


def convert_release(*inputs, out):
    return convert.convert(
        [str(i) for i in inputs],
        str(out),
        convert.ConvertOptions(workers=1, min_shards=1),
        progress=False,
    )


def read_all(out):
    return {
        r.object_id: r
        for r in parser.read_records(sorted(glob.glob(os.path.join(out, "*.tfrecord"))))
    }


def test_release_layout_is_detected_and_converted(release, tmp_path):
    assert sources.detect_layout(str(release)) == sources.RELEASE_LAYOUT
    manifest = convert_release(release, out=tmp_path / "out")
    assert manifest["layouts"] == ["tao-release"]
    records = read_all(tmp_path / "out")
    labels = {oid: classes.CLASS_NAMES[r.label] for oid, r in records.items()}
    assert labels == {
        "CSS080409:154159+253324": "AGN",
        "NT_000123": "NT",
        "CSS100101:000000+000000": "SN",
    }
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
    fitsfiles.write_release_object(
        other / "data" / "NON" / "NT_9.fits",
        "NT_9",
        MJDS,
        _images(16),
        kind="non-transient",
        header_id="CSS080409:154159+253324",
    )
    manifest = convert_release(release, other, out=tmp_path / "out")
    assert manifest["summary"]["objects_written"] == 4


def test_duplicate_rows_are_dropped_and_counted(release, tmp_path):
    path = release / "data" / "AGN" / "CSS080409:154159+253324.fits"
    rows = [(2 + i, mjd) for i, mjd in enumerate(MJDS)]
    rows.insert(3, (2 + 17, MJDS[2]))  # same exposure listed twice, for another cutout
    rows.insert(9, (2 + 18, MJDS[7]))
    fitsfiles.write_release_object(
        path, "CSS080409:154159+253324", MJDS, _images(19), table_rows=rows
    )
    manifest = convert_release(release, out=tmp_path / "out")
    assert manifest["summary"]["duplicate_exposures_dropped"] == 2
    assert not manifest["problems"]["files_skipped"]
    assert read_all(tmp_path / "out")["CSS080409:154159+253324"].num_exposures == 16


def test_bad_table_row_skips_that_image_only(release, tmp_path):
    path = release / "data" / "SN" / "CSS100101:000000+000000.fits"
    rows = [(2 + i, mjd) for i, mjd in enumerate(MJDS)]
    rows[4] = (99, MJDS[4])
    fitsfiles.write_release_object(
        path, "CSS100101:000000+000000", MJDS, _images(16), table_rows=rows
    )
    manifest = convert_release(release, out=tmp_path / "out")
    (problem,) = manifest["problems"]["files_skipped"]
    assert problem["path"] == f"{path}[HDU 99, table row 4]"
    assert "HDU_Ext 99 is not an image extension of this file (18 HDUs)" == problem["reason"]
    assert read_all(tmp_path / "out")["CSS100101:000000+000000"].num_exposures == 15


def test_file_without_image_table_is_dropped(release, tmp_path):
    path = release / "data" / "SN" / "CSS100101:000000+000000.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((64, 64), np.int16))]).writeto(
        path, overwrite=True
    )
    manifest = convert_release(release, out=tmp_path / "out")
    (problem,) = manifest["problems"]["objects_dropped"]
    assert problem["path"] == str(path)
    assert (
        "expected a primary HDU, an image table in HDU 1 and images after it" in problem["reason"]
    )


def test_unknown_class_folder_is_ignored(release, tmp_path):
    (release / "data" / "QSO").mkdir()
    manifest = convert_release(release, out=tmp_path / "out")
    assert manifest["ignored_folders"] == [os.path.join(str(release), "QSO")]
    assert manifest["summary"]["objects_written"] == 3


def test_smaller_roi_is_centre_cropped(release, tmp_path):
    convert.convert(
        [str(release)],
        str(tmp_path / "out"),
        convert.ConvertOptions(workers=1, min_shards=1, roi_size=32),
        progress=False,
    )
    shards = sorted(glob.glob(str(tmp_path / "out" / "*.tfrecord")))
    record = next(r for r in parser.read_records(shards, roi_size=32) if r.object_id == "NT_000123")
    expected = np.clip(np.round(_images(16)[0]), 0, 65535).astype(np.uint16)[16:48, 16:48]
    np.testing.assert_array_equal(record.images[0], expected)


# --- The release as its authors wrote it (docs/data-format.md, section 2) -------------------------
# One night of the printed example: four images of 06APR02 spread over most of a day, then the
# next night 06APR03 only 0.25 d after the last of them (time gaps alone would merge the two).
APR02 = [53827.43780, 53827.64, 53827.83, 53828.20]
APR03 = [53828.45, 53828.46]
LATER = {
    "06MAR01": [53795.30, 53795.31],
    "06JUN05": [53891.20, 53891.21],
    "06DEC10": [54079.40, 54079.41],
}


def _authors_rows():
    """(hdu_ext, mjd, night) in the order of the image files' names (06APR.., 06DEC.., 06JUN..,
    06MAR..),
    with one exposure listed twice (two cutouts of the same image)."""
    nights = [("06APR02", APR02), ("06APR03", APR03)] + sorted(LATER.items())
    rows, ext = [], 2
    for night, times in sorted(nights):
        for t in times:
            rows.append((ext, t, night))
            ext += 1
    rows.append((ext, APR02[1], "06APR02"))  # the repeated exposure: same MJD, another cutout
    return rows


def _numbered_images(rows):
    """One image per row, its sky level telling which row (HDU) it came from."""
    return [
        fitsfiles.star_image(64, flux=3000.0, sky=1000.0 + 10 * ext, seed=ext) for ext, _, _ in rows
    ]


def test_release_files_as_written_by_its_authors(tmp_path):
    rows = _authors_rows()
    images = _numbered_images(rows)
    sn_id, nt_id = "CSS060402:101010+101010", "nonCSS:101000+101100"
    root = tmp_path / "release"
    fitsfiles.write_release_object(
        root / "data" / "SN" / f"{sn_id}.fits",
        sn_id,
        None,
        images,
        ra=152.5,
        dec=10.25,
        table_rows=rows,
    )
    fitsfiles.write_release_object(
        root / "data" / "NON" / f"{nt_id}.fits",
        nt_id,
        None,
        images,
        ra=152.4,
        dec=10.3,
        table_rows=rows,
        kind="non-transient",
        header_id=sn_id,
    )
    with fits.open(
        root / "data" / "NON" / f"{nt_id}.fits"
    ) as hdul:  # what the fixture must look like
        assert len(hdul[0].header) <= 6 and hdul[1].columns["HDU_Ext"].format == "4A"
        assert hdul[1].columns["MJD"].format == "11A" and "DATE" in hdul[1].columns.names
        assert "RA_(J2000)" in hdul[1].header and "RA_(J2000)" not in hdul[2].header
    manifest = convert_release(root, out=tmp_path / "out")
    assert manifest["summary"]["duplicate_exposures_dropped"] == 2  # once per file
    assert not manifest["problems"]["files_skipped"] and not manifest["problems"]["objects_dropped"]
    records = read_all(tmp_path / "out")
    assert set(records) == {sn_id, nt_id}  # ids from file names, never CRTS_ID
    for oid, label, ra, dec in [(sn_id, "SN", 152.5, 10.25), (nt_id, "NT", 152.4, 10.3)]:
        record = records[oid]
        assert classes.CLASS_NAMES[record.label] == label
        assert (record.ra, record.dec) == (ra, dec)  # from HDU 1's header
        assert record.num_exposures == len(rows) - 1
        assert record.num_dates == 5  # 06APR02 and 06APR03 stay apart
        times = sorted(t for _, t, _ in rows[:-1])
        np.testing.assert_allclose(record.mjd, times)  # sorted by time
        assert list(np.bincount(record.date_index)) == [
            2,
            4,
            2,
            2,
            2,
        ]  # MAR01, APR02, APR03, JUN05, DEC10
        # pixels: each time's image is the one its row points to
        by_time = {t: ext for ext, t, _ in rows[:-1]}
        for i, t in enumerate(record.mjd):
            expected = (
                np.clip(np.round(images[by_time[t] - 2]), 0, 65535)
                .astype(np.uint16)
                .astype(np.float32)
            )
            np.testing.assert_array_equal(record.images[i], expected)


def test_release_position_falls_back_to_an_image_header_then_nan(tmp_path):
    root = tmp_path / "release"
    path = root / "data" / "AGN" / "CSS1.fits"
    fitsfiles.write_release_object(path, "CSS1", MJDS, _images(16), ra=None)
    with fits.open(path, mode="update") as hdul:  # only an image HDU knows it
        hdul[3].header["HIERARCH RA_(J2000)"] = 12.5
        hdul[3].header["HIERARCH DEC_(J2000)"] = -3.0
    fitsfiles.write_release_object(
        root / "data" / "AGN" / "CSS2.fits", "CSS2", MJDS, _images(16), ra=None
    )
    convert_release(root, out=tmp_path / "out")
    records = read_all(tmp_path / "out")
    assert (records["CSS1"].ra, records["CSS1"].dec) == (12.5, -3.0)
    assert np.isnan(records["CSS2"].ra) and np.isnan(records["CSS2"].dec)
    assert records["CSS2"].num_exposures == 16  # still converted, RoIs centred


def test_unparsable_string_cells_skip_that_row_only(tmp_path):
    root = tmp_path / "release"
    path = root / "data" / "NON" / "nonCSS:1.fits"
    fitsfiles.write_release_object(
        path, "nonCSS:1", MJDS, _images(16), kind="non-transient", header_id="CSS9"
    )
    with fits.open(path, mode="update") as hdul:
        hdul[1].data["MJD"][3] = "5382x.1"
        hdul[1].data["HDU_Ext"][5] = "two"
    manifest = convert_release(root, out=tmp_path / "out")
    reasons = sorted(p["reason"] for p in manifest["problems"]["files_skipped"])
    assert reasons == ["HDU_Ext 'two' is not an integer", "MJD '5382x.1' is not a number"]
    assert read_all(tmp_path / "out")["nonCSS:1"].num_exposures == 14


def test_overlapping_nights_merge_and_gaps_are_used_without_labels():
    from tools.conversion import sequences

    mjd = [1.0, 1.1, 1.6, 1.7, 3.0]
    index, merged = sequences.group_nights(mjd, ["a", "a", "b", "b", "c"])
    assert list(index) == [0, 0, 1, 1, 2] and merged == 0  # 0.5 d apart, yet two nights
    index, merged = sequences.group_nights(mjd, ["a", "b", "a", "b", "c"])  # interleaved labels
    assert list(index) == [0, 0, 0, 0, 1] and merged == 1
