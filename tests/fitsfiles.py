"""Build small FITS inputs by hand, in exactly the documented layouts, for converter tests."""

import csv
import os

import numpy as np
from astropy.io import fits

CATALOG_FIELDS = ("object_id", "label", "ra", "dec", "max_mjd", "split")


def write_catalog(directory, rows, fields=CATALOG_FIELDS):
    os.makedirs(os.path.join(directory, "images"), exist_ok=True)
    with open(os.path.join(directory, "catalog.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def star_image(size=80, x=None, y=None, flux=5000.0, sky=100.0, seed=0):
    """Sky + one Gaussian star at pixel (x, y) (default: centre), float32 [size, size]."""
    rng = np.random.default_rng(seed)
    x = (size - 1) / 2.0 if x is None else x
    y = (size - 1) / 2.0 if y is None else y
    yy, xx = np.mgrid[:size, :size]
    star = flux / (2 * np.pi * 1.2**2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2**2))
    return (sky + star + rng.normal(0, 3, (size, size))).astype(np.float32)


def tan_wcs_cards(ra, dec, x_pix, y_pix, scale_arcsec=2.5):
    """TAN WCS placing (ra, dec) at 0-based pixel (x_pix, y_pix)."""
    s = scale_arcsec / 3600.0
    return {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": ra,
        "CRVAL2": dec,
        "CRPIX1": x_pix + 1.0,
        "CRPIX2": y_pix + 1.0,
        "CD1_1": -s,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": s,
    }


def write_exposure(path, data, cards=None, primary_empty=False, compress=False):
    """One exposure file; cards go to the image HDU. primary_empty puts the image in HDU 1."""
    header = fits.Header()
    for key, value in (cards or {}).items():
        header[key] = value
    if compress:
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data=data, header=header)])
    elif primary_empty:
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data=data, header=header)])
    else:
        hdul = fits.HDUList([fits.PrimaryHDU(data=data, header=header)])
    hdul.writeto(path, overwrite=True)


def write_nights(folder, mjds, size=80, flux_per_exposure=None, cards=None):
    """Exposures at the given MJDs (MJD-OBS), optionally with a per-exposure star flux."""
    os.makedirs(folder, exist_ok=True)
    for i, mjd in enumerate(mjds):
        flux = 5000.0 if flux_per_exposure is None else flux_per_exposure[i]
        write_exposure(
            os.path.join(folder, f"e{i:03d}.fits"),
            star_image(size, flux=flux, seed=i),
            {"MJD-OBS": float(mjd), **(cards or {})},
        )


def four_a_night(nights, start=55000.2):
    """4 exposures 10 minutes apart on each night offset (days) from start."""
    return [start + n + k * 10 / 1440 for n in nights for k in range(4)]


def night_label(mjd):
    """The release's night label 'YYMMMDD' (e.g. '06APR02') of an exposure time: the UT date
    7 hours earlier, Arizona's local date at the evening's start."""
    from astropy.time import Time

    return Time(mjd - 7 / 24, format="mjd").datetime.strftime("%y%b%d").upper()


def write_release_object(
    path,
    crts_id,
    mjds,
    images,
    ra=150.0,
    dec=20.0,
    table_rows=None,
    kind="transient",
    header_id=None,
):
    """A TAO-release object file written the way the release's authors wrote theirs (fitsio:
    the table first, with the object's metadata in its header, so that fitsio puts an empty
    primary HDU in front; then one 16-bit image HDU per exposure).

    kind "transient": columns HDU_Ext (int64), Set_Number, Date, MJD (float64), Field_ID,
    Obs_In_Seq, Cutout; image HDUs repeat the metadata. kind "non-transient": HDU_Ext and MJD
    as strings, the night column DATE, no Set_Number/Obs_In_Seq, image HDUs without metadata,
    and CRTS_ID naming another object (header_id). table_rows: (hdu_ext, mjd[, night]) per
    row, overriding one row per image in the order given; ra/dec None leave them out.
    """
    import fitsio

    rows = table_rows or [(2 + i, mjd) for i, mjd in enumerate(mjds)]
    rows = [(r[0], r[1], r[2] if len(r) > 2 else night_label(r[1])) for r in rows]
    n = len(rows)
    header = [{"name": "CRTS_ID", "value": header_id or crts_id}]
    if ra is not None:
        header += [{"name": "RA_(J2000)", "value": ra}, {"name": "DEC_(J2000)", "value": dec}]
    header.append({"name": "N_IMAGES", "value": len(images)})
    if kind == "transient":
        header += [
            {"name": "UT_DATE", "value": "110101"},
            {"name": "MAG", "value": 18.5},
            {"name": "CLASS", "value": "AGN? SDSS 22,1 mag Galaxy"},
        ]
        table = np.zeros(
            n,
            dtype=[
                ("HDU_Ext", "i8"),
                ("Set_Number", "S2"),
                ("Date", "S7"),
                ("MJD", "f8"),
                ("Field_ID", "S6"),
                ("Obs_In_Seq", "S4"),
                ("Cutout", "S4"),
            ],
        )
        table["HDU_Ext"] = [r[0] for r in rows]
        table["MJD"] = [r[1] for r in rows]
        table["Date"] = [r[2] for r in rows]
        table["Set_Number"] = "1"
        table["Obs_In_Seq"] = [str(i % 4 + 1) for i in range(n)]
    elif kind == "non-transient":
        header.append({"name": "IMG_REF", "value": "N17001_120.fits"})
        table = np.zeros(
            n,
            dtype=[
                ("HDU_Ext", "S4"),
                ("MJD", "S11"),
                ("DATE", "S7"),
                ("Field_ID", "S6"),
                ("Cutout", "S4"),
            ],
        )
        table["HDU_Ext"] = [f"{r[0]:<4d}" for r in rows]
        table["MJD"] = [f"{r[1]:.5f}" for r in rows]
        table["DATE"] = [r[2] for r in rows]
    else:
        raise ValueError(kind)
    table["Field_ID"] = "N17001"
    table["Cutout"] = "1"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(table, header=header)
        for image in images:
            pixels = np.clip(np.round(image), 0, 65535).astype(np.uint16)  # BITPIX 16, BZERO 32768
            f.write(pixels, header=header if kind == "transient" else None)
