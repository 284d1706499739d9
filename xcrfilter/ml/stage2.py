"""Stage 2 of the CAM filter's training: event features and the random forest.

Seed paper Sec. 3.3, 4: events are found in full frames *never used for
stage 1* exactly as the traditional filter does
(:func:`xcrfilter.events.find_events`, no grade cut), their truth is the
label of the central pixel, events with ``0.3 keV <= ENERGY < 10 keV`` get
the ten features of :mod:`xcrfilter.ml.features` (:func:`event_dataset`),
and a balanced random forest is fitted on a part of the frames
(:func:`train_forest`).  The CR-probability threshold is read off the ROC on
the remaining (validation) frames at a target lost-X-ray fraction (default
1.82 %, the paper's operating point), and the model directory is written
with its model card (:func:`fit_stage2`).  Stage 1 is
:mod:`xcrfilter.ml.stage1`; :func:`xcrfilter.ml.training.train` runs both.
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path


import numpy as np

from ..units import DEFAULT_BAND
from .densenet import CLASS_NAMES
from .features import EXTRA_FEATURE_NAMES, FEATURE_NAMES
from ..events import find_events

__all__ = ["event_dataset", "train_forest", "fit_stage2", "model_card", "versions",
           "DEFAULT_BAND_EV"]

#: Energy band of the scored events [eV] (paper Sec. 3.3), lower inclusive.
DEFAULT_BAND_EV = tuple(float(e) for e in DEFAULT_BAND.to_value("eV"))


def versions():
    """Versions of the software a model was trained with."""
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for pkg in ("xcrfilter", "keras", "jax", "numpy", "scikit-learn", "imbalanced-learn",
                "skops", "astropy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "unknown"
    import keras
    out["keras_backend"] = keras.backend.backend()
    return out


def event_dataset(cam_model, frames_ev, labels=None, *, event_threshold_ev=260.0,
                  split_threshold_ev=80.0, mip_threshold_ev=10000.0, band_ev=DEFAULT_BAND_EV,
                  chunk_frames=100, progress=False):
    """Events, truth and features of a frame cube (stage-2 data).

    Parameters
    ----------
    cam_model : xcrfilter.ml.model.CamModel
        Supplies the network (the forest may be None).
    frames_ev : ndarray, shape (n_frames, rows, cols)
        Energies [eV].
    labels : ndarray of uint8, same shape, optional
        Truth cube (0 none, 1 X-ray, 2 CR).
    event_threshold_ev, split_threshold_ev, mip_threshold_ev : float
        Event finding thresholds [eV] (260, 80, 10000; paper Sec. 3.1).
    band_ev : (float, float)
        Scored energy band [eV], ``lo <= E < hi``.
    chunk_frames : int
        Frames per step.

    Returns
    -------
    events : astropy.table.QTable
        All events (``find_events`` columns) plus ``TRUTH`` (if labels) and
        ``IN_BAND``.
    X : ndarray, shape (n_in_band, n_features)
        Features of the in-band events (rows in table order).
    """
    import astropy.units as u
    from astropy.table import vstack

    frames_ev = np.asarray(frames_ev, dtype=np.float32)
    parts, feats = [], []
    it = range(0, len(frames_ev), chunk_frames)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="stage-2 features", unit="chunk")
    for start in it:
        sub = frames_ev[start:start + chunk_frames]
        ev = find_events(sub * u.eV, event_threshold_ev * u.eV, split_threshold_ev * u.eV,
                         mip_threshold_ev * u.eV)
        f = np.asarray(ev["FRAME"])
        y = np.asarray(ev["RAWY"])
        x = np.asarray(ev["RAWX"])
        e = np.asarray(ev["ENERGY"].to_value(u.eV), dtype=np.float64)
        inb = (e >= band_ev[0]) & (e < band_ev[1])
        X, _ = cam_model.features(sub, f[inb], y[inb], x[inb], e[inb])
        feats.append(X)
        if labels is not None:
            ev["TRUTH"] = np.asarray(labels[start:start + chunk_frames])[f, y, x].astype(np.int8)
        ev["IN_BAND"] = inb
        ev["FRAME"] = ev["FRAME"] + np.int32(start)
        ev.meta.clear()
        parts.append(ev)
    events = vstack(parts) if len(parts) > 1 else parts[0]
    X = np.vstack(feats) if feats else np.zeros((0, len(FEATURE_NAMES)))
    return events, X


def train_forest(X, y, *, n_estimators=1000, max_features=3, min_samples_leaf=1,
                 max_depth=None, seed=0, n_jobs=None):
    """Stage 2: fit the balanced random forest on features ``X`` and ``y`` (1 = CR)."""
    from .forest import build_forest
    forest = build_forest(n_estimators=n_estimators, max_features=max_features,
                          min_samples_leaf=min_samples_leaf, max_depth=max_depth,
                          random_state=seed, n_jobs=n_jobs)
    t0 = time.time()
    forest.fit(X, np.asarray(y).astype(int))
    return forest, time.time() - t0


def frame_sources(frames):
    """(descriptions, iterator of (frames_ev, labels)) from paths or chunks."""
    if isinstance(frames, (str, Path)):
        frames = [frames]
    if isinstance(frames, (list, tuple)) and all(isinstance(f, (str, Path)) for f in frames):
        return [str(f) for f in frames], _path_chunks(frames)

    def gen():
        for ch in frames:
            if hasattr(ch, "frames") and hasattr(ch, "labels"):
                yield ch.frames, ch.labels
            else:
                yield ch[0], ch[1]
    return [getattr(frames, "description", "in-memory frame chunks")], gen()


def _path_chunks(paths):
    """(frames_ev, labels) of each file; Geant4 pixel-deposit tables a frame group
    at a time (:func:`xcrfilter.io.geant4.iter_training_chunks`, truth -> labels)."""
    from ..io.geant4 import is_pixel_table, iter_training_chunks
    for path in paths:
        if is_pixel_table(path):
            yield from iter_training_chunks(path)
        else:
            yield _frames_and_labels(path)


def _frames_and_labels(source):
    """(frames_ev, labels) from a FITS path (labels in a ``TRUTH`` extension,
    as the simulator writes; ``LABELS`` is read too) or an ``.npz`` with
    ``frames`` and ``labels``."""
    source = str(source)
    if source.endswith(".npz"):
        with np.load(source, allow_pickle=False) as d:
            return np.asarray(d["frames"], np.float32), np.asarray(d["labels"])
    from astropy.io import fits
    from ..io.frames import as_energy_cube
    cube = as_energy_cube(source, name="frames")
    with fits.open(source) as hdul:
        names = [h.name for h in hdul]
        key = next((k for k in ("TRUTH", "LABELS", "LABEL") if k in names), None)
        if key is None:
            raise ValueError(f"{source}: stage-2 training frames need a TRUTH image extension "
                             f"(0 none, 1 X-ray, 2 CR); found {names}")
        labels = np.asarray(hdul[key].data)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.shape != cube.data.shape:
        raise ValueError(f"{source}: {key} shape {labels.shape} != frames {cube.data.shape}")
    return cube.data, labels


def fit_stage2(output, X, is_cr, frame_idx, n_frames, *, meta, info1, frame_desc, seed=0,
               n_estimators=1000, max_features=3, min_samples_leaf=1, max_depth=None,
               target_fpr=0.0182, forest_val_fraction=0.3, n_jobs=None, command=None,
               t_feat=None, t_start=None):
    """Fit the forest, choose the threshold, write the model directory.

    Parameters
    ----------
    output : path-like
        Model directory already holding the stage-1 network and scaling.
    X : ndarray, shape (n, n_features)
        Features of the in-band events with a true class.
    is_cr : ndarray of bool, shape (n,)
        Truth (CR = True).
    frame_idx : ndarray of int, shape (n,)
        Frame of each event; the split into forest-training and
        threshold-validation events is by frame (``forest_val_fraction`` of
        the frames validate).
    n_frames : int
        Number of frames the events come from.
    meta, info1 : dict
        Model settings (``name``, ``window``, ``energy_band_ev``,
        ``feature_set`` ...) and the stage-1 summary.

    Returns
    -------
    dict
        ``model.json`` contents.
    """
    from ..evaluation.roc import roc_curve, threshold_at_fpr
    from .model_files import save_model

    t_start = time.time() if t_start is None else t_start
    is_cr = np.asarray(is_cr, bool)
    rng = np.random.default_rng(seed)
    frames_perm = rng.permutation(int(n_frames))
    val_frames = frames_perm[:int(round(n_frames * forest_val_fraction))]
    in_val = np.isin(np.asarray(frame_idx), val_frames)
    forest, t_forest = train_forest(X[~in_val], is_cr[~in_val], n_estimators=n_estimators,
                                    max_features=max_features,
                                    min_samples_leaf=min_samples_leaf, max_depth=max_depth,
                                    seed=seed, n_jobs=n_jobs)
    p_val = forest.predict_proba(X[in_val])[:, list(forest.classes_).index(1)]
    choice = threshold_at_fpr(is_cr[in_val], p_val, target_fpr)
    fpr, rec, _ = roc_curve(is_cr[in_val], p_val)
    auc = float(np.trapezoid(rec, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(rec, fpr))
    feature_set = meta.get("feature_set", "paper")
    names = list(FEATURE_NAMES) + (list(EXTRA_FEATURE_NAMES) if feature_set == "extended" else [])
    meta = dict(meta)
    meta.update({
        "threshold": float(choice.threshold),
        "threshold_choice": {"target_fpr": target_fpr, "fpr": choice.fpr,
                             "recall": choice.recall, "validation_auc": auc,
                             "on": "validation frames of the stage-2 data"},
        "feature_names": names,
        "stage1": info1,
        "stage2": {"frames": frame_desc, "n_frames": int(n_frames),
                   "n_events_train": int((~in_val).sum()),
                   "n_cr_train": int(is_cr[~in_val].sum()),
                   "n_events_val": int(in_val.sum()), "n_cr_val": int(is_cr[in_val].sum()),
                   "n_estimators": n_estimators, "max_features": max_features,
                   "min_samples_leaf": min_samples_leaf, "max_depth": max_depth,
                   "criterion": "gini", "sampling_strategy": "all", "replacement": True,
                   "bootstrap": False,
                   "feature_wall_s": None if t_feat is None else round(t_feat, 1),
                   "forest_wall_s": round(t_forest, 1)},
        "command": command or " ".join(sys.argv),
        "seed": int(seed),
        "versions": versions(),
        "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "total_wall_s": round(time.time() - t_start, 1),
    })
    card = model_card(meta)
    save_model(output, None, None, forest, meta, card)
    return meta


def model_card(meta):
    """Markdown model card from ``model.json`` contents."""
    s1 = meta.get("stage1", {})
    s2 = meta.get("stage2", {})
    tc = meta.get("threshold_choice", {})
    lines = [
        f"# CAM filter model `{meta.get('name')}`", "",
        "Two-stage cosmic-ray filter of Poliszczuk et al. (seed paper Sec. 3.2-3.3, 4):",
        "DenseNet frame classifier -> class activation maps -> ten event features ->",
        "balanced random forest -> CR probability `PROB_CR`.", "",
        "## Training command", "", "```", str(meta.get("command")), "```", "",
        "## Data", "",
        f"* Stage 1 tiles: `{s1.get('tiles')}` ({s1.get('n_tiles')} tiles, "
        f"{s1.get('n_train')} train / {s1.get('n_val')} validation), classes "
        f"{', '.join(meta.get('class_names', CLASS_NAMES))}.",
        f"* Stage 2 frames: {', '.join('`%s`' % f for f in s2.get('frames', []))} "
        f"({s2.get('n_frames')} frames, never used for stage 1); events in "
        f"{meta['energy_band_ev'][0] / 1e3:g}-{meta['energy_band_ev'][1] / 1e3:g} keV: "
        f"{s2.get('n_events_train')} train ({s2.get('n_cr_train')} CR), "
        f"{s2.get('n_events_val')} validation ({s2.get('n_cr_val')} CR).", "",
        "## Network", "",
        f"* {s1.get('n_params')} weights; architecture {s1.get('arch') or 'paper default'}.",
        f"* Adam, lr_n = {s1.get('lr0')} * {s1.get('decay')}**n, batch {s1.get('batch_size')}, "
        f"max {s1.get('max_epochs')} epochs, early stopping (patience {s1.get('patience')}).",
        f"* Ran {s1.get('epochs_run')} epochs in {s1.get('wall_s')} s; best epoch "
        f"{s1.get('best_epoch')}: validation accuracy {s1.get('val_accuracy')}.", "",
        "## Random forest", "",
        f"* BalancedRandomForestClassifier(n_estimators={s2.get('n_estimators')}, "
        f"criterion='gini', max_features={s2.get('max_features')}, "
        f"min_samples_leaf={s2.get('min_samples_leaf')}, max_depth={s2.get('max_depth')}, "
        "sampling_strategy='all', replacement=True, bootstrap=False).",
        f"* Features ({meta.get('feature_set')}): {', '.join(meta.get('feature_names', []))}.",
        f"* Threshold {meta.get('threshold'):.4f}: lost X-ray signal "
        f"{100 * tc.get('fpr', 0):.2f} % (target {100 * tc.get('target_fpr', 0):.2f} %), "
        f"CR recall {100 * tc.get('recall', 0):.1f} % "
        f"on the validation frames (ROC AUC {tc.get('validation_auc', float('nan')):.3f}).", "",
        "## Versions", "",
    ] + [f"* {k}: {v}" for k, v in meta.get("versions", {}).items()] + [
        "", f"Trained {meta.get('trained_utc')}; total wall time {meta.get('total_wall_s')} s.", ""]
    return "\n".join(lines)
