"""Late fusion of two classifiers' predictions: the mean of their probabilities per object.

A broker that runs a light-curve classifier beside TAO-Net can average the two answers. The
learning-curve benchmark scores that mean (the forest's and TAO-Net joint's probabilities on
the same held-out objects) as a row of its own, to measure whether the pixels carry
information the light curves do not (docs/science.md). No model is trained here: the
weights are equal and fixed, so the row needs no validation data to choose them.
"""

import numpy as np

from tao_keras import intervals


def mean_probabilities(first, second):
    """Two models' predictions of one split ({"object_id": [N], "label": [N], "probabilities":
    [N, C]} each, as run reports keep them) -> the same for the objects both scored (sorted
    ids), with the mean of the two probabilities. ValueError when they disagree on a label
    (intervals.aligned) or share no object."""
    ids, labels, probabilities = intervals.aligned({"first": first, "second": second})
    if not ids:
        raise ValueError("the two models scored no object in common")
    mean = (np.asarray(probabilities["first"]) + np.asarray(probabilities["second"])) / 2.0
    return {"object_id": list(ids), "label": labels.tolist(), "probabilities": mean.tolist()}
