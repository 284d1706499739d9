"""Training of both stages of the CAM filter (seed paper Sec. 3.2-3.3, 4).

Stage 1 (:mod:`xcrfilter.ml.stage1`, :func:`train_network`): the DenseNet
frame classifier on labelled 64 x 64 tiles.  Stage 2
(:mod:`xcrfilter.ml.stage2`, :func:`event_dataset`, :func:`train_forest`,
:func:`fit_stage2`): event features on frames never used for stage 1, the
balanced random forest and its threshold.

:func:`train` runs both and writes a model directory with a model card and
checksums (see :mod:`xcrfilter.ml.model_files`).  The functions of each stage
live in its own module.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


import numpy as np

from .stage1 import load_tiles, train_network
from .stage2 import DEFAULT_BAND_EV, event_dataset, fit_stage2, frame_sources

__all__ = ["train"]


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
        pixel-deposit table with truth columns (:mod:`xcrfilter.io.geant4`), or
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
        The paper's ten features, or those plus
        :data:`~xcrfilter.ml.features.EXTRA_FEATURE_NAMES`.
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
    from .model import CamModel
    from .model_files import load_network

    if feature_set not in ("paper", "extended"):
        raise ValueError(f"feature_set must be 'paper' or 'extended', got {feature_set!r}")
    output = Path(output)
    t_start = time.time()
    stage1 = not (skip_stage1 and (output / "densenet.keras").exists())
    if stage1:
        x, y, scaler = load_tiles(tiles)  # read and checked before anything is written
    output.mkdir(parents=True, exist_ok=True)
    if stage1:
        _, scaler, info1 = train_network(x, y, output, scaler=scaler, epochs=epochs,
                                         batch_size=batch_size, val_fraction=val_fraction,
                                         patience=patience, lr0=lr0, decay=decay, seed=seed,
                                         arch=arch, time_limit_s=time_limit_s,
                                         jit_compile=jit_compile)
        info1["tiles"] = str(tiles)
        (output / "stage1_info.json").write_text(json.dumps(info1, indent=2) + "\n")
    else:
        info1 = json.loads((output / "stage1_info.json").read_text()) \
            if (output / "stage1_info.json").exists() else {}

    network = load_network(output)
    meta = {"name": name or output.name, "window": 64, "energy_band_ev": list(band_ev),
            "feature_set": feature_set, "safe_divide_eps": 1e-3, "split_threshold_ev": 80.0}
    cam = CamModel(network, None, meta, "training", output)

    frame_files, chunks = frame_sources(frames)
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
