"""Calibrated probabilities: temperature scaling, and how far probabilities are from calibrated.

A classifier trained with cross-entropy and chosen by its validation F1 is usually
over-confident. Temperature scaling (one scalar T > 0, fitted on the validation split by
minimizing the negative log-likelihood) divides the log-probabilities by T and re-normalizes:

    calibrated = softmax(log(p) / T)

which for a softmax head equals softmax(logits / T). It never changes the arg-max class;
T > 1 softens, T < 1 sharpens. The exported SavedModel applies it in every signature
(tao_keras.serving, tao_keras.streaming), with the same formula as `apply_temperature`.

Numpy only (the graph's version is `scale_log_probabilities`, in keras.ops).
"""

import numpy as np
from scipy.optimize import minimize_scalar

# Probabilities are clipped here before the log (a softmax in float32 can return exact zeros).
EPSILON = 1e-12
# Range searched for T (log-uniform); a fit at an edge is reported as such by the caller.
T_RANGE = (0.05, 20.0)
ECE_BINS = 10


def apply_temperature(probabilities, temperature):
    """probabilities [N, C] -> softmax(log(p) / temperature) [N, C] (rows sum to one)."""
    logp = np.log(np.clip(np.asarray(probabilities, float), EPSILON, 1.0)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def negative_log_likelihood(labels, probabilities):
    """Mean -log p(true class) (nats) of labels [N] under probabilities [N, C]."""
    labels = np.asarray(labels, int)
    p = np.clip(np.asarray(probabilities, float)[np.arange(len(labels)), labels], EPSILON, 1.0)
    return float(-np.mean(np.log(p)))


def fit_temperature(labels, probabilities):
    """The temperature minimizing the validation NLL (1.0 when there is nothing to fit)."""
    labels = np.asarray(labels, int)
    if len(labels) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(
            labels, apply_temperature(probabilities, np.exp(log_t))
        ),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def reliability(labels, probabilities, bins=ECE_BINS):
    """Top-label reliability: the predicted class's probability (confidence) binned in [0, 1].

    -> {"ece": expected calibration error (sum over bins of |accuracy - confidence| weighted by
    the bin's share of objects), "bins": [{"low", "high", "count", "confidence", "accuracy"}]
    for the non-empty bins}.
    """
    labels = np.asarray(labels, int)
    p = np.asarray(probabilities, float)
    if len(labels) == 0:
        return {"ece": float("nan"), "bins": []}
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        conf, acc = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += inside.mean() * abs(acc - conf)
        table.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(inside.sum()),
                "confidence": conf,
                "accuracy": acc,
            }
        )
    return {"ece": float(ece), "bins": table}


def summary(labels, probabilities, temperature):
    """NLL and reliability before and after the temperature: {"before": {"nll", "ece",
    "bins"}, "after": {...}} for one split."""
    after = apply_temperature(probabilities, temperature)
    return {
        "before": {
            "nll": negative_log_likelihood(labels, probabilities),
            **reliability(labels, probabilities),
        },
        "after": {"nll": negative_log_likelihood(labels, after), **reliability(labels, after)},
    }


def fit_on_validation(predictions):
    """A model's calibration from its per-split predictions ({split: {"label",
    "probabilities"}}, e.g. evaluation.predictions): the temperature fitted on "val" and
    summary() of every split under it -> {"temperature": T, split: summary}, or None without a
    validation split."""
    if "val" not in predictions:
        return None
    val = predictions["val"]
    temperature = fit_temperature(val["label"], val["probabilities"])
    return {
        "temperature": temperature,
        **{
            split: summary(p["label"], p["probabilities"], temperature)
            for split, p in predictions.items()
        },
    }


def scale_log_probabilities(probabilities, temperature):
    """The graph's apply_temperature (keras.ops: TensorFlow or JAX): [B, C] -> [B, C]."""
    from keras import ops

    logp = ops.log(ops.clip(probabilities, EPSILON, 1.0)) / temperature
    return ops.softmax(logp, axis=-1)
