"""Light-curve features of the paper's baseline (Richards et al. 2011; D'Isanto et al. 2016:
moment-, percentile- and magnitude-based), computed by the `light-curve` package."""

import light_curve as lc
import numpy as np

MIN_CURVE_DATES = 5  # paper 3.1: shorter light curves are left out


def extractor():
    """The feature set, in a fixed order (names: extractor().names)."""
    return lc.Extractor(
        lc.Amplitude(),
        lc.BeyondNStd(1.0),
        lc.Cusum(),
        lc.Eta(),
        lc.EtaE(),
        lc.InterPercentileRange(0.25),
        lc.Kurtosis(),
        lc.LinearTrend(),
        lc.MagnitudePercentageRatio(0.4, 0.05),
        lc.MagnitudePercentageRatio(0.2, 0.1),
        lc.MaximumSlope(),
        lc.Mean(),
        lc.Median(),
        lc.MedianAbsoluteDeviation(),
        lc.MedianBufferRangePercentage(0.1),
        lc.PercentAmplitude(),
        lc.PercentDifferenceMagnitudePercentile(0.05),
        lc.ReducedChi2(),
        lc.Skew(),
        lc.StandardDeviation(),
        lc.StetsonK(),
        lc.WeightedMean(),
        lc.AndersonDarlingNormal(),
        lc.ExcessVariance(),
    )


FEATURE_NAMES = tuple(extractor().names)


def compute(curves):
    """[(mjd [n], mag [n], magerr [n])] (n >= MIN_CURVE_DATES, times increasing) -> features [N, F]
    float64.

    A feature undefined for a curve (e.g. the kurtosis of a flat one) is NaN; the forest
    (scikit-learn >= 1.4) learns where missing values go.
    """
    ex = extractor()
    rows = []
    for t, m, e in curves:
        if len(t) < MIN_CURVE_DATES:
            raise ValueError(
                f"light curve with {len(t)} dates: at least {MIN_CURVE_DATES} are needed"
            )
        rows.append(
            ex(
                *(np.ascontiguousarray(a, np.float64) for a in (t, m, e)),
                sorted=True,
                fill_value=np.nan,
            )
        )
    return np.array(rows, np.float64).reshape(len(rows), len(FEATURE_NAMES))
