"""The files of a CAM model directory: names, checks, reading and writing.

A model directory holds

===================  ===========================================================
``densenet.keras``   Keras 3 frame classifier (backend independent)
``densenet.onnx``    the same network exported to ONNX, run at inference by
                     ONNX Runtime (`xcrfilter.ml.onnxnet`); optional: a
                     directory without it gets it exported on loading
``scaling.json``     :class:`xcrfilter.ml.scaling.LogEnergyScaler` statistics
``forest.skops``     balanced random forest (skops, no pickle)
``model.json``       format tag, class order, features, energy band, window,
                     CR-probability threshold and how it was chosen, metrics,
                     command, versions
``MODEL_CARD.md``    human-readable model card
``SHA256SUMS``       sha256 of each file above (``sha256sum -c`` format)
===================  ===========================================================

The model checksum (``CAMSHA`` in output headers) is the sha256 of the
``SHA256SUMS`` text, so it changes when any model file changes.  Every file
is checked against ``SHA256SUMS`` when the model is loaded.

What reads a directory into a :class:`~xcrfilter.ml.model.CamModel`
(:func:`~xcrfilter.ml.model.read_model`, :func:`~xcrfilter.ml.model.load_model`)
is in :mod:`xcrfilter.ml.model`; this module holds the pieces it checks and
loads the files with (:func:`read_meta`, :func:`verify_model_checksums`,
:func:`load_network`, :func:`check_input_shape`) and what training writes
them with (:func:`save_model`, :func:`export_network`, :func:`write_checksums`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .checksums import ModelFileError, is_listed, verify_checksums
from .checksums import write_checksums as _write_checksums
from .forest import save_forest
from .netgraph import CLASS_NAMES, read_keras_file
from .scaling import LogEnergyScaler

__all__ = ["FORMAT", "FORMAT_VERSION", "NETWORK_FILE", "ONNX_FILE", "SCALING_FILE",
           "FOREST_FILE", "META_FILE", "CARD_FILE", "CHECKED_FILES", "write_checksums",
           "verify_model_checksums", "check_meta", "read_meta", "export_network",
           "load_network", "check_input_shape", "save_model"]

FORMAT = "xcrfilter-cam-model"
FORMAT_VERSION = 1
NETWORK_FILE = "densenet.keras"
ONNX_FILE = "densenet.onnx"
SCALING_FILE = "scaling.json"
FOREST_FILE = "forest.skops"
META_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
CHECKED_FILES = (NETWORK_FILE, ONNX_FILE, SCALING_FILE, FOREST_FILE, META_FILE, CARD_FILE)


def write_checksums(model_dir):
    """Write ``SHA256SUMS`` for the model files present; return the model checksum."""
    return _write_checksums(model_dir, CHECKED_FILES)


def verify_model_checksums(model_dir):
    """Check every file of ``SHA256SUMS``; return the checksum (`xcrfilter.ml.checksums`).

    Raises
    ------
    ModelFileError
        A missing ``SHA256SUMS`` or required file, an unknown name, a mismatch.
    """
    return verify_checksums(model_dir, CHECKED_FILES, (NETWORK_FILE, SCALING_FILE, META_FILE),
                            kind="CAM")


def check_meta(meta, path):
    """Validate the fields of ``model.json`` (ModelFileError naming the field).

    ``meta`` is the parsed ``model.json`` and ``path`` names it in the messages:
    ``threshold``, ``energy_band_ev``, ``window``, ``class_names`` and
    ``feature_set`` are checked when present.
    """
    thr = meta.get("threshold", 0.5)
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0.0 <= thr <= 1.0:
        raise ModelFileError(f"{path}: threshold must be a probability in [0, 1], got {thr!r}")
    band = meta.get("energy_band_ev", [300.0, 10000.0])
    if not (isinstance(band, list) and len(band) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in band)
            and 0 <= band[0] < band[1] and np.isfinite(band[1])):
        raise ModelFileError(f"{path}: energy_band_ev must be [low, high] in eV with "
                             f"0 <= low < high, got {band!r}")
    window = meta.get("window", 64)
    if isinstance(window, bool) or not isinstance(window, int) or not 8 <= window <= 4096:
        raise ModelFileError(f"{path}: window must be an integer number of pixels in "
                             f"[8, 4096], got {window!r}")
    names = meta.get("class_names", list(CLASS_NAMES))
    if list(names) != list(CLASS_NAMES):
        raise ModelFileError(f"{path}: class_names {names!r}, expected {list(CLASS_NAMES)}")
    if meta.get("feature_set", "paper") not in ("paper", "extended", "context"):
        raise ModelFileError(f"{path}: unknown feature_set {meta.get('feature_set')!r}")


def read_meta(model_dir):
    """The checked contents of ``model.json`` of a model directory (a `pathlib.Path`).

    Raises
    ------
    ModelFileError
        No ``model.json``, not JSON, another format tag, or a bad field
        (:func:`check_meta`).
    """
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():  # a FIFO or a device would be read forever
        raise ModelFileError(f"{model_dir}: no {META_FILE}; not an xcrfilter CAM model directory")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{meta_path}: not an xcrfilter CAM model (format tag "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                             f"expected {FORMAT!r})")
    check_meta(meta, meta_path)
    return meta


def export_network(model_dir):
    """Write ``densenet.onnx`` of a model directory from its ``densenet.keras``.

    Called by training after the network is saved; ``SHA256SUMS`` is
    written afterwards (:func:`write_checksums`, :func:`save_model`).

    Parameters
    ----------
    model_dir : path-like
        Directory holding ``densenet.keras``.

    Returns
    -------
    pathlib.Path
        The ONNX file.

    Raises
    ------
    ModelFileError
        No or an unreadable ``densenet.keras``.
    ImportError
        The ``onnx`` package is not installed.
    """
    from .onnxnet import export_onnx
    model_dir = Path(model_dir)
    if not (model_dir / NETWORK_FILE).is_file():
        raise ModelFileError(f"{model_dir}: no {NETWORK_FILE} to export")
    out = model_dir / ONNX_FILE
    out.write_bytes(export_onnx(read_keras_file(model_dir / NETWORK_FILE)))
    return out


def load_network(model_dir, onnx=None):
    """Load ``densenet.keras`` and ``scaling.json`` as a :class:`~xcrfilter.ml.cam.CamNetwork`.

    The network file is read without Keras (`xcrfilter.ml.netgraph`) and
    run by ONNX Runtime from ``densenet.onnx``.

    Parameters
    ----------
    model_dir : path-like
        Model directory.
    onnx : bool, optional
        Run ``densenet.onnx`` (True) or export the network from
        ``densenet.keras`` anew (False, needs the ``onnx`` package); default:
        the file when ``SHA256SUMS`` lists it, so that a file that was not
        checked is never run.
    """
    from .cam import CamNetwork
    model_dir = Path(model_dir)
    try:
        scaler = LogEnergyScaler.from_dict(json.loads((model_dir / SCALING_FILE).read_text()))
    except FileNotFoundError as exc:
        raise ModelFileError(f"{model_dir}: no {SCALING_FILE}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{model_dir / SCALING_FILE}: invalid scaling ({exc})") from exc
    if not (model_dir / NETWORK_FILE).is_file():
        raise ModelFileError(f"{model_dir}: no {NETWORK_FILE}")
    graph = read_keras_file(model_dir / NETWORK_FILE)
    try:
        window = int(json.loads((model_dir / META_FILE).read_text()).get("window", 64))
    except Exception:
        window = 64
    if onnx is None:
        onnx = is_listed(model_dir, ONNX_FILE)
    try:
        return CamNetwork(graph, scaler, window=window,
                          onnx=model_dir / ONNX_FILE if onnx else None)
    except Exception as exc:
        raise ModelFileError(f"{model_dir / NETWORK_FILE}: not a CAM frame classifier "
                             f"({type(exc).__name__}: {exc})") from exc


def check_input_shape(net, model_dir):
    """The network's input against what xcrfilter feeds it (1 channel, ``window`` pixels).

    ``net`` is a network of :func:`load_network` of ``model_dir`` (a
    `pathlib.Path`); a `ModelFileError` says what does not fit.
    """
    graph = getattr(net, "graph", None)
    if not hasattr(graph, "input_shape"):
        return
    rows, cols, channels = graph.input_shape()
    where = model_dir / NETWORK_FILE
    if channels != 1:
        raise ModelFileError(f"{where}: the network takes {channels} input channels; "
                             "xcrfilter gives it 1 (the scaled log energy of the frame)")
    if (rows, cols) != (None, None) and (rows, cols) != (net.window, net.window):
        raise ModelFileError(f"{where}: the network takes {rows}x{cols} pixel inputs, but "
                             f"{META_FILE} says window {net.window}; the files do not belong "
                             "together")


def save_model(model_dir, network, scaler, forest, meta, card_text=None):
    """Write a model directory (see module docstring); return the checksum."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    if network is not None:
        network.save(model_dir / NETWORK_FILE)
        export_network(model_dir)
    if scaler is not None:
        (model_dir / SCALING_FILE).write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    if forest is not None:
        save_forest(forest, model_dir / FOREST_FILE)
    meta = dict(meta)
    meta["format"] = FORMAT
    meta["format_version"] = FORMAT_VERSION
    meta.setdefault("class_names", list(CLASS_NAMES))
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    if card_text is not None:
        (model_dir / CARD_FILE).write_text(card_text)
    return write_checksums(model_dir)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
