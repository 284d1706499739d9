"""Shape-and-context classifier (``morph``): a balanced random forest, no network.

The shape-variable classifiers of the method papers (seed 002: random
forests and gradient boosting on track-shape variables) describe each island
by its own shape.  Here every event is described by its own shape *and* by
the whole frame around it (`xcrfilter.context.context_features`: distance
and geometry relative to the nearest particle track, sibling islands within
several radii), and a balanced random forest (Chen, Liaw & Breiman 2004, as
in `xcrfilter.ml.forest`) returns the probability that the event belongs to
a cosmic-ray shower.

A model directory holds ``forest.skops``, ``model.json`` (format tag
``xcrfilter-morph-model``, feature names, thresholds of the context features,
energy band, default probability threshold and how it was chosen),
``MODEL_CARD.md`` and ``SHA256SUMS``; the shipped model lives in
``xcrfilter/data/morph_model``.

The same event table (:func:`event_dataset`) feeds the training of the
``morph`` and context-CAM models and the generalisation study
(``scripts/generalisation.py``).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from ..context import context_features, context_kwargs, feature_matrix
from .checksums import cache_key, verify_checksums, write_checksums
from .checksums import ModelFileError
from .forest import build_forest, check_forest, load_forest, save_forest

__all__ = ["MorphModel", "load_morph_model", "save_morph_model", "default_morph_dir",
           "default_shape_dir",
           "event_dataset", "train_forest", "threshold_for_fpr", "FORMAT"]

FORMAT = "xcrfilter-morph-model"
FOREST_FILE = "forest.skops"
META_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
_CHECKED = (FOREST_FILE, META_FILE, CARD_FILE)


def default_morph_dir():
    """Directory of the ``morph`` model shipped with the package."""
    return Path(__file__).resolve().parent.parent / "data" / "morph_model"


def default_shape_dir():
    """Directory of the shape-only model shipped with the package (``obsctx`` option ``shape``).

    It has the format of a ``morph`` model with the features
    :data:`xcrfilter.context.SHAPE_FEATURES` only.
    """
    return Path(__file__).resolve().parent.parent / "data" / "shape_model"


class MorphModel:
    """A loaded ``morph`` model.

    Attributes
    ----------
    forest : xcrfilter.ml.flatforest.FlatForest
    meta : dict
        Contents of ``model.json``.
    feature_names : tuple of str
    threshold : float
        Default CR-probability threshold.
    band_ev : tuple of float
        Scored band [eV], lower edge inclusive.
    sha256 : str
        Checksum of ``SHA256SUMS``.
    name : str
    """

    def __init__(self, forest, meta, sha256, path):
        self.forest = forest
        self.meta = meta
        self.sha256 = sha256
        self.path = str(path)
        self.name = str(meta.get("name", Path(path).name))
        self.feature_names = tuple(meta["feature_names"])
        self.threshold = float(meta["threshold"])
        self.band_ev = tuple(float(v) for v in meta["energy_band_ev"])
        self.context_kw = context_kwargs(meta.get("context"))

    def features(self, frames_ev, events):
        """Feature matrix (n_events, n_features) of ``events`` in ``frames_ev`` [eV]."""
        ctx = context_features(frames_ev, events, **self.context_kw)
        return feature_matrix(events, ctx, self.feature_names)

    def predict_proba(self, X):
        """CR probability of feature rows ``X``."""
        if len(X) == 0:
            return np.zeros(0)
        classes = list(self.forest.classes_)
        return self.forest.predict_proba(X)[:, classes.index(1)]

    def header_cards(self):
        """FITS cards describing the model."""
        return [("MRPMODEL", self.name[:68], "morph filter model name"),
                ("MRPSHA", self.sha256, "")]


def _check_meta(meta, path):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an xcrfilter morph model (format tag "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {FORMAT!r})")
    names = meta.get("feature_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ModelFileError(f"{path}: feature_names must be a non-empty list of names")
    thr = meta.get("threshold")
    if not isinstance(thr, (int, float)) or not 0.0 <= float(thr) <= 1.0:
        raise ModelFileError(f"{path}: threshold must be a probability in [0, 1], got {thr!r}")
    band = meta.get("energy_band_ev")
    if not (isinstance(band, list) and len(band) == 2
            and all(isinstance(b, (int, float)) for b in band) and 0 <= band[0] < band[1]):
        raise ModelFileError(f"{path}: energy_band_ev must be [low, high] in eV, got {band!r}")


def _load(model_dir):
    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise ModelFileError(f"{model_dir}: no {META_FILE}; not an xcrfilter morph model")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{meta_path}: not valid JSON ({exc})") from exc
    _check_meta(meta, meta_path)
    sha = verify_checksums(model_dir, _CHECKED, (FOREST_FILE, META_FILE), kind="morph")
    forest = load_forest(model_dir / FOREST_FILE)
    check_forest(forest, len(meta["feature_names"]), model_dir / FOREST_FILE, META_FILE)
    return MorphModel(forest, meta, sha, model_dir)


@functools.lru_cache(maxsize=4)
def _load_cached(model_dir, mtime):
    return _load(model_dir)


def load_morph_model(model_dir=None):
    """Load (and cache) a ``morph`` model directory.

    Parameters
    ----------
    model_dir : path-like, optional
        Default: the shipped model (`default_morph_dir`).

    Returns
    -------
    MorphModel

    Raises
    ------
    ModelFileError
        Missing directory or file, foreign format, invalid ``model.json``
        fields, checksum mismatch, a forest whose feature count or classes do
        not match.
    """
    return _load_cached(*cache_key(default_morph_dir() if model_dir is None else model_dir,
                                   "morph"))


def save_morph_model(model_dir, forest, meta, card_text=""):
    """Write a ``morph`` model directory; return its checksum.

    ``meta`` needs ``feature_names``, ``threshold`` and ``energy_band_ev``;
    the format tag is added here.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(meta, format=FORMAT, format_version=1)
    _check_meta(json.loads(json.dumps(meta, default=_json_default)), model_dir / META_FILE)
    save_forest(forest, model_dir / FOREST_FILE)
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    (model_dir / CARD_FILE).write_text(card_text)
    return write_checksums(model_dir, _CHECKED)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def event_dataset(chunks, *, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                  mip_threshold=10 * u.keV, cam_model=None, band=(0.3, 10) * u.keV,
                  xray_fraction=1.0, seed=0, progress=False):
    """Events of labelled frames with truth, VF bits, context and CAM features.

    Parameters
    ----------
    chunks : iterable of (frames, labels)
        ``frames`` float ndarray (n, ny, nx) [eV], ``labels`` uint8 truth
        cube of the same shape (0 none, 1 X-ray, 2 CR), e.g. the
        ``frames``/``labels`` of `xcrfilter.simulate.iter_frames` chunks.
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        Event finding (defaults 260 eV, 80 eV, 10 keV).
    cam_model : `xcrfilter.ml.model.CamModel`, optional
        Add the seed paper's ten CAM features (``CAM_<name>`` columns) for
        the events in ``band``.
    band : `~astropy.units.Quantity` pair
        Energy band kept [low, high); default 0.3-10 keV.
    xray_fraction : float
        Keep this random fraction of the non-CR events (all CR events are
        kept); ``WEIGHT`` = 1 / fraction for them.  Default 1 (all).
    seed : int
        Seed of that subsample.
    progress : bool
        Show a progress bar over chunks.

    Returns
    -------
    `~astropy.table.QTable`
        In-band events with ``TRUTH`` (1 X-ray, 2 CR, 0 noise), ``VFSTAT``
        (very-faint-mode bits), ``FRAME`` (running over all chunks),
        ``RAWX``, ``RAWY``, ``ENERGY``, ``GRADE``, ``CR_CONTEXT`` (truth: 1 when
        the frame holds active CR pixels outside the event's own island, the
        context any context filter could use), every context feature
        (`xcrfilter.context.CONTEXT_FEATURES`) and, with ``cam_model``, the
        CAM features.
    """
    from ..events import find_events
    from ..filters.vfaint import vfaint_flags
    from ..simulate import event_truth
    lo, hi = band.to_value(u.eV)
    if not 0 < xray_fraction <= 1:
        raise ValueError(f"xray_fraction must be in (0, 1], got {xray_fraction}")
    rng = np.random.default_rng(seed)
    parts = []
    offset = 0
    it = chunks
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(chunks, desc="events", unit="chunk")
    for frames, labels in it:
        frames = np.asarray(frames, np.float32)
        ev = find_events(frames * u.eV, event_threshold, split_threshold, mip_threshold)
        e = np.asarray(ev["ENERGY"].to_value(u.eV))
        truth = event_truth(ev, labels)
        keep = (e >= lo) & (e < hi)
        if xray_fraction < 1:
            keep &= (truth == 2) | (rng.random(len(ev)) < xray_fraction)
        ev, e, truth = ev[keep], e[keep], truth[keep]
        t = QTable()
        t["FRAME"] = np.asarray(ev["FRAME"], np.int64) + offset
        t["RAWX"] = ev["RAWX"]
        t["RAWY"] = ev["RAWY"]
        t["ENERGY"] = ev["ENERGY"]
        t["GRADE"] = ev["GRADE"]
        t["TRUTH"] = truth.astype(np.int16)
        t["WEIGHT"] = np.where(truth == 2, 1.0, 1.0 / xray_fraction).astype(np.float32)
        t["VFSTAT"] = vfaint_flags(ev["PHAS"], ev["ENERGY"], event_threshold,
                                   split_threshold, mip_threshold)
        t["CR_CONTEXT"] = _cr_context(frames, labels, ev, split_threshold).astype(np.int16)
        ctx = context_features(frames, ev, split_threshold=split_threshold,
                               event_threshold=event_threshold)
        for name in ctx.colnames:
            t[name] = ctx[name]
        if cam_model is not None and len(ev):
            X, _ = cam_model.features(frames, np.asarray(ev["FRAME"]), np.asarray(ev["RAWY"]),
                                      np.asarray(ev["RAWX"]), e)
            for j, name in enumerate(cam_model.feature_names):
                t[f"CAM_{name}"] = X[:, j].astype(np.float32)
        elif cam_model is not None:
            for name in cam_model.feature_names:
                t[f"CAM_{name}"] = np.zeros(0, np.float32)
        parts.append(t)
        offset += frames.shape[0]
    from astropy.table import vstack
    out = vstack(parts) if parts else QTable()
    out.meta["NFRAMES"] = offset
    return out


