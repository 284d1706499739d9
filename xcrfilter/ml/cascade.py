"""Cascade of the CAM filter: the morph forest decides the events it is sure of.

The context CAM model describes every event by the network's ten CAM
features *and* the shape and context features of
`xcrfilter.context.context_features`.  The ``morph`` forest
(`xcrfilter.ml.morph`) scores the same shape and context features without
the network, and on most events it is sure: far below or far above the
threshold.  The cascade computes the context features once, scores every
in-band event with the morph forest (``PROB_MORPH``) and

* accepts the events with ``PROB_MORPH < lo`` without the network,
* rejects the events with ``PROB_MORPH >= hi`` without the network,
* sends only the events in the band ``lo <= PROB_MORPH < hi`` through the
  network and the CAM forest.

Events decided without the network get ``PROB_CR = PROB_MORPH``.  The band
holds the threshold (``lo <= threshold <= hi``; for a threshold outside the
stored band, the band is widened to it), so ``STATUS`` bit 5 is
``PROB_CR >= threshold`` for every event either way.

The band is stored in the CAM model's ``model.json`` under ``"cascade"``::

    "cascade": {"band": [lo, hi], "morph_model": NAME, "morph_sha256": SHA,
                "threshold": THR, "max_differ": 0.005, "chosen_on": [...],
                "command": "..."}

and applies only with the morph model of that checksum (the shipped one);
a model without the entry, or a different morph model, gets the full
evaluation.  ``benchmarks/cam_cascade.py`` chooses the band on validation
frames so that the verdicts at the default threshold differ from the full
evaluation for at most ``max_differ`` of the in-band events of every
preset.
"""
from __future__ import annotations

import numpy as np

from .forest import ModelFileError

__all__ = ["Cascade", "cascade_for"]


class Cascade:
    """A CAM model's cascade: the morph model and the band of ``PROB_MORPH``.

    Attributes
    ----------
    morph : `xcrfilter.ml.morph.MorphModel`
    lo, hi : float
        The network scores the events with ``lo <= PROB_MORPH < hi``.
    """

    def __init__(self, morph, lo, hi):
        if not (0.0 <= lo <= hi and np.isfinite(hi)):
            raise ValueError(f"cascade band must satisfy 0 <= lo <= hi, got [{lo}, {hi})")
        self.morph = morph
        self.lo = float(lo)
        self.hi = float(hi)

    def band(self, threshold):
        """The band ``(lo, hi)`` used at ``threshold``: the stored one, widened to hold it."""
        return min(self.lo, float(threshold)), max(self.hi, float(threshold))

    def prob_morph(self, events, context):
        """``PROB_MORPH`` of ``events`` from their context features (already computed)."""
        from ..context import feature_matrix
        return self.morph.predict_proba(feature_matrix(events, context,
                                                       self.morph.feature_names))

    def split(self, prob_morph, threshold):
        """Masks ``(network, rejected)``: events for the network, events rejected without it."""
        lo, hi = self.band(threshold)
        pm = np.asarray(prob_morph)
        return (pm >= lo) & (pm < hi), pm >= hi


def cascade_for(cam):
    """The `Cascade` of CAM model ``cam``, or None when it has none.

    None for models without a ``"cascade"`` entry in ``model.json`` (the
    seed paper's ten-feature model, models trained by the user) and for
    models whose ``feature_set`` is not ``"context"``.

    Raises
    ------
    ModelFileError
        An invalid ``"cascade"`` entry, or a morph model whose checksum is
        not the one the band was chosen with.
    """
    spec = cam.meta.get("cascade")
    if spec is None or cam.feature_set != "context":
        return None
    where = f"{cam.path}/model.json"
    band = spec.get("band") if isinstance(spec, dict) else None
    if not (isinstance(band, list) and len(band) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in band)
            and 0.0 <= band[0] <= band[1] and np.isfinite(band[1])):
        raise ModelFileError(f"{where}: cascade.band must be [lo, hi] with 0 <= lo <= hi "
                             f"(hi > 1: nothing is rejected without the network), got {band!r}")
    from .morph import load_morph_model
    morph = load_morph_model(spec.get("morph_dir"))
    want = spec.get("morph_sha256")
    if want is not None and morph.sha256 != want:
        raise ModelFileError(f"{where}: the cascade band was chosen with morph model "
                             f"sha256 {want[:16]}..., the installed one is "
                             f"{morph.sha256[:16]}...; run with cascade off")
    if morph.context_kw != cam.context_kw:
        raise ModelFileError(f"{where}: the morph model's context features "
                             f"({morph.context_kw}) are not those of the CAM model "
                             f"({cam.context_kw}); the cascade computes them once for both")
    return Cascade(morph, band[0], band[1])
