"""A catalog-layout dataset written by someone else, with every problem docs/data-format.md lists.

It must convert without edits: each problem reported with its path, every good object and
exposure kept.
"""

import glob
import gzip
import os

import numpy as np
from astropy.io import fits
from astropy.time import Time

from tao_keras import classes
from tfrecords import parser
from tools.conversion import convert

import fitsfiles

NIGHTS = fitsfiles.four_a_night([0, 11, 30, 62])  # 16 exposures, 4 dates


def _write(folder, i, mjd, style, ra=None, dec=None):
    """Exposure i in one of several styles another pipeline might use."""
    image = fitsfiles.star_image(120, seed=i)
    cards = {}
    if ra is not None:
        cards.update(fitsfiles.tan_wcs_cards(ra, dec, 59.5, 59.5))
    if style == "date+time":
        iso = Time(mjd, format="mjd").isot
        cards.update({"DATE-OBS": iso[:10], "TIME-OBS": iso[11:]})
    elif style == "jd":
        cards["JD"] = mjd + 2400000.5
    else:
        cards["MJD-OBS"] = mjd
    path = os.path.join(folder, f"{os.path.basename(folder)}_{i:02d}")
    if style == "gz":
        fitsfiles.write_exposure(path + ".fits", image, cards)
        with open(path + ".fits", "rb") as f, gzip.open(path + ".fits.gz", "wb") as g:
            g.write(f.read())
        os.remove(path + ".fits")
    elif style == "fz":
        fitsfiles.write_exposure(path + ".fz", image, cards, compress=True)
    else:
        fitsfiles.write_exposure(path + ".fit", image.astype(">f4"), cards)


def test_foreign_dataset_converts_without_edits(tmp_path):
    root = tmp_path / "survey-export"
    images = root / "images"
    good = {  # object id -> (label as written, style)
        "ZTF21aaaaaaa": ("Supernova", "date+time"),
        "CSS090101:010101+010101": ("blazar", "jd"),
        "gaia-1.2+x": ("non_transient", "gz"),
        "ps1_77": ("AGN", "fz"),
        "unlabelled.1": ("", "mjd"),
    }
    for k, (oid, (label, style)) in enumerate(good.items()):
        folder = images / oid
        folder.mkdir(parents=True)
        for i, mjd in enumerate(NIGHTS):
            _write(str(folder), i, mjd, style, ra=10.0 + k, dec=-5.0)
        (folder / "README.txt").write_text("ignored: not an exposure")
    expected_problems = []

    # files with problems, inside otherwise good objects
    bad = images / "ZTF21aaaaaaa"
    (bad / "broken.fits").write_bytes(b"SIMPLE  = garbage" * 300)
    expected_problems.append(("file", str(bad / "broken.fits"), "unreadable FITS file"))
    fitsfiles.write_exposure(bad / "notime.fits", fitsfiles.star_image(120), {})
    expected_problems.append(("file", str(bad / "notime.fits"), "no observation time"))
    fitsfiles.write_exposure(
        bad / "tiny.fits", np.zeros((30, 30), np.float32), {"MJD-OBS": 55100.3}
    )
    expected_problems.append(("file", str(bad / "tiny.fits"), "smaller than the 64x64"))
    fitsfiles.write_exposure(
        bad / "blank.fits", np.full((120, 120), np.nan, np.float32), {"MJD-OBS": 55100.4}
    )
    expected_problems.append(("file", str(bad / "blank.fits"), "NaN or blank"))

    # objects with problems
    few = images / "two-nights"
    few.mkdir()
    for i, mjd in enumerate(NIGHTS[:8]):
        _write(str(few), i, mjd, "mjd")
    expected_problems.append(("object", str(few), "only 2 observation date"))
    late = images / "missed-max"
    late.mkdir()
    for i, mjd in enumerate(NIGHTS):
        _write(str(late), i, mjd, "mjd")
    expected_problems.append(("object", str(late), "no observation at the date of maximum"))
    expected_problems.append(("object", str(images / "no-folder"), "no image folder"))
    (images / "not-in-catalog").mkdir()

    # the catalog: BOM, CRLF, columns in another order, extra columns, bad rows
    lines = ["dec,extra_column,label,object_id,ra,max_mjd"]
    for k, (oid, (label, _)) in enumerate(good.items()):
        lines.append(f"-5.0,whatever,{label},{oid},{10.0 + k},")
    lines += [
        "-5.0,,SN,two-nights,15.0,",
        f"-5.0,,CV,missed-max,16.0,{NIGHTS[-1] + 40}",
        "-5.0,,CV,no-folder,17.0,",
        "-5.0,,SN,../etc,18.0,",
        "-5.0,,pulsar,pulsar-1,19.0,",
        "95.0,,SN,bad-dec,20.0,",
    ]
    (root / "catalog.csv").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    expected_rows = ["is not allowed", "unknown label 'pulsar'", "dec=95.0 outside"]

    options = convert.ConvertOptions(
        workers=2, min_shards=1, max_date_tolerance_days=5.0
    )  # the paper's rule
    manifest = convert.convert([str(root)], str(tmp_path / "out"), options, progress=False)
    problems = manifest["problems"]
    reported = [("file", p["path"], p["reason"]) for p in problems["files_skipped"]] + [
        ("object", p["path"], p["reason"]) for p in problems["objects_dropped"]
    ]
    assert len(reported) == len(expected_problems)
    for kind, path, text in expected_problems:
        assert any(k == kind and p == path and text in r for k, p, r in reported), (
            kind,
            path,
            text,
        )
    assert [
        any(text in p["reason"] for p in problems["rows_rejected"]) for text in expected_rows
    ] == [True] * 3
    assert len(problems["rows_rejected"]) == 3
    assert manifest["ignored_folders"] == [os.path.join(str(root), "not-in-catalog")]

    records = {
        r.object_id: r
        for r in parser.read_records(sorted(glob.glob(str(tmp_path / "out" / "*.tfrecord"))))
    }
    assert set(records) == set(good)  # nothing else lost
    for oid, record in records.items():
        assert record.num_exposures == len(NIGHTS) and record.num_dates == 4
        np.testing.assert_allclose(record.mjd, NIGHTS, atol=2e-8)  # JD and ISO round trips: < 2 ms
    labels = {
        oid: (classes.CLASS_NAMES[r.label] if r.label >= 0 else None) for oid, r in records.items()
    }
    assert labels == {
        "ZTF21aaaaaaa": "SN",
        "CSS090101:010101+010101": "BZ",
        "gaia-1.2+x": "NT",
        "ps1_77": "AGN",
        "unlabelled.1": None,
    }
    # tile-compressed and gzipped input: the RoI holds the values astropy decompresses
    for oid, pattern in (("ps1_77", "*.fz"), ("gaia-1.2+x", "*.fits.gz")):
        first = sorted(glob.glob(str(images / oid / pattern)))[0]
        np.testing.assert_array_equal(records[oid].images[0], fits.getdata(first)[28:92, 28:92])