def _cr_context(frames, labels, events, split_threshold):
    """Truth: the frame holds active CR pixels outside the event's own island."""
    from ..context import label_islands
    if len(events) == 0:
        return np.zeros(0, bool)
    nf, ny, nx = frames.shape
    idx, lab, n = label_islands(frames, float(split_threshold.to_value(u.eV)))
    cr = labels.ravel()[idx] == 2
    per_island = np.bincount(lab[cr], minlength=n + 1)
    per_frame = np.bincount(idx[cr] // (ny * nx), minlength=nf)
    f = np.asarray(events["FRAME"], np.intp)
    y = np.asarray(events["RAWY"], np.intp)
    flat = (f * ny + y) * nx + np.asarray(events["RAWX"], np.intp)
    pos = np.minimum(np.searchsorted(idx, flat), max(idx.size - 1, 0))
    own = np.where(idx[pos] == flat, lab[pos], 0) if idx.size else np.zeros(len(f), np.intp)
    return per_frame[f] - per_island[own] > 0


def train_forest(X, y, *, n_estimators=300, max_features="sqrt", min_samples_leaf=3,
                 random_state=0, n_jobs=None):
    """Fit a balanced random forest on features ``X`` and labels ``y`` (1 = CR).

    The class-wise bootstrap of Chen, Liaw & Breiman (2004) via
    `xcrfilter.ml.forest.build_forest`; fewer trees than the paper's 1000
    and a minimum leaf size keep the shipped file small.

    Returns
    -------
    imblearn.ensemble.BalancedRandomForestClassifier
    """
    forest = build_forest(n_estimators=n_estimators, max_features=max_features,
                          min_samples_leaf=min_samples_leaf, random_state=random_state,
                          n_jobs=n_jobs)
    forest.fit(np.asarray(X, np.float32), np.asarray(y, np.int64))
    return forest


def threshold_for_fpr(prob, is_cr, target_fpr):
    """Lowest probability threshold whose lost X-ray fraction is <= ``target_fpr``.

    Parameters
    ----------
    prob : ndarray (n,)
        CR probabilities.
    is_cr : bool ndarray (n,)
        Truth (True CR, False X-ray).
    target_fpr : float
        Largest allowed fraction of X-ray events with ``prob >= threshold``.

    Returns
    -------
    float
        The threshold (an event is rejected when ``prob >= threshold``).
    """
    px = np.sort(np.asarray(prob)[~np.asarray(is_cr, bool)])[::-1]
    if px.size == 0:
        return 0.5
    k = int(np.floor(target_fpr * px.size))  # at most k X-rays may be rejected
    if k >= px.size:
        return 0.0
    # reject strictly above the (k+1)-th largest X-ray probability
    return float(np.nextafter(px[k], 1.0))
