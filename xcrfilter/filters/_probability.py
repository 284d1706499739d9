"""What every probability filter (CAM, morph) does with its scores."""
from __future__ import annotations

import numpy as np

__all__ = ["flag_probability"]


def flag_probability(out, prob, threshold, bit, column, description):
    """Store ``prob`` in ``out[column]`` and set STATUS ``bit`` where ``prob >= threshold``.

    The bit is cleared first, so a re-run replaces the filter's own verdict;
    NaN probabilities (unscored events) never set it.  ``out`` is modified
    in place (it is the filter's own new table).

    Returns
    -------
    n_scored, n_rejected : int
    """
    prob = np.asarray(prob, np.float32)
    ok = np.isfinite(prob)
    rej = np.zeros(len(out), bool)
    rej[ok] = prob[ok] >= threshold
    out[column] = prob
    out[column].description = description
    status = np.asarray(out["STATUS"]).astype(np.int32)
    status &= np.int32(~(1 << bit))
    status[rej] |= np.int32(1 << bit)
    out["STATUS"] = status
    return int(ok.sum()), int(rej.sum())
