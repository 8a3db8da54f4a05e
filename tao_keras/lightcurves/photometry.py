"""Forced aperture photometry of the RoI's central source with photutils, and nightly light curves.

The converter centres each RoI on the object's coordinates (within half a pixel), so the source
is measured at the centre without fitting: a circular aperture, the local background as the
sigma-clipped median of an annulus, and errors from the background scatter plus the source's
Poisson noise (photutils.utils.calc_total_error). Bad (NaN) pixels are masked.
"""

import dataclasses
import warnings

import numpy as np
from astropy.stats import SigmaClip
from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
from photutils.utils import calc_total_error

ZERO_POINT = 25.0  # instrumental: m = 25 - 2.5 log10(flux in ADU); no field calibration


@dataclasses.dataclass(frozen=True)
class PhotometryConfig:
    """Aperture radius ~1.2x the median seeing FWHM of CSS-like data (2.5 px); annulus clear of the
    PSF."""

    radius: float = 3.0
    annulus: tuple = (8.0, 14.0)
    gain: float = 2.0  # e-/ADU, for the source's Poisson noise
    clip_sigma: float = 3.0

    @property
    def minimum_roi(self):
        """The smallest RoI side (pixels, odd) that holds the whole annulus around the centre."""
        return 2 * int(np.ceil(self.annulus[1])) + 1


def measure(images, config=PhotometryConfig()):
    """Background-subtracted central flux and its error per image: images [n, H, W] -> ([n], [n])
    ADU.

    An image whose aperture or annulus has no finite pixel gives NaN flux and error.
    """
    images = np.asarray(images, np.float64)
    n, height, width = images.shape
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    aperture = CircularAperture(centre, r=config.radius)
    annulus = CircularAnnulus(centre, r_in=config.annulus[0], r_out=config.annulus[1])
    clip = SigmaClip(sigma=config.clip_sigma, maxiters=5)
    flux, error = np.full(n, np.nan), np.full(n, np.nan)
    for i, image in enumerate(images):
        bad = ~np.isfinite(image)
        if bad.all():
            continue
        background = ApertureStats(image, annulus, mask=bad, sigma_clip=clip)
        if not np.isfinite(background.median) or not np.isfinite(background.std):
            continue
        data = np.where(bad, background.median, image) - background.median
        total_error = calc_total_error(
            np.clip(data, 0, None), np.full_like(data, background.std), config.gain
        )
        table = aperture_photometry(data, aperture, error=total_error, mask=bad)
        flux[i], error[i] = float(table["aperture_sum"][0]), float(table["aperture_sum_err"][0])
    return flux, error


def ranking_flux(images, config=PhotometryConfig()):
    """A fast background-subtracted central flux per image [n, H, W] -> [n] (ADU), with the
    same aperture and annulus as `measure` but whole pixels, a plain median background and
    no errors, vectorized over images: a statistic to rank dates by brightness (the
    converter's estimate of the date of maximum runs on every image of the TAO release, where
    `measure` would double the conversion time), not calibrated photometry. NaN-safe.
    """
    images = np.asarray(images, np.float64)
    n, height, width = images.shape
    y, x = np.mgrid[:height, :width]
    r = np.hypot(x - (width - 1) / 2.0, y - (height - 1) / 2.0)
    aperture = r <= config.radius
    annulus = (r >= config.annulus[0]) & (r <= config.annulus[1])
    flat = images.reshape(n, -1)
    with warnings.catch_warnings():  # all-NaN images give NaN, as documented
        warnings.simplefilter("ignore", RuntimeWarning)
        background = np.nanmedian(flat[:, annulus.ravel()], axis=1)
        inside = flat[:, aperture.ravel()] - background[:, None]
        return np.nanmean(inside, axis=1) * aperture.sum()


def nightly(mjd, flux, error, date_index):
    """Inverse-variance mean of each date's fluxes -> (mjd [D], flux [D], error [D]) over dates
    with at least one measurement; mjd is the mean time of the date's measured exposures."""
    mjd, flux, error = (np.asarray(a, np.float64) for a in (mjd, flux, error))
    date_index = np.asarray(date_index)
    good = np.isfinite(flux) & np.isfinite(error) & (error > 0)
    dates = np.unique(date_index[good])
    out_t, out_f, out_e = [], [], []
    for d in dates:
        sel = good & (date_index == d)
        w = 1.0 / error[sel] ** 2
        out_t.append(mjd[sel].mean())
        out_f.append(np.sum(w * flux[sel]) / w.sum())
        out_e.append(1.0 / np.sqrt(w.sum()))
    return np.array(out_t), np.array(out_f), np.array(out_e)


def to_magnitudes(flux, error):
    """Instrumental magnitudes and errors; a flux below its 1σ error is replaced by that error
    (a 1σ limiting magnitude), so non-detections stay finite and faint."""
    floor = np.maximum(flux, error)
    mag = ZERO_POINT - 2.5 * np.log10(floor)
    magerr = 2.5 / np.log(10) * error / floor
    return mag, magerr
