"""The CAM filter model bundle: network + scaling + forest + threshold.

A loaded model (:class:`CamModel`) scores events: the frame classifier's
class activation maps in a window around each event (:func:`event_windows`)
give the event features, the random forest their CR probability.
:func:`load_model` loads a model directory, or a model shipped with the
package (:data:`SHIPPED_MODELS`), once per process and checks every file
against its ``SHA256SUMS``; :func:`read_model` loads one afresh.  The files
of a model directory, and how they are checked and written, are in
:mod:`xcrfilter.ml.model_files`.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .checksums import ModelFileError, cache_key
from .features import FEATURE_NAMES, EXTRA_FEATURE_NAMES, cam_window_stats, event_features, \
    extra_features
from .forest import check_forest, load_forest
from .model_files import (FOREST_FILE, META_FILE, NETWORK_FILE, check_input_shape, load_network,
                          read_meta, verify_model_checksums)
from .netgraph import CLASS_NAMES

__all__ = ["CamModel", "load_model", "read_model", "default_model_dir", "SHIPPED_MODELS",
           "event_windows"]

#: Names of the models shipped with the package -> directory under ``xcrfilter/data``.
SHIPPED_MODELS = {"context": "cam_model", "paper": "cam_model_paper"}


def default_model_dir(name="context"):
    """Directory of a model shipped with the package.

    Parameters
    ----------
    name : str
        ``"context"`` (the default model): network features plus whole-frame
        context, trained on randomised physics; ``"paper"``: the seed
        paper's ten features.
    """
    if name not in SHIPPED_MODELS:
        raise ModelFileError(f"no shipped CAM model named {name!r}; choose from "
                             f"{', '.join(SHIPPED_MODELS)} or give a directory")
    return Path(__file__).resolve().parent.parent / "data" / SHIPPED_MODELS[name]


def event_windows(frames_ev, frame, row, col, size=64):
    """Stack of ``size x size`` windows centred on events.

    Parameters
    ----------
    frames_ev : ndarray, shape (n_frames, rows, cols)
        Energy cube [eV].
    frame, row, col : ndarray of int, shape (n,)
        Event frame index, row (RAWY) and column (RAWX).
    size : int, optional
        Window side (even); the event lands on pixel ``(size//2, size//2)``.

    Returns
    -------
    ndarray, shape (n, size, size), float32
        Pixels outside the frame are 0 eV.
    """
    frames_ev = np.asarray(frames_ev, dtype=np.float32)
    half = size // 2
    nf, ny, nx = frames_ev.shape
    frame = np.asarray(frame, dtype=np.intp)
    row = np.asarray(row, dtype=np.intp)
    col = np.asarray(col, dtype=np.intp)
    out = np.zeros((len(frame), size, size), np.float32)
    if len(frame) == 0:
        return out
    off = np.arange(size) - half
    yy = row[:, None] + off[None, :]
    xx = col[:, None] + off[None, :]
    oky = (yy >= 0) & (yy < ny)
    okx = (xx >= 0) & (xx < nx)
    yy = np.clip(yy, 0, ny - 1)
    xx = np.clip(xx, 0, nx - 1)
    vals = frames_ev[frame[:, None, None], yy[:, :, None], xx[:, None, :]]
    ok = oky[:, :, None] & okx[:, None, :]
    out[ok] = vals[ok]
    return out


class CamModel:
    """A loaded CAM filter model (use :func:`load_model`).

    Attributes
    ----------
    network : xcrfilter.ml.cam.CamNetwork
        Compiled frame classifier with CAM outputs.
    forest : xcrfilter.ml.flatforest.FlatForest or None
        Second stage, the balanced random forest's trees (None for a
        stage-1-only directory).
    meta : dict
        Contents of ``model.json``.
    threshold : float
        Default CR-probability threshold.
    sha256 : str
        Model checksum (see `xcrfilter.ml.model_files`).
    name : str
        Model name (``meta["name"]``).
    """

    def __init__(self, network, forest, meta, sha256, path):
        self.network = network
        self.forest = forest
        self.meta = meta
        self.sha256 = sha256
        self.path = str(path)
        self.name = str(meta.get("name", Path(path).name))
        self.threshold = float(meta.get("threshold", 0.5))
        self.window = int(meta.get("window", 64))
        band = meta.get("energy_band_ev", [300.0, 10000.0])
        self.band_ev = (float(band[0]), float(band[1]))
        self.feature_set = meta.get("feature_set", "paper")
        self.eps = float(meta.get("safe_divide_eps", 1e-3))
        self.split_threshold_ev = float(meta.get("split_threshold_ev", 80.0))

    @property
    def feature_names(self):
        """Names of the network features (the context features are in `context_names`)."""
        names = list(FEATURE_NAMES)
        if self.feature_set == "extended":
            names += list(EXTRA_FEATURE_NAMES)
        return tuple(names)

    @property
    def context_names(self):
        """Whole-frame context features appended after the network features.

        Empty for the seed paper's feature sets; for ``feature_set =
        "context"`` the shape and context features of
        `xcrfilter.context.MODEL_FEATURES` (without the event energy, which
        is already the first network feature).
        """
        if self.feature_set != "context":
            return ()
        from ..context import MODEL_FEATURES
        return tuple(n for n in MODEL_FEATURES if n != "ENERGY")

    @functools.cached_property
    def cascade(self):
        """The model's cascade (`xcrfilter.ml.cascade.Cascade`), or None without one."""
        from .cascade import cascade_for
        return cascade_for(self)

    @property
    def context_kw(self):
        """Keyword arguments of `xcrfilter.context.context_features` for this model."""
        from ..context import context_kwargs
        return context_kwargs(self.meta.get("context"))

    def features(self, frames_ev, frame, row, col, energy_ev, batch=1024):
        """Event features (Sec. 4.2) from event-centred windows.

        Parameters
        ----------
        frames_ev : ndarray, shape (n_frames, rows, cols)
            Energy cube [eV].
        frame, row, col : ndarray of int, shape (n,)
            Event positions (FRAME, RAWY, RAWX).
        energy_ev : ndarray, shape (n,)
            Event energies [eV].
        batch : int, optional
            Events whose windows are cut at a time (bounds the memory).

        Returns
        -------
        X : ndarray, shape (n, n_features)
        probs : ndarray, shape (n, 4)
            Network probabilities of each event's window.
        """
        frame, row, col = (np.asarray(a) for a in (frame, row, col))
        energy_ev = np.asarray(energy_ev, dtype=np.float64)
        if len(frame) == 0:
            return self.features_from_windows(np.zeros((0, self.window, self.window)), energy_ev)
        parts = []
        for s in range(0, len(frame), batch):
            wins = event_windows(frames_ev, frame[s:s + batch], row[s:s + batch],
                                 col[s:s + batch], self.window)
            parts.append(self.features_from_windows(wins, energy_ev[s:s + batch]))
        return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])

    def features_from_windows(self, windows_ev, energy_ev):
        """Event features from event-centred windows (event at the window centre).

        Parameters
        ----------
        windows_ev : ndarray, shape (n, window, window)
            Windows [eV] from :func:`event_windows`.
        energy_ev : ndarray, shape (n,)
            Event energies [eV].

        Returns
        -------
        X : ndarray, shape (n, n_features)
        probs : ndarray, shape (n, 4)
        """
        if len(windows_ev) == 0:
            return (np.zeros((0, len(self.feature_names))),
                    np.zeros((0, len(CLASS_NAMES)), np.float32))
        ix, icr = CLASS_NAMES.index("XRAY"), CLASS_NAMES.index("CR")
        # only the central 5 x 5 of the upsampled maps is needed
        probs, cams = self.network.window_centres(windows_ev, half=2)
        stats = cam_window_stats(cams[..., ix], cams[..., icr], 2, 2)
        X = event_features(np.asarray(energy_ev, dtype=np.float64), probs[:, ix], probs[:, icr],
                           stats, eps=self.eps)
        if self.feature_set == "extended":
            X = np.hstack([X, extra_features(windows_ev, self.split_threshold_ev)])
        return X, probs

    def predict_proba(self, X):
        """Forest CR probability for feature rows ``X`` (n, n_features)."""
        if self.forest is None:
            raise ModelFileError(f"model {self.path} has no random forest (stage 2)")
        if len(X) == 0:
            return np.zeros(0)
        classes = list(self.forest.classes_)
        return self.forest.predict_proba(X)[:, classes.index(1)]

    def header_cards(self):
        """FITS cards describing the model (for event and CAM-map headers)."""
        return [
            ("CAMMODEL", self.name[:68], "CAM filter model name"),
            ("CAMSHA", self.sha256, ""),  # 64 characters: no room for a comment
            ("CAMCLASS", ",".join(CLASS_NAMES), "frame classifier class order"),
            ("CAMSCALE", "log1p(E/eV)", "network input: log1p(max(E,0)/1 eV)"),
            ("CAMSMEAN", float(self.network.scaler.mean), "input scaling mean"),
            ("CAMSSTD", float(self.network.scaler.std), "input scaling std"),
            ("CAMUPSMP", f"bilinear x{self.network.stride}", "CAM upsampling to input pixels"),
            ("CAMBIAS", "none", "CAM=sum_i w_ik a_i; mean(CAM)+b_k=logit"),
        ]


