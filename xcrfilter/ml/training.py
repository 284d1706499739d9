"""Training of both stages of the CAM filter (seed paper Sec. 3.2-3.3, 4).

Stage 1 (:func:`train_network`): the DenseNet frame classifier on labelled
64 x 64 tiles (classes EMPTY, XRAY, CR, MIX in equal numbers), Adam with the
paper's exponential schedule ``lr_n = 0.007 * 0.95**n`` (Keras
``LearningRateScheduler``), early stopping on a validation split (best
weights restored), random 90-degree rotations / flips of the tiles (the
classes are invariant under them), a CSV log of the per-epoch metrics and a
per-epoch backup from which an interrupted run resumes.

Stage 2 (:func:`event_dataset`, :func:`train_forest`): events are found in
full frames *never used for stage 1* exactly as the traditional filter does
(:func:`xcrfilter.events.find_events`, no grade cut), their truth is the
label of the central pixel, events with ``0.3 keV <= ENERGY < 10 keV`` get the
ten features of :mod:`xcrfilter.ml.features`, and a balanced random forest is
fitted on a part of the frames.  The CR-probability threshold is read off the
ROC on the remaining (validation) frames at a target lost-X-ray fraction
(default 1.82 %, the paper's operating point).

:func:`train` runs both and writes a model directory with a model card and
checksums (see :mod:`xcrfilter.ml.model`).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402

from ..scaling import LogEnergyScaler  # noqa: E402
from ..units import DEFAULT_BAND  # noqa: E402
from .densenet import CLASS_NAMES, build_densenet, count_params  # noqa: E402
from .features import FEATURE_NAMES, EXTRA_FEATURE_NAMES  # noqa: E402

__all__ = ["load_tiles", "train_network", "event_dataset", "train_forest", "train", "fit_stage2",
           "recalibrate_batchnorm",
           "lr_schedule", "versions", "DEFAULT_BAND_EV"]

#: Energy band of the scored events [eV] (paper Sec. 3.3), lower inclusive.
DEFAULT_BAND_EV = tuple(float(e) for e in DEFAULT_BAND.to_value("eV"))


def lr_schedule(epoch, lr0=0.007, decay=0.95):
    """Paper learning rate ``lr_n = lr0 * decay**n`` (n = 0-based epoch)."""
    return float(lr0 * decay ** int(epoch))


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


def load_tiles(path):
    """Read a tile data set (``.npz``).

    Parameters
    ----------
    path : str or path-like
        File with ``tiles`` (N, 64, 64) float32 [eV] and ``labels`` (N,) int
        (class index in ``classes``, default EMPTY, XRAY, CR, MIX), or the
        format of :func:`xcrfilter.simulate.build_tile_dataset` (per-pixel
        ``labels`` (N, 64, 64), class indices ``classes`` (N,) and
        ``class_names``); optional
        scaling statistics ``scaling_mean`` / ``scaling_std`` (or
        ``log_mean`` / ``log_std``).

    Returns
    -------
    tiles : ndarray (N, H, W) float32
    labels : ndarray (N,) int64, class indices in :data:`CLASS_NAMES` order
    scaler : LogEnergyScaler or None

    Raises
    ------
    ValueError
        Missing arrays, wrong shapes or class names the network does not know.
    """
    with np.load(path, allow_pickle=False) as d:
        keys = set(d.files)
        tkey = next((k for k in ("tiles", "x", "frames") if k in keys), None)
        lkey = next((k for k in ("labels", "y", "classes_idx") if k in keys), None)
        if tkey is None or lkey is None:
            raise ValueError(f"{path}: tile file needs 'tiles' and 'labels' arrays, "
                             f"has {sorted(keys)}")
        tiles = np.asarray(d[tkey], dtype=np.float32)
        labels = np.asarray(d[lkey])
        classes = np.asarray(d["classes"]) if "classes" in keys else None
        if labels.ndim == 3 and classes is not None and classes.dtype.kind in "iu":
            # xcrfilter.simulate.build_tile_dataset: per-pixel truth in
            # ``labels``, per-tile class index in ``classes``, names in
            # ``class_names``
            labels = classes
            names = ([str(c) for c in d["class_names"]] if "class_names" in keys
                     else list(CLASS_NAMES))
        else:
            names = [str(c) for c in classes] if classes is not None else list(CLASS_NAMES)
        labels = labels.astype(np.int64)
        scaler = None
        for mk, sk in (("scaling_mean", "scaling_std"), ("log_mean", "log_std"),
                       ("mean", "std")):
            if mk in keys and sk in keys:
                scaler = LogEnergyScaler(float(d[mk]), float(d[sk]))
                break
    if tiles.ndim != 3 or len(tiles) != len(labels):
        raise ValueError(f"{path}: tiles must be (N, H, W) with N labels, got {tiles.shape} "
                         f"and {labels.shape}")
    names = [n.upper().replace("X-RAY", "XRAY").replace("GCR", "CR") for n in names]
    unknown = set(names) - set(CLASS_NAMES)
    if unknown:
        raise ValueError(f"{path}: unknown tile classes {sorted(unknown)}; expected {CLASS_NAMES}")
    remap = np.array([CLASS_NAMES.index(n) for n in names])
    return tiles, remap[labels], scaler


def _split(n, fraction, rng):
    idx = rng.permutation(n)
    n_val = int(round(n * fraction))
    return idx[n_val:], idx[:n_val]


def train_network(tiles, labels, output, *, scaler=None, epochs=30, batch_size=64,
                  val_fraction=0.1, patience=5, lr0=0.007, decay=0.95, seed=0,
                  arch=None, verbose="auto", resume=True, time_limit_s=None, jit_compile="auto"):
    """Stage 1: train the DenseNet frame classifier.

    Parameters
    ----------
    tiles : ndarray, shape (N, H, W)
        Tiles in eV.
    labels : ndarray, shape (N,)
        Class indices (:data:`~xcrfilter.ml.densenet.CLASS_NAMES`).
    output : path-like
        Directory for ``densenet.keras``, ``scaling.json``,
        ``stage1_log.csv`` and the resume backup ``stage1_backup/``.
    scaler : LogEnergyScaler, optional
        Input scaling; default measured on the training tiles.
    epochs, batch_size, val_fraction, patience : optional
        Maximum epochs (30), batch size (64), validation fraction (0.1),
        early-stopping patience on the validation loss (5 epochs).
    lr0, decay : float, optional
        Learning-rate schedule (paper: 0.007 and 0.95).
    seed : int, optional
        Seed of the split, weights, dropout and augmentation.
    arch : dict, optional
        Keyword arguments of :func:`~xcrfilter.ml.densenet.build_densenet`.
    resume : bool, optional
        Continue from ``stage1_backup/`` if present.
    time_limit_s : float, optional
        Stop after the first epoch that ends later than this many seconds
        after the start (the best weights so far are kept).
    jit_compile : bool or "auto", optional
        Passed to ``Model.compile`` (False avoids compilation for tiny runs).

    Returns
    -------
    model : keras.Model
        With the best validation weights.
    scaler : LogEnergyScaler
    info : dict
        Epochs run, best epoch, validation accuracy, wall time, parameters.
    """
    import keras

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(int(seed))
    rng = np.random.default_rng(seed)
    tr, va = _split(len(tiles), val_fraction, rng)
    if scaler is None:
        scaler = LogEnergyScaler.fit(tiles[tr])
    (output / "scaling.json").write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    xtr = scaler.transform(tiles[tr])[..., None]
    xva = scaler.transform(tiles[va])[..., None]
    ytr, yva = labels[tr], labels[va]

    class Augmented(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def __len__(self):
            return int(np.ceil(len(xtr) / batch_size))

        def __getitem__(self, i):
            r = np.random.default_rng([seed, self.epoch, i])
            sl = self.order[i * batch_size:(i + 1) * batch_size]
            x = xtr[sl]
            k = r.integers(4)
            x = np.rot90(x, k, axes=(1, 2))
            if r.integers(2):
                x = x[:, :, ::-1]
            return np.ascontiguousarray(x), ytr[sl]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(xtr))

    data = Augmented()
    data.order = np.random.default_rng([seed, 0]).permutation(len(xtr))

    model = build_densenet(input_shape=(None, None, 1), n_classes=len(CLASS_NAMES), seed=seed,
                           **(arch or {}))
    model.compile(optimizer=keras.optimizers.Adam(lr0),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=jit_compile)
    backup = output / "stage1_backup"
    log = output / "stage1_log.csv"
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda n, lr: lr_schedule(n, lr0, decay)),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True, verbose=1),
        keras.callbacks.CSVLogger(str(log), append=bool(resume and backup.exists())),
        keras.callbacks.BackupAndRestore(str(backup), delete_checkpoint=False),
    ]
    if time_limit_s is not None:
        callbacks.append(_TimeLimit(float(time_limit_s)))
    if not resume and backup.exists():
        import shutil
        shutil.rmtree(backup)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    t0 = time.time()
    hist = model.fit(data, validation_data=(xva, yva), epochs=int(epochs), callbacks=callbacks,
                     verbose=verbose)
    wall = time.time() - t0
    recalibrate_batchnorm(model, xtr, seed=seed)
    val_pred = model.predict(xva, batch_size=256, verbose=0).argmax(axis=1)
    val_acc_recal = float((val_pred == yva).mean()) if len(yva) else None
    model.save(output / "densenet.keras")
    val_loss = hist.history.get("val_loss", [])
    best = int(np.argmin(val_loss)) if val_loss else -1
    info = {"n_tiles": int(len(tiles)), "n_train": int(len(tr)), "n_val": int(len(va)),
            "epochs_run": len(val_loss), "best_epoch": best + 1 if best >= 0 else None,
            "val_loss": float(val_loss[best]) if val_loss else None,
            "val_accuracy": float(hist.history["val_accuracy"][best]) if val_loss else None,
            "val_accuracy_after_bn_recalibration": val_acc_recal,
            "wall_s": round(wall, 1), "n_params": count_params(model),
            "batch_size": int(batch_size), "lr0": lr0, "decay": decay, "patience": patience,
            "max_epochs": int(epochs), "val_fraction": val_fraction, "seed": int(seed),
            "arch": arch or {}}
    return model, scaler, info


def recalibrate_batchnorm(model, x, batch_size=512, seed=0):
    """Set every batch-norm layer's moving statistics to exact training statistics.

    The moving averages of batch normalisation lag behind the weights when
    these change fast (high learning rate, few epochs), which makes the
    inference-mode network much worse than the training-mode one.  This
    recomputes them ("precise BN"): one forward pass in training mode over
    ``batch_size`` random training tiles with dropout disabled and momentum
    0, so each moving mean / variance becomes the statistics of its layer's
    input on those tiles given the recalibrated layers before it.

    Parameters
    ----------
    model : keras.Model
    x : ndarray, shape (n, H, W, 1)
        Scaled training tiles.
    batch_size : int, optional
        Number of tiles used (512).
    seed : int, optional
        Seed of the tile choice.
    """
    import keras
    rng = np.random.default_rng(seed)
    sel = rng.choice(len(x), size=min(int(batch_size), len(x)), replace=False)
    bns = [ly for ly in model.layers if isinstance(ly, keras.layers.BatchNormalization)]
    drops = [ly for ly in model.layers if isinstance(ly, keras.layers.Dropout)]
    saved = [ly.momentum for ly in bns], [ly.rate for ly in drops]
    try:
        for ly in bns:
            ly.momentum = 0.0
        for ly in drops:
            ly.rate = 0.0
        model(np.asarray(x[np.sort(sel)], dtype=np.float32), training=True)
    finally:
        for ly, m in zip(bns, saved[0]):
            ly.momentum = m
        for ly, r in zip(drops, saved[1]):
            ly.rate = r
    return model


def _time_limit_callback():
    import keras

    class TimeLimit(keras.callbacks.Callback):
        """Stop training at the end of the epoch that passes a wall-time budget."""

        def __init__(self, seconds):
            super().__init__()
            self.seconds = seconds
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if time.time() - self.t0 > self.seconds:
                print(f"time limit {self.seconds:.0f} s reached after epoch {epoch + 1}",
                      flush=True)
                self.model.stop_training = True

    return TimeLimit


def _TimeLimit(seconds):
    return _time_limit_callback()(seconds)


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
    from ..events import find_events

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


def _frame_sources(frames):
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
    at a time (:func:`xcrfilter.geant4.iter_training_chunks`, truth -> labels)."""
    from ..geant4 import is_pixel_table, iter_training_chunks
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
    from ..io import as_energy_cube
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


