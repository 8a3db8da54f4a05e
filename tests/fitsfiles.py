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
    star = flux / (2 * np.pi * 1.2 ** 2) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.2 ** 2))
    return (sky + star + rng.normal(0, 3, (size, size))).astype(np.float32)


def tan_wcs_cards(ra, dec, x_pix, y_pix, scale_arcsec=2.5):
    """TAN WCS placing (ra, dec) at 0-based pixel (x_pix, y_pix)."""
    s = scale_arcsec / 3600.0
    return {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
            "CRPIX1": x_pix + 1.0, "CRPIX2": y_pix + 1.0, "CD1_1": -s, "CD1_2": 0.0,
            "CD2_1": 0.0, "CD2_2": s}


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
        write_exposure(os.path.join(folder, f"e{i:03d}.fits"), star_image(size, flux=flux, seed=i),
                       {"MJD-OBS": float(mjd), **(cards or {})})


def four_a_night(nights, start=55000.2):
    """4 exposures 10 minutes apart on each night offset (days) from start."""
    return [start + n + k * 10 / 1440 for n in nights for k in range(4)]


def write_release_object(path, crts_id, mjds, images, ra=150.0, dec=20.0, table_rows=None):
    """A TAO-release object file: empty primary with HIERARCH metadata, image table, int16 images.

    table_rows: optional list of (hdu_ext, mjd) overriding the default one row per image.
    """
    primary = fits.PrimaryHDU()
    h = primary.header
    h["HIERARCH CRTS_ID"] = crts_id
    h["HIERARCH RA_(J2000)"] = ra
    h["HIERARCH DEC_(J2000)"] = dec
    h["HIERARCH N_IMAGES"] = len(images)
    h["HIERARCH UT_DATE"] = "110101"
    h["HIERARCH MAG"] = 18.5
    h["HIERARCH CLASS"] = "AGN? SDSS 22,1 mag Galaxy"
    rows = table_rows or [(2 + i, mjd) for i, mjd in enumerate(mjds)]
    n = len(rows)
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="HDU_Ext", format="J", array=np.array([r[0] for r in rows])),
        fits.Column(name="Set_Number", format="J", array=np.arange(n)),
        fits.Column(name="Date", format="7A", array=np.array(["11JAN01"] * n)),
        fits.Column(name="MJD", format="D", array=np.array([r[1] for r in rows], float)),
        fits.Column(name="Field_ID", format="12A", array=np.array(["N17001"] * n)),
        fits.Column(name="Obs_In_Seq", format="J", array=np.arange(n) % 4 + 1),
        fits.Column(name="Cutout", format="20A", array=np.array(["cut"] * n)),
    ])
    hdus = [primary, table]
    for image in images:
        # 16-bit integers with BZERO = 32768 (astropy writes uint16 that way)
        hdus.append(fits.ImageHDU(data=np.clip(np.round(image), 0, 65535).astype(np.uint16)))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
