"""Early classification's bookkeeping, shared by the networks, the Random Forest and the report:
the numbers of observation dates (nights) at which every model is scored, the keys they are
stored under, the compact form of a score, and the first N dates of a light curve.

An object "observed for N nights" is its first N observation dates: no later date, no date of
maximum, no window centred on anything, which is what a broker has when the N-th night arrives.
"""

import dataclasses

# The N of "F1 versus nights observed" (None: every date of the object).
NIGHTS = (3, 5, 7, 10, 15, 20, None)


def label(nights):
    """The key of a NIGHTS entry: "3", "5", ... or "all" for None."""
    return "all" if nights is None else str(int(nights))


def summary(metrics):
    """metrics.evaluate's output -> {"mean_f1", "std_f1", "f1": {class: F1}, "accuracy",
    "chance_mean_f1"}, kept per N."""
    return {
        "mean_f1": float(metrics["mean_f1"]),
        "std_f1": float(metrics["std_f1"]),
        "f1": {c: float(v) for c, v in metrics["f1"].items()},
        "accuracy": float(metrics.get("accuracy", float("nan"))),
        "chance_mean_f1": float(metrics.get("chance_mean_f1", float("nan"))),
    }


def first_dates(curve, nights):
    """A lightcurves.curves.LightCurve (one point per date) cut to its first `nights` dates
    (unchanged for None)."""
    if nights is None:
        return curve
    return dataclasses.replace(
        curve, mjd=curve.mjd[:nights], mag=curve.mag[:nights], magerr=curve.magerr[:nights]
    )
