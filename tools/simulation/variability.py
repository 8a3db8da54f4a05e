"""What sits at the catalogue position of each class, as a function of time.

Each model takes the exposure times, the planned time of maximum and the peak magnitude,
and returns a SourceModel: the central point source's magnitude per exposure (inf = no
flux), its position offset per exposure (arcsec east, north; non-zero for moving objects),
an optional host galaxy, and the true time of maximum. Magnitudes are V-like, unfiltered.
"""

import dataclasses

import numpy as np

from tools.simulation import calibration


@dataclasses.dataclass(frozen=True)
class Galaxy:
    """Elliptical exponential-like galaxy; offset of its centre from the catalogue position."""

    mag: float
    r_eff_arcsec: float
    axis_ratio: float
    position_angle: float  # radians, from north through east
    offset_arcsec: tuple = (0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class SourceModel:
    label: str
    subtype: str
    peak_mag: float
    max_mjd: float | None  # None for non-transients
    point_mag: np.ndarray  # [num_exposures], inf where absent
    point_offset: np.ndarray  # [num_exposures, 2] arcsec (east, north)
    host: Galaxy | None = None


def _flux(mag):
    return 10.0 ** (-0.4 * np.asarray(mag, float))


def _mag(flux):
    flux = np.asarray(flux, float)
    with np.errstate(divide="ignore"):
        return np.where(flux > 0, -2.5 * np.log10(np.maximum(flux, 1e-300)), np.inf)


def _log_uniform(rng, low, high):
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def damped_random_walk(rng, times, tau, sf_inf):
    """Exact Ornstein-Uhlenbeck draw (mag, mean 0) at arbitrary times: the standard AGN model."""
    order = np.argsort(times)
    sigma = sf_inf / np.sqrt(2.0)
    values = np.empty(len(times))
    x = rng.normal(0.0, sigma)
    previous = None
    for i in order:
        if previous is not None:
            decay = np.exp(-(times[i] - previous) / tau)
            x = x * decay + sigma * np.sqrt(1.0 - decay**2) * rng.normal()
        values[i] = x
        previous = times[i]
    return values


def _host(rng, mag, r_low, r_high, offset=(0.0, 0.0)):
    return Galaxy(
        mag=float(mag),
        r_eff_arcsec=rng.uniform(r_low, r_high),
        axis_ratio=rng.uniform(0.3, 1.0),
        position_angle=rng.uniform(0, np.pi),
        offset_arcsec=tuple(offset),
    )


def _static(times):
    return np.zeros((len(times), 2))


def _pinned(curve, peak_mag):
    """Shift a curve evaluated at [*times, t_peak] so it equals peak_mag at t_peak; drop that
    point."""
    return curve[:-1] - curve[-1] + peak_mag


def supernova(rng, times, t_peak, peak_mag):
    """Bazin rise/decline (rise 2-6 d, decline e-fold 20-70 d) on a host galaxy (90%)."""
    tau_rise = rng.uniform(2.0, 6.0)
    tau_fall = float(np.clip(35.0 * np.exp(rng.normal(0.0, 0.35)), 20.0, 70.0))
    x_max = tau_rise * np.log(tau_fall / tau_rise - 1.0)  # Bazin maximum, relative to t0

    def bazin(x):
        return np.exp(-x / tau_fall) / (1.0 + np.exp(-np.clip(x, -500, 500) / tau_rise))

    x = np.asarray(times) - t_peak + x_max
    mags = peak_mag + _mag(bazin(x) / bazin(x_max))
    host = None
    if rng.uniform() < 0.9:
        galaxy = _host(rng, peak_mag + rng.uniform(-0.5, 2.5), 1.5, 6.0)
        radius = rng.uniform(0.0, 1.2) * galaxy.r_eff_arcsec
        angle = rng.uniform(0, 2 * np.pi)
        host = dataclasses.replace(
            galaxy, offset_arcsec=(radius * np.cos(angle), radius * np.sin(angle))
        )
    return SourceModel("SN", "SN", peak_mag, t_peak, mags, _static(times), host)


def agn(rng, times, t_peak, peak_mag):
    """Nucleus with damped-random-walk variability plus the slow brightening CRTS flagged, in its
    host."""
    t = np.append(times, t_peak)
    drw = damped_random_walk(rng, t, _log_uniform(rng, 100.0, 600.0), rng.uniform(0.15, 0.4))
    amplitude, width = rng.uniform(0.5, 1.3), _log_uniform(rng, 20.0, 120.0)
    bump = _mag(1.0 + (10 ** (0.4 * amplitude) - 1.0) * np.exp(-0.5 * ((t - t_peak) / width) ** 2))
    mags = _pinned(drw + bump, peak_mag)
    host = _host(rng, peak_mag + rng.uniform(-0.5, 1.5), 1.5, 5.0)
    return SourceModel("AGN", "AGN", peak_mag, t_peak, mags, _static(times), host)


def blazar(rng, times, t_peak, peak_mag):
    """High-amplitude damped random walk plus a fast flare; a faint host in 30% of cases."""
    t = np.append(times, t_peak)
    drw = damped_random_walk(rng, t, _log_uniform(rng, 20.0, 200.0), rng.uniform(0.4, 1.0))
    amplitude = rng.uniform(1.0, 2.5)
    rise, decay = rng.uniform(3.0, 20.0), rng.uniform(5.0, 40.0)
    dt = t - t_peak
    profile = np.where(
        dt < 0, np.exp(np.clip(dt / rise, -500, 0)), np.exp(-np.clip(dt, 0, None) / decay)
    )
    flare = _mag(1.0 + (10 ** (0.4 * amplitude) - 1.0) * profile)
    mags = _pinned(drw + flare, peak_mag)
    host = _host(rng, peak_mag + rng.uniform(1.5, 3.0), 1.0, 3.0) if rng.uniform() < 0.3 else None
    return SourceModel("BZ", "BZ", peak_mag, t_peak, mags, _static(times), host)


def cataclysmic_variable(rng, times, t_peak, peak_mag):
    """Dwarf nova: faint quiescence (2-6 mag below peak) and recurrent outbursts, the largest at
    t_peak."""
    amplitude = rng.uniform(2.0, 6.0)
    recurrence = _log_uniform(rng, 20.0, 300.0)
    times = np.asarray(times)
    starts = [t_peak - rng.uniform(0.0, 3.0)]
    amplitudes = [amplitude]
    t0 = starts[0] - recurrence * rng.uniform(0.8, 1.2)
    while t0 > times.min() - 30:
        starts.append(t0)
        amplitudes.append(amplitude - rng.uniform(0.0, 1.0))
        t0 -= recurrence * rng.uniform(0.7, 1.3)
    t0 = starts[0] + recurrence * rng.uniform(0.8, 1.2)
    while t0 < times.max() + 1:
        starts.append(t0)
        amplitudes.append(amplitude - rng.uniform(0.0, 1.0))
        t0 += recurrence * rng.uniform(0.7, 1.3)
    dm = np.zeros(len(times))
    for start, amp in zip(starts, amplitudes):
        plateau, decline, rise = (
            rng.uniform(3.0, 10.0),
            rng.uniform(0.3, 1.0),
            rng.uniform(0.5, 2.0),
        )
        if start is starts[0]:
            plateau = max(plateau, t_peak - start + 0.5)
        dt = times - start
        shape = np.where(
            dt < 0,
            amp + dt * amp / rise,
            np.where(dt <= plateau, amp, amp - (dt - plateau) * decline),
        )
        dm = np.maximum(dm, np.clip(shape, 0.0, None))
    mags = peak_mag + amplitude - dm
    return SourceModel("CV", "CV", peak_mag, t_peak, mags, _static(times), None)


def high_proper_motion(rng, times, t_peak, peak_mag):
    """A constant star moving 0.3-5 arcsec/yr; catalogue position = position at discovery."""
    speed = _log_uniform(rng, 0.3, 5.0) / 365.25
    angle = rng.uniform(0, 2 * np.pi)
    dt = np.asarray(times) - t_peak
    offset = np.stack([speed * dt * np.cos(angle), speed * dt * np.sin(angle)], axis=1)
    mags = peak_mag + rng.normal(0.0, 0.02, size=len(times))
    return SourceModel("OTHER", "HPM", peak_mag, t_peak, mags, offset, None)


def _night_start(times, t_peak):
    """First exposure of the night nearest t_peak, or t_peak when that night was not observed."""
    same_night = np.asarray(times)[np.abs(np.asarray(times) - t_peak) < 0.5]
    return float(same_night.min()) if len(same_night) else float(t_peak)


def stellar_flare(rng, times, t_peak, peak_mag):
    """Faint star (1.5-5 mag below peak) with one flare decaying over 6-60 minutes."""
    quiescent = _flux(peak_mag + rng.uniform(1.5, 5.0))
    start = _night_start(times, t_peak) - rng.uniform(0.0, 10.0) / 1440.0
    tau = _log_uniform(rng, 0.004, 0.04)
    dt = np.asarray(times) - start
    flare = np.where(dt >= 0, np.exp(-np.clip(dt, 0, None) / tau), 0.0)
    mags = _mag(quiescent + (_flux(peak_mag) - quiescent) * flare)
    return SourceModel("OTHER", "FLARE", peak_mag, start, mags, _static(times), None)


def asteroid(rng, times, t_peak, peak_mag):
    """Present on one night only, moving 0.05-0.6 deg/day across the cutout."""
    start = _night_start(times, t_peak)
    dt = np.asarray(times) - start
    present = np.abs(dt) < 0.5
    speed = _log_uniform(rng, 0.05, 0.6) * 3600.0
    angle = rng.uniform(0, 2 * np.pi)
    offset = np.stack([speed * dt * np.cos(angle), speed * dt * np.sin(angle)], axis=1)
    offset[~present] = 0.0
    mags = np.where(present, peak_mag + rng.normal(0.0, 0.05, size=len(times)), np.inf)
    return SourceModel("OTHER", "ASTEROID", peak_mag, start, mags, offset, None)


def long_period_variable(rng, times, t_peak, peak_mag):
    """Mira-like pulsation: period 150-450 d, 1.5-5 mag peak to peak, a maximum at t_peak."""
    period, amplitude = rng.uniform(150.0, 450.0), rng.uniform(1.5, 5.0)
    phase = 2 * np.pi * (np.asarray(times) - t_peak) / period
    mags = peak_mag + 0.5 * amplitude * (1.0 - np.cos(phase))
    return SourceModel("OTHER", "VARIABLE", peak_mag, t_peak, mags, _static(times), None)


def unknown_transient(rng, times, t_peak, peak_mag):
    """A faint source with one brightening of unknown nature lasting 2-60 days."""
    quiescent = _flux(peak_mag + rng.uniform(1.5, 4.0))
    width = _log_uniform(rng, 2.0, 60.0)
    event = np.exp(-0.5 * ((np.asarray(times) - t_peak) / width) ** 2)
    mags = _mag(quiescent + (_flux(peak_mag) - quiescent) * event)
    return SourceModel("OTHER", "UNKNOWN", peak_mag, t_peak, mags, _static(times), None)


def non_transient(rng, times, t_peak, peak_mag):
    """A constant source: a star (80%) or a compact galaxy (20%), as bright as transients at
    peak."""
    del t_peak
    if rng.uniform() < 0.8:
        mags = peak_mag + rng.normal(0.0, 0.01, size=len(times))
        return SourceModel("NT", "STAR", peak_mag, None, mags, _static(times), None)
    galaxy = _host(rng, peak_mag, 1.0, 4.0)
    return SourceModel(
        "NT", "GALAXY", peak_mag, None, np.full(len(times), np.inf), _static(times), galaxy
    )


OTHER_MODELS = {
    "HPM": high_proper_motion,
    "FLARE": stellar_flare,
    "ASTEROID": asteroid,
    "VARIABLE": long_period_variable,
    "UNKNOWN": unknown_transient,
}
CLASS_MODELS = {"SN": supernova, "AGN": agn, "BZ": blazar, "CV": cataclysmic_variable}


def draw_source(rng, label, times, t_peak):
    """Pick the model (and OTHER subtype) for a class, draw its peak magnitude, evaluate it."""
    if label == "NT":
        return non_transient(rng, times, t_peak, calibration.sample_nt_magnitude(rng))
    if label == "OTHER":
        names = list(calibration.OTHER_SUBTYPE_COUNTS)
        weights = np.array(list(calibration.OTHER_SUBTYPE_COUNTS.values()), float)
        subtype = names[rng.choice(len(names), p=weights / weights.sum())]
        return OTHER_MODELS[subtype](rng, times, t_peak, calibration.sample_magnitude(rng, subtype))
    return CLASS_MODELS[label](rng, times, t_peak, calibration.sample_magnitude(rng, label))