def read_model(model_dir, verify=True):
    """Load a CAM model directory afresh, bypassing the cache of :func:`load_model`.

    Parameters
    ----------
    model_dir : path-like
    verify : bool
        Check ``SHA256SUMS`` (default True).

    Returns
    -------
    CamModel

    Raises
    ------
    ModelFileError
        As :func:`load_model`.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelFileError(f"CAM model directory {str(model_dir)!r} does not exist")
    meta = read_meta(model_dir)
    sha = verify_model_checksums(model_dir) if verify else "unverified"
    net = load_network(model_dir)
    n_out = int(net.kernel.shape[-1])
    if n_out != len(CLASS_NAMES):
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: the network has {n_out} output "
                             f"classes, {META_FILE} and xcrfilter expect {len(CLASS_NAMES)} "
                             f"({', '.join(CLASS_NAMES)})")
    check_input_shape(net, model_dir)
    if net.window % net.stride:
        raise ModelFileError(f"{model_dir / META_FILE}: window {net.window} is not a multiple "
                             f"of the network's output stride {net.stride}")
    forest = load_forest(model_dir / FOREST_FILE) if (model_dir / FOREST_FILE).exists() else None
    model = CamModel(net, forest, meta, sha, model_dir)
    if forest is not None:
        check_forest(forest, len(model.feature_names) + len(model.context_names),
                     model_dir / FOREST_FILE, f"{META_FILE} (feature_set {model.feature_set!r})")
    return model


@functools.lru_cache(maxsize=4)
def _load_cached(model_dir, mtime):
    return read_model(model_dir)


def load_model(model_dir=None):
    """Load (and cache) a CAM filter model directory.

    Parameters
    ----------
    model_dir : str or path-like, optional
        Directory written by :func:`xcrfilter.ml.training.train` or
        :func:`~xcrfilter.ml.model_files.save_model`, or the name of a shipped model (``"context"``,
        ``"paper"``, see `SHIPPED_MODELS`); default the shipped
        ``"context"`` model.

    Returns
    -------
    CamModel
        Cached per directory (and modification time): the network is loaded
        and compiled once per process, never per frame.

    Raises
    ------
    ModelFileError
        Missing directory or file, foreign format, checksum mismatch,
        corrupt Keras or skops file.
    """
    if model_dir is None:
        model_dir = default_model_dir()
    elif isinstance(model_dir, str) and model_dir in SHIPPED_MODELS:
        model_dir = default_model_dir(model_dir)
    return _load_cached(*cache_key(model_dir, "CAM"))