def train(tiles, frames, output, *, epochs=30, batch_size=64, val_fraction=0.1, patience=5,
          lr0=0.007, decay=0.95, seed=0, arch=None, n_estimators=1000, max_features=3,
          min_samples_leaf=1, max_depth=None, target_fpr=0.0182, forest_val_fraction=0.3,
          feature_set="paper", band_ev=DEFAULT_BAND_EV, name=None, command=None,
          skip_stage1=False, n_jobs=None, progress=True, time_limit_s=None, jit_compile="auto"):
    """Train both stages and write a complete model directory.

    Parameters
    ----------
    tiles : path-like
        Stage-1 tile file (:func:`load_tiles`).
    frames : path-like or list of path-like
        Stage-2 frames with truth (FITS with a ``TRUTH`` extension, a Geant4
        pixel-deposit table with truth columns (:mod:`xcrfilter.geant4`), or
        ``.npz`` with ``frames`` and ``labels``), never used for stage 1.
    output : path-like
        Model directory.
    epochs, batch_size, val_fraction, patience, lr0, decay, arch :
        Stage-1 settings (:func:`train_network`).
    seed : int
        Seed of everything.
    n_estimators, max_features, min_samples_leaf, max_depth :
        Forest settings (:func:`train_forest`).
    target_fpr : float
        Lost-X-ray target of the threshold choice (0.0182).
    forest_val_fraction : float
        Fraction of the stage-2 frames kept for the threshold choice.
    feature_set : {"paper", "extended"}
        The paper's ten features, or those plus :data:`EXTRA_FEATURE_NAMES`.
    skip_stage1 : bool
        Reuse ``output/densenet.keras`` (e.g. a finished stage 1).
    time_limit_s : float, optional
        Wall-time budget of stage 1 (see :func:`train_network`).
    command : str, optional
        Command line recorded in the model card.

    Returns
    -------
    dict
        The ``model.json`` contents.
    """
    from .model import CamModel, load_network

    if feature_set not in ("paper", "extended"):
        raise ValueError(f"feature_set must be 'paper' or 'extended', got {feature_set!r}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    if skip_stage1 and (output / "densenet.keras").exists():
        info1 = json.loads((output / "stage1_info.json").read_text()) \
            if (output / "stage1_info.json").exists() else {}
    else:
        x, y, scaler = load_tiles(tiles)
        _, scaler, info1 = train_network(x, y, output, scaler=scaler, epochs=epochs,
                                         batch_size=batch_size, val_fraction=val_fraction,
                                         patience=patience, lr0=lr0, decay=decay, seed=seed,
                                         arch=arch, time_limit_s=time_limit_s,
                                         jit_compile=jit_compile)
        info1["tiles"] = str(tiles)
        (output / "stage1_info.json").write_text(json.dumps(info1, indent=2) + "\n")

    network = load_network(output)
    meta = {"name": name or output.name, "window": 64, "energy_band_ev": list(band_ev),
            "feature_set": feature_set, "safe_divide_eps": 1e-3, "split_threshold_ev": 80.0}
    cam = CamModel(network, None, meta, "training", output)

    frame_files, chunks = _frame_sources(frames)
    ev_all, X_all = [], []
    offset = 0
    t0 = time.time()
    for fr, lab in chunks:
        ev, X = event_dataset(cam, fr, lab, band_ev=band_ev, progress=False)
        ev = ev[np.asarray(ev["IN_BAND"])]
        ev["FRAME"] = ev["FRAME"] + np.int32(offset)
        offset += len(fr)
        ev_all.append(ev)
        X_all.append(X)
        if progress:
            print(f"stage 2: {offset} frames, {sum(len(e) for e in ev_all)} in-band events, "
                  f"{int(sum((np.asarray(e['TRUTH']) == 2).sum() for e in ev_all))} CR, "
                  f"{time.time() - t0:.0f} s", flush=True)
    t_feat = time.time() - t0
    from astropy.table import vstack
    ev = vstack(ev_all) if len(ev_all) > 1 else ev_all[0]
    X = np.vstack(X_all)
    truth = np.asarray(ev["TRUTH"])
    keep = truth > 0
    return fit_stage2(output, X[keep], truth[keep] == 2, np.asarray(ev["FRAME"])[keep], offset,
                      meta=meta, info1=info1, frame_desc=frame_files, seed=seed,
                      n_estimators=n_estimators, max_features=max_features,
                      min_samples_leaf=min_samples_leaf, max_depth=max_depth,
                      target_fpr=target_fpr, forest_val_fraction=forest_val_fraction,
                      n_jobs=n_jobs, command=command, t_feat=t_feat, t_start=t_start)


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
    from ..metrics import roc_curve, threshold_at_fpr
    from .model import save_model

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
