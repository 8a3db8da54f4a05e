"""Numbers that tie the simulator to the real survey and to the paper.

Peak magnitudes: percentiles of the discovery magnitude in the CRTS transient catalogue
(`shared/data/crts-transients-catalog.tsv`, uncertain '?' classifications folded in);
`tests/test_simulation_calibration.py` recomputes them from that file. Class mix: the
paper's Table 2 (train + validation + test objects).
"""

import numpy as np

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99)

# Catalogue groups -> the classification strings folded into them.
CATALOG_GROUPS = {
    "SN": ("SN", "SN?"),
    "CV": ("CV", "CV?"),
    "AGN": ("AGN", "AGN?"),
    "BZ": ("Blazar", "Blazar?"),
    "HPM": ("HPM",),
    "FLARE": ("Flare", "Flare?"),
    "UNKNOWN": ("Unknown",),
    "ASTEROID": ("Ast", "Ast?"),
    "VARIABLE": ("Var", "Var?", "YSO", "YSO?", "Mira", "LPV"),
}

# Discovery (peak) magnitude percentiles per group, in PERCENTILES order.
PEAK_MAG_PERCENTILES = {
    "SN": (14.95, 16.46, 17.11, 18.07, 18.75, 19.32, 19.75, 19.95, 20.29),
    "CV": (12.86, 14.13, 14.69, 15.77, 16.99, 17.90, 18.65, 18.92, 19.50),
    "AGN": (17.59, 18.09, 18.34, 18.90, 19.36, 19.71, 19.95, 20.11, 20.31),
    "BZ": (14.99, 15.83, 16.20, 17.12, 17.88, 18.74, 19.16, 19.60, 20.13),
    "HPM": (12.51, 12.60, 12.79, 13.43, 14.40, 16.29, 17.94, 18.44, 19.30),
    "FLARE": (14.98, 15.88, 16.30, 17.34, 18.18, 18.90, 19.55, 19.87, 20.19),
    "UNKNOWN": (16.34, 17.18, 17.55, 18.60, 19.15, 19.76, 20.08, 20.21, 20.40),
    "ASTEROID": (17.57, 18.42, 18.70, 19.15, 19.56, 19.87, 20.13, 20.24, 20.42),
    "VARIABLE": (12.20, 12.56, 12.79, 13.69, 16.74, 18.55, 19.48, 19.83, 20.25),
}

# Catalogue counts of the groups that make up the paper's OTHER class.
OTHER_SUBTYPE_COUNTS = {"HPM": 640, "FLARE": 239, "UNKNOWN": 226, "ASTEROID": 92, "VARIABLE": 120}

# Paper Table 2, objects per class over train + validation + test.
PAPER_CLASS_COUNTS = {"BZ": 239, "AGN": 618, "CV": 776, "OTHER": 844, "SN": 1372, "NT": 15499}


def sample_magnitude(rng, group, size=None):
    """Draw magnitudes from a group's percentile table (piecewise-linear inverse CDF).

    Tails below p1 / above p99 are extended linearly by half the p1-p5 / p95-p99 spacing.
    """
    q = np.asarray(PEAK_MAG_PERCENTILES[group])
    probs = np.concatenate([[0.0], np.asarray(PERCENTILES) / 100.0, [1.0]])
    mags = np.concatenate([[q[0] - 0.5 * (q[1] - q[0])], q, [q[-1] + 0.5 * (q[-1] - q[-2])]])
    return np.interp(rng.uniform(size=size), probs, mags)


def sample_nt_magnitude(rng, size=None):
    """Non-transients: constant sources as bright as transients at maximum (paper 2.3).

    Mixes the SN, CV, AGN, BZ and OTHER peak distributions in proportion to the catalogue.
    """
    groups = ["SN", "CV", "AGN", "BZ"] + list(OTHER_SUBTYPE_COUNTS)
    weights = np.array([2042, 1065, 584, 260] + list(OTHER_SUBTYPE_COUNTS.values()), float)
    picks = rng.choice(len(groups), size=size, p=weights / weights.sum())
    picks = np.atleast_1d(picks)
    out = np.array([sample_magnitude(rng, groups[i]) for i in picks])
    return out if size is not None else float(out[0])


def class_counts(num_objects, mix):
    """Split num_objects over classes in proportion to `mix` (largest remainder, exact total).

    Every class with a non-zero weight gets at least one object when num_objects allows it.
    """
    names = [name for name, weight in mix.items() if weight > 0]
    weights = np.array([mix[n] for n in names], float)
    exact = num_objects * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    if num_objects >= len(names):
        counts = np.maximum(counts, 1)
    while counts.sum() > num_objects:  # the minimum of one overshot: take from the largest
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[: num_objects - counts.sum()]:
        counts[i] += 1
    return dict(zip(names, counts.tolist()))
