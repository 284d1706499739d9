"""Stage 1 of the CAM filter's training: the DenseNet frame classifier on tiles.

Seed paper Sec. 3.2: the classifier learns the classes EMPTY, XRAY, CR and
MIX of labelled 64 x 64 tiles (in equal numbers) with Adam and the paper's
exponential schedule ``lr_n = 0.007 * 0.95**n`` (Keras
``LearningRateScheduler``), early stopping on a validation split (best
weights restored), random 90-degree rotations / flips of the tiles (the
classes are invariant under them), a CSV log of the per-epoch metrics and a
per-epoch backup from which an interrupted run resumes.  Stage 2 is
:mod:`xcrfilter.ml.stage2`; :func:`xcrfilter.ml.training.train` runs both.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


import numpy as np

from .scaling import LogEnergyScaler
from .densenet import CLASS_NAMES, build_densenet, count_params

__all__ = ["load_tiles", "train_network", "recalibrate_batchnorm", "lr_schedule"]


def lr_schedule(epoch, lr0=0.007, decay=0.95):
    """Paper learning rate ``lr_n = lr0 * decay**n`` (n = 0-based epoch)."""
    return float(lr0 * decay ** int(epoch))


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
    try:
        d = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path}: not a tile file (.npz with 'tiles' and 'labels' arrays): "
                         f"{exc}") from None
    if not isinstance(d, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array, not a tile file (.npz with 'tiles' and "
                         "'labels' arrays)")
    with d:
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


def split_tiles(n, fraction, rng):
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
    tr, va = split_tiles(len(tiles), val_fraction, rng)
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
    from .model_files import export_network
    export_network(output)                 # densenet.onnx, what inference runs
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
