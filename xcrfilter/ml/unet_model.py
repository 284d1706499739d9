"""U-Net model directories and sparse inference (the network of `xcrfilter.ml.unet`).

A model directory (``xcrfilter/data/unet_model``) holds ``unet.keras``
(the Keras network, for training), ``unet.onnx`` (the same network exported
to ONNX by `xcrfilter.ml.unet_onnx`, run at inference by ONNX Runtime;
optional: a directory whose ``SHA256SUMS`` does not list it gets it
exported from ``unet.keras`` on loading, which imports Keras),
``scaling.json``, ``model.json`` (architecture, receptive field, FLOPs,
thresholds, tiling, training record), ``MODEL_CARD.md``,
``training_log.csv`` and ``SHA256SUMS`` (checked on loading by
`xcrfilter.ml.checksums`).  Loading a directory with a listed
``unet.onnx`` and running the network import neither Keras nor JAX.

Inference (:meth:`UnetModel.probability_maps`) is sparse: a frame is cut
into ``core x core`` tiles, only tiles holding a pixel at or above the seed
level (the event threshold, 260 eV by default) are evaluated, each in a
window of ``core + 2 * margin`` pixels, and only the window's central core is
kept.  The other tiles get probability 0 for X-ray and CR.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .checksums import (ModelFileError, cache_key, is_listed, verify_checksums,
                        write_checksums)
from .scaling import LogEnergyScaler

__all__ = ["CLASS_NAMES", "UnetModel", "load_unet_model", "save_unet_model",
           "export_unet_network", "default_unet_dir", "NETWORK_FILE", "ONNX_FILE", "FORMAT"]

#: Per-pixel classes, in the order of the network output (= simulator labels).
CLASS_NAMES = ("NOISE", "XRAY", "CR")
FORMAT = "xcrfilter-unet-model"
NETWORK_FILE = "unet.keras"
ONNX_FILE = "unet.onnx"
SCALING_FILE = "scaling.json"
META_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
LOG_FILE = "training_log.csv"
CHECKED_FILES = (NETWORK_FILE, ONNX_FILE, SCALING_FILE, META_FILE, CARD_FILE, LOG_FILE)
#: ONNX Runtime intra-operator threads (0: one per physical core).
THREADS = 0


# -- model directory ------------------------------------------------------------

def default_unet_dir():
    """Directory of the U-Net model shipped in ``xcrfilter/data/unet_model``."""
    return Path(__file__).resolve().parent.parent / "data" / "unet_model"


def save_unet_model(model_dir, network, scaler, meta, card_text=""):
    """Write a U-Net model directory and its ``SHA256SUMS``; return the model checksum.

    The network is written twice: ``unet.keras`` (Keras, for training
    further) and ``unet.onnx`` (its export, `xcrfilter.ml.unet_onnx`, run at
    inference).

    Parameters
    ----------
    model_dir : path-like
        Created if missing.
    network : keras.Model
        From :func:`xcrfilter.ml.unet.build_unet` /
        :func:`xcrfilter.ml.unet_training.train_unet`.
    scaler : `~xcrfilter.ml.scaling.LogEnergyScaler`
    meta : dict
        ``model.json`` content; ``format`` and ``class_names`` are added.
    card_text : str
        ``MODEL_CARD.md`` content.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    network.save(model_dir / NETWORK_FILE)
    from .unet_onnx import export_unet_onnx
    (model_dir / ONNX_FILE).write_bytes(export_unet_onnx(network))
    (model_dir / SCALING_FILE).write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    meta = dict(meta, format=FORMAT, class_names=list(CLASS_NAMES))
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (model_dir / CARD_FILE).write_text(card_text)
    if not (model_dir / LOG_FILE).exists():
        (model_dir / LOG_FILE).write_text("epoch,loss\n")
    return write_checksums(model_dir, CHECKED_FILES)


