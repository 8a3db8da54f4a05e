"""Turn a source model and exposure conditions into raw CSS-like cutouts with a TAN WCS.

Point sources use a two-Gaussian PSF (core + 10% wing), integrated over pixels and
rendered for all stars at once as a separable matrix product; galaxies are elliptical
three-Gaussian approximations of an exponential profile convolved with the PSF. Noise is
Poisson on sky + sources plus read noise; then cosmic rays, bias, 16-bit saturation and
the occasional dead column (flagged through BLANK, read back as NaN).
"""

import numpy as np
from astropy.io import fits
from scipy.special import erf

from tools.simulation import observing as obs

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
PSF_COMPONENTS = ((0.9, 1.0), (0.1, 2.0))  # (flux fraction, sigma multiple)
GALAXY_COMPONENTS = ((0.35, 0.25), (0.5, 0.6), (0.15, 1.2))  # (flux fraction, sigma / r_eff)
BLANK_RAW = -32768  # stored value of physical 0 in uint16 FITS


def field_sources(rng):
    """Neighbouring stars and galaxies of a 5x5 arcmin field (offsets in arcsec east, north).

    Star counts rise as 10^(0.3 m) from 13 to 21.5 mag; nothing within 5 arcsec of the target.
    """
    half = obs.RAW_SIZE * obs.PIXEL_SCALE_ARCSEC / 2.0
    count = rng.poisson(rng.uniform(10, 45))
    lo, hi = 10 ** (0.3 * 13.0), 10 ** (0.3 * 21.5)
    mags = np.log10(lo + rng.uniform(size=count) * (hi - lo)) / 0.3
    offsets = rng.uniform(-half, half, size=(count, 2))
    keep = np.hypot(offsets[:, 0], offsets[:, 1]) > 5.0
    galaxies = []
    for _ in range(rng.poisson(3)):
        offset = rng.uniform(-half, half, size=2)
        if np.hypot(*offset) > 8.0:
            galaxies.append(
                (
                    rng.uniform(18.0, 21.0),
                    rng.uniform(1.0, 4.0),
                    rng.uniform(0.3, 1.0),
                    rng.uniform(0, np.pi),
                    tuple(offset),
                )
            )
    return mags[keep], offsets[keep], galaxies


def _pixel_profiles(centres, sigma, size):
    """[K, size] Gaussian profiles integrated over unit pixels, pixel i spanning [i-0.5, i+0.5]."""
    edges = np.arange(size + 1) - 0.5
    z = (edges[None, :] - np.asarray(centres)[:, None]) / (np.sqrt(2.0) * sigma)
    return 0.5 * np.diff(erf(z), axis=1)


def render_points(image, x, y, flux, fwhm):
    """Add point sources (pixel x, y; electrons) to image [H, W] in place."""
    if len(flux) == 0:
        return
    height, width = image.shape
    for fraction, scale in PSF_COMPONENTS:
        sigma = fwhm * FWHM_TO_SIGMA * scale
        gx = _pixel_profiles(x, sigma, width)
        gy = _pixel_profiles(y, sigma, height)
        image += (gy * (fraction * np.asarray(flux))[:, None]).T @ gx


def render_galaxy(image, x, y, flux, r_eff_px, axis_ratio, position_angle, fwhm):
    """Add an elliptical galaxy (PSF-convolved Gaussian mixture) centred at pixel (x, y)."""
    height, width = image.shape
    c, s = np.cos(position_angle), np.sin(position_angle)
    # Position angle from north (+y) through east (-x).
    major = np.array([-s, c])
    minor = np.array([c, s])
    for g_fraction, g_scale in GALAXY_COMPONENTS:
        a = g_scale * r_eff_px
        b = a * axis_ratio
        base = a**2 * np.outer(major, major) + b**2 * np.outer(minor, minor)
        for p_fraction, p_scale in PSF_COMPONENTS:
            cov = base + (fwhm * FWHM_TO_SIGMA * p_scale) ** 2 * np.eye(2)
            half = int(np.ceil(4.0 * np.sqrt(np.linalg.eigvalsh(cov).max())))
            x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, width)
            y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, height)
            if x0 >= x1 or y0 >= y1:
                continue
            gx, gy = np.meshgrid(np.arange(x0, x1) - x, np.arange(y0, y1) - y)
            inv = np.linalg.inv(cov)
            q = inv[0, 0] * gx**2 + 2 * inv[0, 1] * gx * gy + inv[1, 1] * gy**2
            norm = flux * g_fraction * p_fraction / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
            image[y0:y1, x0:x1] += norm * np.exp(-0.5 * q)


