"""Confidence intervals of the paper's metric by a paired bootstrap over objects.

Every model is scored on the same resampled objects in each draw (a draw picks N objects of
the split with replacement), so the interval of a difference between two models reflects only
how they disagree on objects, not which objects happened to land in the split. Intervals are
basic (reverse-percentile) bootstrap intervals, which undo the upward bias that taking the
maximum over thresholds has on resamples. The statistic
is metrics' mean over classes of the per-class maximum F1, recomputed in each draw (the
threshold is re-chosen per draw, as the metric does). With strata (e.g. the test sets of
several seeds' surveys), objects are resampled within each stratum and the statistic is the
mean over strata of each stratum's metric: the seeds' average, with its interval.

A model may also come as several trainings (the same network trained from other initial
weights, scored on the same objects): its statistic is then the mean over its trainings, and
each draw also resamples the trainings (with replacement, within each stratum), so that its
interval and its difference to the reference contain the spread between trainings as well as
the sampling of objects. With few trainings that part of the spread is underestimated (a
bootstrap over K values has (K - 1) / K of their variance): two or three trainings say that
the spread is there and roughly how large, not its exact size.
"""

import zlib

import numpy as np

from tao_keras import metrics

DRAWS = 2000
SEED = 2020
LEVEL = 0.95
CHUNK = 250  # draws resampled at once


def _multiplicities(size, draws, rng):
    """[draws, size]: how often each of `size` objects is picked in each bootstrap draw."""
    picks = rng.integers(0, size, (draws, size))
    out = np.zeros((draws, size))
    np.add.at(out, (np.repeat(np.arange(draws), size), picks.ravel()), 1.0)
    return out


def _mean_f1(labels, probabilities, weights):
    """Mean over classes of the per-class maximum F1 under each weighting: [D]."""
    per_class = []
    for c in range(probabilities.shape[1]):
        positive = labels == c
        if not positive.any():
            continue
        order, ends = metrics.ranked(probabilities[:, c])
        per_class.append(metrics.max_f1_weighted(positive, order, ends, weights))
    with np.errstate(invalid="ignore"):
        return np.nanmean(np.stack(per_class), axis=0)


def _interval(estimate, values, level, bounds):
    """The basic (reverse-percentile) bootstrap interval [2θ − q_hi, 2θ − q_lo], clipped to
    bounds: the maximum over thresholds rises on resamples (repeated objects), so percentile
    intervals would sit above the estimate; reflecting them about it removes that bias."""
    tail = 100 * (1 - level) / 2
    q_lo, q_hi = np.nanpercentile(values, [tail, 100 - tail])
    lo, hi = np.clip([2 * estimate - q_hi, 2 * estimate - q_lo], *bounds)
    return [float(lo), float(hi)]


