"""Class balancing of light curves by Gaussian resampling (paper 3.1): new curves of a minority
class are copies of its curves with each magnitude drawn from N(mag, magerr)."""

import numpy as np


def balance(curves, labels, seed=0):
    """Extend every class to the largest class's count -> (curves, labels), originals first.

    curves: [(mjd, mag, magerr)]; copies keep their curve's dates; source curves are taken
    in turn (a shuffled cycle) so that each is resampled about equally often.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    counts = {c: int((labels == c).sum()) for c in np.unique(labels)}
    target = max(counts.values(), default=0)
    out_curves, out_labels = list(curves), list(labels)
    for c, n in sorted(counts.items()):
        members = np.flatnonzero(labels == c)
        order = rng.permutation(members)
        for k in range(target - n):
            t, m, e = curves[order[k % n]]
            out_curves.append((t, rng.normal(m, e), e))
            out_labels.append(c)
    return out_curves, np.array(out_labels)