def _to_pixels(centre, offset_arcsec):
    """Sky offsets (arcsec east, north) -> pixel coordinates; north up, east left."""
    offset = np.atleast_2d(offset_arcsec) / obs.PIXEL_SCALE_ARCSEC
    return centre[0] - offset[:, 0], centre[1] + offset[:, 1]


def render_exposure(rng, exposure, source, index, field):
    """Raw cutout (uint16 [120, 120]) of exposure `index` and the target's true magnitude."""
    size = obs.RAW_SIZE
    centre = np.array([(size - 1) / 2.0, (size - 1) / 2.0]) + np.asarray(exposure.offset_px)
    star_mags, star_offsets, galaxies = field
    electrons = np.full((size, size), obs.sky_electrons_per_pixel(exposure.sky_mag_arcsec2))

    mags = star_mags
    offsets = star_offsets
    target_mag = float(source.point_mag[index])
    if np.isfinite(target_mag):
        mags = np.append(mags, target_mag)
        offsets = np.vstack([offsets, source.point_offset[index]])
    x, y = _to_pixels(centre, offsets)
    render_points(electrons, x, y, obs.electrons(mags, exposure.transparency), exposure.fwhm_px)

    extended = list(galaxies)
    if source.host is not None:
        h = source.host
        extended.append((h.mag, h.r_eff_arcsec, h.axis_ratio, h.position_angle, h.offset_arcsec))
    for mag, r_eff, q, pa, offset in extended:
        gx, gy = _to_pixels(centre, offset)
        render_galaxy(
            electrons,
            gx[0],
            gy[0],
            obs.electrons(mag, exposure.transparency),
            r_eff / obs.PIXEL_SCALE_ARCSEC,
            q,
            pa,
            exposure.fwhm_px,
        )

    counts = rng.poisson(electrons).astype(float) + rng.normal(
        0.0, obs.READ_NOISE_E, electrons.shape
    )
    for _ in range(rng.poisson(0.5)):  # cosmic rays: short sharp tracks
        length = rng.integers(1, 5)
        r0, c0 = rng.integers(0, size, size=2)
        dr, dc = rng.integers(-1, 2, size=2)
        rows = np.clip(r0 + dr * np.arange(length), 0, size - 1)
        cols = np.clip(c0 + dc * np.arange(length), 0, size - 1)
        counts[rows, cols] += rng.uniform(500.0, 20000.0, size=length)
    adu = np.clip(np.round(counts / obs.GAIN + exposure.bias_adu), 1, obs.SATURATION_ADU)
    if rng.uniform() < 0.02:  # dead column -> BLANK
        adu[:, rng.integers(0, size)] = 0
    return adu.astype(np.uint16), target_mag


def exposure_header(ra, dec, exposure, date_obs, object_id, true_mag):
    """FITS header with the TAN WCS that puts (ra, dec) where it was rendered."""
    size = obs.RAW_SIZE
    scale = obs.PIXEL_SCALE_ARCSEC / 3600.0
    header = fits.Header()
    header["BLANK"] = (BLANK_RAW, "dead pixels")
    header["OBJECT"] = object_id
    header["TELESCOP"] = "CSS 0.7m Schmidt (simulated)"
    header["FILTER"] = "none (unfiltered, V-like)"
    header["EXPTIME"] = (obs.EXPOSURE_S, "s")
    header["MJD-OBS"] = (exposure.mjd, "start of exposure, UTC")
    header["DATE-OBS"] = date_obs
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN", "DEC--TAN"
    header["CRVAL1"], header["CRVAL2"] = ra, dec
    header["CRPIX1"] = (size - 1) / 2.0 + exposure.offset_px[0] + 1.0
    header["CRPIX2"] = (size - 1) / 2.0 + exposure.offset_px[1] + 1.0
    header["CD1_1"], header["CD1_2"], header["CD2_1"], header["CD2_2"] = -scale, 0.0, 0.0, scale
    header["RADESYS"] = "ICRS"
    header["GAIN"] = (obs.GAIN, "e-/ADU")
    header["RDNOISE"] = (obs.READ_NOISE_E, "e-")
    header["SATURATE"] = obs.SATURATION_ADU
    header["MAGZPT"] = (obs.ZERO_POINT, "mag giving 1 e- at transparency 1")
    header["FWHM"] = (round(exposure.fwhm_px, 3), "simulated PSF FWHM, pixels")
    header["SKYMAG"] = (round(exposure.sky_mag_arcsec2, 3), "simulated sky, mag/arcsec2")
    header["TRANSPAR"] = (round(exposure.transparency, 4), "simulated transparency")
    header["SIMMAG"] = (true_mag if np.isfinite(true_mag) else -1.0, "true target mag (-1: absent)")
    return header