def paired(labels, probabilities, reference=None, strata=None, draws=DRAWS, seed=SEED):
    """Bootstrap intervals of every model's mean max-F1 and of its difference to `reference`.

    labels [N] int: the objects' classes, the same objects in the same order for every model;
    probabilities: {model name: [N, C], or [K, N, C] for K trainings of that model (their mean
    statistic; the trainings resampled in each draw too)}; reference: the model the others are
    compared with (e.g. the Random Forest), or None; strata [N]: a group per object (resampled
    apart, the statistic averaged over groups), or None; draws, seed: the bootstrap's (fixed:
    same inputs, same intervals).

    -> {model: {"mean_f1": the point estimate, "ci": [lo, hi] (LEVEL, basic bootstrap), and,
    for models other than the reference, "difference": mean_f1 minus the reference's,
    "difference_ci",
    "p_not_better": the share of draws where the model does not beat the reference}},
    plus "_objects": N and "_draws".
    """
    labels = np.asarray(labels, int)
    strata = np.zeros(len(labels), int) if strata is None else np.asarray(strata)
    groups = [np.flatnonzero(strata == g) for g in np.unique(strata)]
    rng = np.random.default_rng(seed)
    # Each model's trainings are picked from a stream of its own, keyed by its name: a model
    # gets the same intervals whatever the other models are and in whatever order they come
    # (a stream shared in dict order made them depend on the order of a set of names).
    training_rngs = {
        name: np.random.default_rng([seed, 1, zlib.crc32(str(name).encode())])
        for name in probabilities
    }
    arrays = {}
    for name, p in probabilities.items():
        p = np.asarray(p, float)
        arrays[name] = p[None] if p.ndim == 2 else p  # [K, N, C]
        if p.ndim not in (2, 3) or arrays[name].shape[1] != len(labels):
            raise ValueError(
                f"{name}: probabilities of shape {p.shape} for {len(labels)} labels "
                "([N, C] or [trainings, N, C] expected)"
            )
    sample = {
        name: float(
            np.mean([_mean_f1(labels[g], t[g], np.ones((1, len(g))))[0] for g in groups for t in p])
        )
        for name, p in arrays.items()
    }
    resampled = {name: [] for name in arrays}
    for begin in range(0, draws, CHUNK):  # bounded memory: [CHUNK, objects] weights at a time
        weights = [_multiplicities(len(g), min(CHUNK, draws - begin), rng) for g in groups]
        for name, p in arrays.items():
            # [groups, trainings, draws]: each training's statistic on each draw's objects
            values = np.stack(
                [
                    np.stack([_mean_f1(labels[g], t[g], w) for t in p])
                    for g, w in zip(groups, weights)
                ]
            )
            if len(p) > 1:
                picks = training_rngs[name].integers(0, len(p), values.shape)
                values = np.take_along_axis(values, picks, axis=1)
            resampled[name].append(values.mean(axis=1).mean(axis=0))
    resampled = {name: np.concatenate(v) for name, v in resampled.items()}
    out = {"_objects": int(len(labels)), "_draws": int(draws)}
    for name in probabilities:
        entry = {
            "mean_f1": sample[name],
            "ci": _interval(sample[name], resampled[name], LEVEL, (0.0, 1.0)),
        }
        if reference is not None and name != reference:
            diff = resampled[name] - resampled[reference]
            entry["difference"] = sample[name] - sample[reference]
            entry["difference_ci"] = _interval(entry["difference"], diff, LEVEL, (-1.0, 1.0))
            entry["p_not_better"] = float(np.mean(diff[~np.isnan(diff)] <= 0))
        out[name] = entry
    return out


def aligned(predictions):
    """Predictions of several models on possibly different objects -> the objects all of them
    scored, in one order: (object ids [N], labels [N], {model: probabilities [N, C]}).

    predictions: {model: {"object_id": [N_m], "label": [N_m], "probabilities": [N_m, C]}}
    (e.g. the Random Forest scores only objects with enough dates for a light curve).
    ValueError when two models disagree on an object's label.
    """
    common = None
    for p in predictions.values():
        ids = set(p["object_id"])
        common = ids if common is None else common & ids
    ids = sorted(common or ())
    labels, probabilities = None, {}
    for name, p in predictions.items():
        index = {object_id: i for i, object_id in enumerate(p["object_id"])}
        rows = [index[i] for i in ids]
        these = np.asarray(p["label"], int)[rows] if rows else np.zeros(0, int)
        if labels is not None and not np.array_equal(labels, these):
            raise ValueError(f"{name}: labels differ from the other models' on the same objects")
        labels = these
        probabilities[name] = np.asarray(p["probabilities"], float)[rows]
    return ids, labels, probabilities


def by_split(predictions, reference=None, draws=DRAWS, seed=SEED):
    """paired() per split over the objects every model scored in that split.

    predictions: {model: {split: {"object_id", "label", "probabilities"}}}; reference: the model
    the differences are to (None, or absent from a split: no differences there).
    -> {split: paired output}; splits where the models share no object are left out.
    """
    out = {}
    for split in sorted({s for by_split in predictions.values() for s in by_split}):
        models = {m: p[split] for m, p in predictions.items() if split in p}
        ids, labels, probabilities = aligned(models)
        if not ids:
            continue
        ref = reference if reference in models else None
        out[split] = paired(labels, probabilities, ref, draws=draws, seed=seed)
    return out
