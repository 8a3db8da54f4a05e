"""Catalina Sky Survey observing model: camera, night schedule and per-exposure conditions.

Times are MJD (UTC). The schedule follows the survey's habits: a field is observed while
it is away from the Sun, not in the Arizona monsoon shutdown, not near full Moon, on an
irregular subset of those nights, usually 4 exposures ~10 minutes apart.
"""

import dataclasses

import numpy as np

PIXEL_SCALE_ARCSEC = 2.5
RAW_SIZE = 120  # raw cutout side, pixels
EXPOSURE_S = 30.0
ZERO_POINT = 26.5  # magnitude giving 1 electron in one exposure at transparency 1
GAIN = 2.0  # electrons per ADU
READ_NOISE_E = 10.0
SATURATION_ADU = 65535
WINDOW_DAYS = 3 * 365.25  # the paper's three-year window, maximum in year 2
SYNODIC_MONTH = 29.530589
NEW_MOON_MJD = 51550.26  # 2000-01-06 18:14 UTC
MONSOON_DAY_OF_YEAR = (191, 236)  # ~10 July to ~24 August: CSS closes for the monsoon


@dataclasses.dataclass(frozen=True)
class Exposure:
    """Conditions of one exposure: time, seeing, sky, transparency, pointing offset (px)."""

    mjd: float
    night: int
    fwhm_px: float
    sky_mag_arcsec2: float
    transparency: float
    bias_adu: float
    offset_px: tuple  # where the catalogue position falls, relative to the cutout centre


def allowed_nights(ra_deg, start_mjd, end_mjd):
    """Integer MJDs (UT date at 0h) on which the field can be observed from Arizona."""
    nights = np.arange(np.ceil(start_mjd), np.floor(end_mjd))
    sun_ra = (280.46 + 0.9856474 * (nights - 51544.5)) % 360.0
    separation = np.abs((ra_deg - sun_ra + 180.0) % 360.0 - 180.0)
    day_of_year = (nights - 51544.5) % 365.25
    moon_phase = (nights + 0.3 - NEW_MOON_MJD) % SYNODIC_MONTH
    ok = separation > 75.0
    ok &= ~((day_of_year >= MONSOON_DAY_OF_YEAR[0]) & (day_of_year <= MONSOON_DAY_OF_YEAR[1]))
    ok &= np.abs(moon_phase - SYNODIC_MONTH / 2) > 3.5
    return nights[ok]


def moon_illumination(mjd):
    phase = (np.asarray(mjd) - NEW_MOON_MJD) % SYNODIC_MONTH
    return 0.5 * (1.0 - np.cos(2 * np.pi * phase / SYNODIC_MONTH))


def choose_nights(rng, candidates, num_nights, must_include=None, avoid_near=None, avoid_days=0.0):
    """Pick an irregular, sorted subset of candidate nights.

    must_include: a night that is always observed (the date of maximum);
    avoid_near/avoid_days: keep every chosen night at least avoid_days away from a time.
    """
    pool = np.asarray(candidates)
    if avoid_near is not None:
        pool = pool[np.abs(pool - avoid_near) >= avoid_days]
    if must_include is not None:
        pool = pool[pool != must_include]
    extra = num_nights - (must_include is not None)
    chosen = rng.choice(pool, size=min(max(extra, 0), len(pool)), replace=False)
    if must_include is not None:
        chosen = np.append(chosen, must_include)
    return np.sort(chosen)


def num_exposures_per_night(rng, num_nights):
    """Usually 4 (CRTS practice), sometimes fewer or 5."""
    return rng.choice([1, 2, 3, 4, 5], size=num_nights, p=[0.04, 0.06, 0.15, 0.70, 0.05])


def schedule_exposures(rng, nights):
    """Exposures for the given nights with per-night and per-exposure conditions.

    Night-level: seeing FWHM (~1.5-3.5 px), transparency (clouds on ~20% of nights), sky
    brightness from the Moon, bias level, pointing offset of the cutout (object near, not at,
    the centre). Exposure-level: ~10 min spacing, small seeing/transparency changes, sub-pixel
    jitter.
    """
    exposures = []
    for night, count in zip(nights, num_exposures_per_night(rng, len(nights))):
        fwhm = float(np.clip(2.3 * np.exp(rng.normal(0.0, 0.2)), 1.4, 4.0))
        clear = rng.uniform() < 0.8
        transparency = rng.uniform(0.9, 1.0) if clear else rng.uniform(0.35, 0.9)
        start = night + rng.uniform(0.12, 0.42)
        sky = 21.6 - 2.0 * float(moon_illumination(start)) + rng.normal(0.0, 0.15)
        bias = rng.uniform(250.0, 400.0)
        offset = rng.uniform(-8.0, 8.0, size=2)
        gaps = np.concatenate([[0.0], np.cumsum(rng.normal(10.0, 1.5, size=count - 1))])
        for gap in gaps:
            exposures.append(
                Exposure(
                    mjd=float(start + gap / 1440.0),
                    night=int(night),
                    fwhm_px=float(np.clip(fwhm * rng.normal(1.0, 0.04), 1.3, 4.2)),
                    sky_mag_arcsec2=float(sky + rng.normal(0.0, 0.02)),
                    transparency=float(np.clip(transparency * rng.normal(1.0, 0.02), 0.05, 1.0)),
                    bias_adu=float(bias),
                    offset_px=tuple((offset + rng.normal(0.0, 0.3, size=2)).tolist()),
                )
            )
    return exposures


def sky_electrons_per_pixel(sky_mag_arcsec2):
    pixel_mag = sky_mag_arcsec2 - 2.5 * np.log10(PIXEL_SCALE_ARCSEC**2)
    return 10.0 ** (-0.4 * (pixel_mag - ZERO_POINT))


def electrons(mag, transparency=1.0):
    """Total electrons collected from a source of magnitude `mag` in one exposure."""
    return transparency * 10.0 ** (-0.4 * (np.asarray(mag, float) - ZERO_POINT))


def limiting_magnitude(fwhm_px, sky_mag_arcsec2, transparency=1.0, snr=5.0):
    """Point-source magnitude detected at `snr` (Gaussian PSF, optimal-extraction area 4πσ²)."""
    sigma = fwhm_px / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    area = 4.0 * np.pi * sigma**2
    noise2 = area * (sky_electrons_per_pixel(sky_mag_arcsec2) + READ_NOISE_E**2)
    # Solve s = snr * sqrt(s + noise2) for the signal s.
    signal = 0.5 * (snr**2 + np.sqrt(snr**4 + 4.0 * snr**2 * noise2))
    return ZERO_POINT - 2.5 * np.log10(signal / transparency)
