"""U-Net model directories and sparse inference (the network of `xcrfilter.ml.unet`).

A model directory (``xcrfilter/data/unet_model``) holds ``unet.keras``,
``scaling.json``, ``model.json`` (architecture, receptive field, FLOPs,
thresholds, tiling, training record), ``MODEL_CARD.md``,
``training_log.csv`` and ``SHA256SUMS`` (checked on loading by
`xcrfilter.ml.checksums`).

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

from .checksums import ModelFileError, cache_key, verify_checksums, write_checksums
from .scaling import LogEnergyScaler

__all__ = ["CLASS_NAMES", "UnetModel", "load_unet_model", "save_unet_model",
           "default_unet_dir", "NETWORK_FILE", "FORMAT"]

#: Per-pixel classes, in the order of the network output (= simulator labels).
CLASS_NAMES = ("NOISE", "XRAY", "CR")
FORMAT = "xcrfilter-unet-model"
NETWORK_FILE = "unet.keras"
SCALING_FILE = "scaling.json"
META_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
LOG_FILE = "training_log.csv"
CHECKED_FILES = (NETWORK_FILE, SCALING_FILE, META_FILE, CARD_FILE, LOG_FILE)


# -- model directory ------------------------------------------------------------

def default_unet_dir():
    """Directory of the U-Net model shipped in ``xcrfilter/data/unet_model``."""
    return Path(__file__).resolve().parent.parent / "data" / "unet_model"


def save_unet_model(model_dir, network, scaler, meta, card_text=""):
    """Write a U-Net model directory and its ``SHA256SUMS``; return the model checksum.

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
    (model_dir / SCALING_FILE).write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    meta = dict(meta, format=FORMAT, class_names=list(CLASS_NAMES))
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (model_dir / CARD_FILE).write_text(card_text)
    if not (model_dir / LOG_FILE).exists():
        (model_dir / LOG_FILE).write_text("epoch,loss\n")
    return write_checksums(model_dir, CHECKED_FILES)


def _probability(value, name, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ModelFileError(f"{path}: {name} must be a probability in [0, 1], got {value!r}")
    return float(value)


class UnetModel:
    """A loaded U-Net model (use :func:`load_unet_model`).

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
    """

    def __init__(self, network, scaler, meta, sha256, path):
        self.network = network
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
        self._functions = {}

    def _function(self):
        fn = self._functions.get("map")
        if fn is None:
            import jax
            net = self.network
            tv = [v.value for v in net.trainable_variables]
            ntv = [v.value for v in net.non_trainable_variables]

            @jax.jit
            def fn(x):
                return net.stateless_call(tv, ntv, x, training=False)[0]
            self._functions["map"] = fn
        return fn

    def predict_windows(self, windows_ev, batch_size=64):
        """Class probabilities of whole windows (dense, no tiling).

        Parameters
        ----------
        windows_ev : float ndarray (n, rows, cols) [eV]
            Sides divisible by ``2**(levels - 1)``.
        batch_size : int
            Windows per call; a smaller batch is padded to 8 windows (up to
            8) or to ``batch_size``, so that two shapes are compiled.

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
        fn = self._function()
        out = np.empty(w.shape + (3,), np.float32)
        x = self.scaler.transform(w)[..., None]
        for i in range(0, len(x), batch_size):
            part = x[i:i + batch_size]
            k = len(part)
            size = 8 if k <= 8 else batch_size
            if k < size:  # two batch shapes only: two compilations
                part = np.concatenate([part, np.zeros((size - k,) + part.shape[1:],
                                                      np.float32)])
            out[i:i + k] = np.asarray(fn(part))[:k]
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
    import keras
    try:
        net = keras.saving.load_model(model_dir / NETWORK_FILE, compile=False, safe_mode=True)
    except Exception as exc:  # any failure of a foreign file is a model-file error
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: not a loadable Keras model "
                             f"({type(exc).__name__}: {exc})") from exc
    if tuple(net.output_shape[-1:]) != (len(CLASS_NAMES),):
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: output has "
                             f"{net.output_shape[-1]} classes, expected {len(CLASS_NAMES)}")
    return UnetModel(net, scaler, meta, sha, model_dir)


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