def _read_keras(model_dir):
    """The Keras network of ``unet.keras`` (imports Keras)."""
    import keras
    try:
        net = keras.saving.load_model(model_dir / NETWORK_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # any failure of a foreign file is a model-file error
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: not a loadable Keras model "
                             f"({type(exc).__name__}: {exc})") from exc
    if tuple(net.output_shape[-1:]) != (len(CLASS_NAMES),):
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: output has "
                             f"{net.output_shape[-1]} classes, expected {len(CLASS_NAMES)}")
    return net


def _export(model_dir):
    """``unet.onnx`` of ``unet.keras``, serialised (imports Keras and onnx)."""
    from .unet_onnx import export_unet_onnx
    net = _read_keras(model_dir)
    try:
        return export_unet_onnx(net)
    except ValueError as exc:
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: not a U-Net ({exc})") from exc


def export_unet_network(model_dir):
    """Write ``unet.onnx`` of a model directory from its ``unet.keras``.

    For a directory written before ``unet.onnx`` existed; training writes
    it (:func:`save_unet_model`).  ``SHA256SUMS`` is not rewritten: list the
    file with ``xcrfilter.ml.checksums.write_checksums(model_dir,
    CHECKED_FILES)`` (``scripts/train_unet.py onnx`` does both).

    Parameters
    ----------
    model_dir : path-like
        Directory holding ``unet.keras``.

    Returns
    -------
    pathlib.Path
        The ONNX file.

    Raises
    ------
    ModelFileError
        No, an unreadable or a foreign ``unet.keras``.
    ImportError
        Keras or the ``onnx`` package is not installed.
    """
    model_dir = Path(model_dir)
    if not (model_dir / NETWORK_FILE).is_file():
        raise ModelFileError(f"{model_dir}: no {NETWORK_FILE} to export")
    out = model_dir / ONNX_FILE
    out.write_bytes(_export(model_dir))
    return out


def _probability(value, name, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ModelFileError(f"{path}: {name} must be a probability in [0, 1], got {value!r}")
    return float(value)


class UnetModel:
    """A loaded U-Net model (use :func:`load_unet_model`).

    Parameters
    ----------
    onnx : bytes
        The network exported to ONNX (``unet.onnx``,
        `xcrfilter.ml.unet_onnx.export_unet_onnx`).
    scaler : `~xcrfilter.ml.scaling.LogEnergyScaler`
        Input scaling (``scaling.json``).
    meta : dict
        ``model.json``.
    sha256 : str
        Model checksum.
    path : path-like
        Model directory.
    threads : int, optional
        ONNX Runtime intra-operator threads (default `THREADS`).

    Attributes
    ----------
    name : str
        Model name (``UNTMODEL``).
    sha256 : str
        Model checksum (``UNTSHA``): sha256 of ``SHA256SUMS``.
    threshold : float
        Default event threshold on ``PROB_UNET``.
    mask_threshold : float
        Default pixel threshold on the CR probability of the mask.
    core, margin : int
        Sparse tiling: kept tile side and context margin [pixels].
    receptive_field : int
        Receptive field of the network [pixels].
    meta : dict
        ``model.json``.
    runtime : xcrfilter.ml.unet_onnx.UnetRuntime
        The network in an ONNX Runtime session.
    """

    def __init__(self, onnx, scaler, meta, sha256, path, threads=None):
        from .unet_onnx import UnetRuntime
        self._onnx = bytes(onnx)
        self.threads = THREADS if threads is None else int(threads)
        self.runtime = UnetRuntime(self._onnx, threads=self.threads)
        self.scaler = scaler
        self.meta = meta
        self.sha256 = sha256
        self.path = str(path)
        self.name = str(meta.get("name", "unnamed"))
        self.threshold = float(meta.get("threshold", 0.5))
        self.mask_threshold = float(meta.get("mask_threshold", 0.5))
        self.core = int(meta.get("tiling", {}).get("core", 32))
        self.margin = int(meta.get("tiling", {}).get("margin", 16))
        self.levels = int(meta.get("architecture", {}).get("levels", 4))
        self.receptive_field = int(meta.get("receptive_field", 0))

    def __getstate__(self):
        # an ONNX Runtime session cannot be pickled (dask workers): the model
        # bytes travel and the session is made again where it is unpickled
        return {k: v for k, v in self.__dict__.items() if k != "runtime"}

    def __setstate__(self, state):
        from .unet_onnx import UnetRuntime
        self.__dict__.update(state)
        self.runtime = UnetRuntime(self._onnx, threads=self.threads)

    def predict_windows(self, windows_ev, batch_size=64):
        """Class probabilities of whole windows (dense, no tiling).

        Parameters
        ----------
        windows_ev : float ndarray (n, rows, cols) [eV]
            Sides divisible by ``2**(levels - 1)``.
        batch_size : int
            Windows per ONNX Runtime call (any batch size and side run
            without recompilation or padding).

        Returns
        -------
        float32 ndarray (n, rows, cols, 3)
            Probabilities of noise, X-ray, CR.
        """
        w = np.asarray(windows_ev, np.float32)
        step = 2 ** (self.levels - 1)
        if w.ndim != 3 or w.shape[1] % step or w.shape[2] % step:
            raise ValueError(f"windows must be (n, rows, cols) with sides divisible by {step}, "
                             f"got shape {w.shape}")
        out = np.empty(w.shape + (len(CLASS_NAMES),), np.float32)
        batch = max(1, int(batch_size))
        for i in range(0, len(w), batch):
            out[i:i + batch] = self.runtime(self.scaler.transform(w[i:i + batch]))
        return out

    def probability_maps(self, frames_ev, seed_level=260.0, dense=False, batch_size=64,
                         points=None, halo=2):
        """Per-pixel X-ray and CR probabilities of whole frames.

        Parameters
        ----------
        frames_ev : float ndarray (n_frames, rows, cols) or (rows, cols) [eV]
        seed_level : float, optional
            Sparse evaluation: only ``core x core`` tiles with a pixel
            ``>= seed_level`` [eV] in the tile or within 2 pixels of it are
            evaluated (default 260 eV, the event threshold); others get 0.
        dense : bool, optional
            Evaluate every tile (for checks; the result of an active tile is
            the same either way).
        points : tuple of int ndarrays (frame, row, col), optional
            Evaluate only the tiles holding a pixel within ``halo`` pixels of
            one of these points (e.g. events); a tile's result does not
            depend on which other tiles are evaluated, so the map equals the
            full map there.
        batch_size : int
            Windows per network call.

        Returns
        -------
        p_xray, p_cr : float32 ndarray, shape of ``frames_ev``
        """
        f = np.asarray(frames_ev, np.float32)
        single = f.ndim == 2
        if single:
            f = f[None]
        if f.ndim != 3:
            raise ValueError(f"frames must be (rows, cols) or (n_frames, rows, cols), "
                             f"got shape {np.shape(frames_ev)}")
        n, ny, nx = f.shape
        c, m = self.core, self.margin
        ty, tx = -(-ny // c), -(-nx // c)
        pad = np.zeros((n, ty * c + 2 * m, tx * c + 2 * m), np.float32)
        pad[:, m:m + ny, m:m + nx] = np.nan_to_num(f, nan=0.0, posinf=0.0, neginf=0.0)
        if dense:
            active = np.ones((n, ty, tx), bool)
        elif points is not None:
            fr, rr, cc = (np.asarray(v, np.int64) for v in points)
            active = np.zeros((n, ty, tx), bool)
            for dy in (-halo, 0, halo):
                for dx in (-halo, 0, halo):
                    r = np.clip(rr + dy, 0, ny - 1) // c
                    q = np.clip(cc + dx, 0, nx - 1) // c
                    active[fr, r, q] = True
        else:
            from scipy.ndimage import maximum_filter
            hot = pad[:, m:m + ty * c, m:m + tx * c] >= np.float32(seed_level)
            # a tile is active when a hot pixel lies in it or within 2 px of it
            hot = maximum_filter(hot, size=(1, 5, 5), mode="constant", cval=False)
            active = hot.reshape(n, ty, c, tx, c).any(axis=(2, 4))
        idx = np.argwhere(active)
        p_x = np.zeros((n, ty * c, tx * c), np.float32)
        p_c = np.zeros((n, ty * c, tx * c), np.float32)
        if len(idx):
            size = c + 2 * m
            win = np.empty((len(idx), size, size), np.float32)
            for k, (i, a, b) in enumerate(idx):
                win[k] = pad[i, a * c:a * c + size, b * c:b * c + size]
            prob = self.predict_windows(win, batch_size=batch_size)[:, m:m + c, m:m + c]
            for k, (i, a, b) in enumerate(idx):
                p_x[i, a * c:(a + 1) * c, b * c:(b + 1) * c] = prob[k, :, :, 1]
                p_c[i, a * c:(a + 1) * c, b * c:(b + 1) * c] = prob[k, :, :, 2]
        p_x, p_c = p_x[:, :ny, :nx], p_c[:, :ny, :nx]
        return (p_x[0], p_c[0]) if single else (p_x, p_c)

    def header_cards(self):
        """``(keyword, value, comment)`` cards naming the model."""
        return [("UNTMODEL", self.name, "U-Net model name"),
                ("UNTSHA", self.sha256[:64], "sha256 of the U-Net model's SHA256SUMS"),
                ("UNTRF", self.receptive_field, "[pixel] U-Net receptive field"),
                ("UNTCORE", self.core, "[pixel] U-Net tile core (sparse evaluation)"),
                ("UNTMARG", self.margin, "[pixel] U-Net tile context margin")]


def _load_uncached(model_dir):
    model_dir = Path(model_dir)
    sha = verify_checksums(model_dir, CHECKED_FILES, (NETWORK_FILE, SCALING_FILE, META_FILE),
                           kind="U-Net")
    try:
        meta = json.loads((model_dir / META_FILE).read_text())
        scaler = LogEnergyScaler.from_dict(json.loads((model_dir / SCALING_FILE).read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{model_dir}: unreadable {META_FILE} or {SCALING_FILE} "
                             f"({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{model_dir / META_FILE}: not an {FORMAT} file")
    if list(meta.get("class_names", [])) != list(CLASS_NAMES):
        raise ModelFileError(f"{model_dir / META_FILE}: class_names must be "
                             f"{list(CLASS_NAMES)}")
    _probability(meta.get("threshold", 0.5), "threshold", model_dir / META_FILE)
    _probability(meta.get("mask_threshold", 0.5), "mask_threshold", model_dir / META_FILE)
    # the checked unet.onnx; without one listed in SHA256SUMS (a file that was
    # not checked is never run) the network is exported from unet.keras
    if is_listed(model_dir, ONNX_FILE):
        onnx, where = (model_dir / ONNX_FILE).read_bytes(), model_dir / ONNX_FILE
    else:
        onnx, where = _export(model_dir), model_dir / NETWORK_FILE
    try:
        model = UnetModel(onnx, scaler, meta, sha, model_dir)
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}") from exc
    if model.runtime.n_classes != len(CLASS_NAMES):
        raise ModelFileError(f"{where}: output has {model.runtime.n_classes} classes, "
                             f"expected {len(CLASS_NAMES)}")
    return model


@functools.lru_cache(maxsize=4)
def _load_cached(model_dir, mtime):
    return _load_uncached(model_dir)


def load_unet_model(model_dir=None):
    """Load and check a U-Net model directory (cached while its files are unchanged).

    Parameters
    ----------
    model_dir : path-like, optional
        Default: the shipped model (:func:`default_unet_dir`).

    Returns
    -------
    UnetModel

    Raises
    ------
    xcrfilter.ml.checksums.ModelFileError
        Missing directory or files, checksum mismatch, foreign or corrupt
        files.
    """
    d = default_unet_dir() if model_dir is None else Path(model_dir)
    return _load_cached(*cache_key(d, "U-Net"))
