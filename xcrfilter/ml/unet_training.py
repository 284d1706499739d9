"""U-Net training: crops of simulated frames and the fit with the focal loss.

:func:`training_crops` simulates frames (randomised physics by default)
and cuts labelled crops around their X-ray and cosmic-ray pixels, rotated
and flipped at random; :func:`train_unet` fits the network of
`xcrfilter.ml.unet` (:func:`~xcrfilter.ml.unet.build_unet`) on them with
the focal loss (:func:`~xcrfilter.ml.unet.focal_loss`), Adam and a
learning rate halved every 4 epochs.  ``scripts/train_unet.py`` makes the
shipped model with them and writes it with
:func:`xcrfilter.ml.unet_model.save_unet_model`.  Keras is imported only
when training runs.
"""
from __future__ import annotations

import time

import numpy as np

from .scaling import LogEnergyScaler
from .unet import alpha_vector, build_unet, focal_loss
from .unet_model import CLASS_NAMES

__all__ = ["training_crops", "train_unet"]


# -- training data --------------------------------------------------------------

def training_crops(n_frames, seed, *, crop=64, random_per_frame=0.3, ranges=None,
                   params=None, detector=None, progress=True):
    """Crops of simulated frames around X-ray and CR pixels, with their labels.

    For every simulated 512 x 512 frame, one crop is centred (jittered by
    up to ``crop / 4``) on a random X-ray pixel and one on a random CR pixel
    when the frame has them, and with probability ``random_per_frame`` one
    anywhere; crops stay inside the frame.  Each crop is rotated by a random
    multiple of 90 degrees and possibly flipped (the physics is invariant).

    Parameters
    ----------
    n_frames : int
        Frames to simulate.
    seed : int
        Seed of the simulation and of the crop choice.
    crop : int, optional
        Crop side [pixels], default 64.
    random_per_frame : float, optional
        Probability of an extra crop anywhere in a frame.
    ranges : `~xcrfilter.simulate.PhysicsRanges`, optional
        Randomised physics (default: `PhysicsRanges()`); ignored when
        ``params`` is given.
    params, detector : optional
        A fixed physics setting instead (e.g. from `xcrfilter.simulate.preset`).
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    frames : float32 ndarray (n, crop, crop) [eV]
    labels : uint8 ndarray (n, crop, crop), 0 noise, 1 X-ray, 2 CR
    """
    from ..simulate import PhysicsRanges, RandomPhysicsSimulator, iter_frames
    rng = np.random.default_rng([int(seed), 7])
    kw = {}
    if params is not None or detector is not None:
        kw = dict(params=params, detector=detector)
    else:
        kw["physics"] = RandomPhysicsSimulator(ranges if ranges is not None else PhysicsRanges())
    xs, ys = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=int(n_frames), unit="frame", desc="crops")
    for ch in iter_frames(int(n_frames), seed=int(seed), chunk_size=64, **kw):
        n, ny, nx = ch.frames.shape
        for i in range(n):
            lab = ch.labels[i]
            centres = []
            for cls in (1, 2):
                pix = np.flatnonzero(lab == cls)
                if pix.size:
                    r, c = divmod(int(rng.choice(pix)), nx)
                    jit = rng.integers(-crop // 4, crop // 4 + 1, 2)
                    centres.append((r + jit[0], c + jit[1]))
            if rng.random() < random_per_frame:
                centres.append((rng.integers(0, ny), rng.integers(0, nx)))
            for r, c in centres:
                r0 = int(np.clip(r - crop // 2, 0, ny - crop))
                c0 = int(np.clip(c - crop // 2, 0, nx - crop))
                k, flip = int(rng.integers(4)), bool(rng.integers(2))
                for arr, out in ((ch.frames[i], xs), (lab, ys)):
                    w = np.rot90(arr[r0:r0 + crop, c0:c0 + crop], k)
                    out.append(w[:, ::-1] if flip else w)
        if bar is not None:
            bar.update(n)
    if bar is not None:
        bar.close()
    return np.asarray(xs, np.float32), np.asarray(ys, np.uint8)


def train_unet(frames_ev, labels, *, val_frames_ev=None, val_labels=None, levels=4,
               base_filters=8, convs=2, alpha=(0.25, 1.0, 1.0), gamma=2.0, epochs=10,
               batch_size=32, learning_rate=2e-3, time_limit=None, seed=0, verbose=2,
               log_path=None):
    """Train :func:`build_unet` with the focal loss on labelled crops.

    Parameters
    ----------
    frames_ev : float ndarray (n, rows, cols) [eV]
        Training crops; sides divisible by ``2**(levels - 1)``.
    labels : int ndarray (n, rows, cols)
        Their per-pixel classes (0 noise, 1 X-ray, 2 CR).
    val_frames_ev, val_labels : optional
        Validation crops, for the per-epoch log.
    levels, base_filters, convs : int
        Architecture (:func:`~xcrfilter.ml.unet.build_unet`).
    alpha, gamma : optional
        Focal-loss parameters (:func:`~xcrfilter.ml.unet.focal_loss`).
    epochs, batch_size, learning_rate : optional
        Adam with the learning rate halved every 4 epochs.
    time_limit : float, optional
        Stop after the batch that passes this many seconds (the last epoch
        is then partial; ``record["stopped_early"]`` says so).
    seed : int
        Seed of the initial weights and of the batch order.
    verbose : int
        Keras ``fit`` verbosity.
    log_path : path-like, optional
        CSV log of the per-epoch losses.

    Returns
    -------
    network : keras.Model
    scaler : `~xcrfilter.ml.scaling.LogEnergyScaler`
    record : dict
        Epochs run, seconds, final losses, parameters.

    Raises
    ------
    ValueError
        Shapes that do not match or are not divisible by ``2**(levels - 1)``.
    """
    import keras
    x = np.asarray(frames_ev, np.float32)
    y = np.asarray(labels)
    if x.ndim != 3 or y.shape != x.shape:
        raise ValueError(f"frames_ev must be (n, rows, cols) with labels of the same shape, "
                         f"got {x.shape} and {y.shape}")
    step = 2 ** (levels - 1)
    if x.shape[1] % step or x.shape[2] % step:
        raise ValueError(f"crop sides {x.shape[1:]} must be divisible by {step} "
                         f"(levels={levels})")
    keras.utils.set_random_seed(int(seed))
    scaler = LogEnergyScaler.fit(x)
    net = build_unet(levels, base_filters, convs, seed=seed)
    net.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss=focal_loss(alpha, gamma))
    onehot = np.eye(len(CLASS_NAMES), dtype=np.float32)
    val = None
    if val_frames_ev is not None:
        val = (scaler.transform(val_frames_ev)[..., None],
               onehot[np.asarray(val_labels, int)])
    t0 = time.time()
    callbacks = [keras.callbacks.LearningRateScheduler(
        lambda e: float(learning_rate * 0.5 ** (e // 4)))]
    if log_path is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(log_path)))
    if time_limit is not None:
        class _Budget(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if time.time() - t0 > time_limit:
                    self.model.stop_training = True
        callbacks.append(_Budget())
    hist = net.fit(scaler.transform(x)[..., None], onehot[y.astype(int)], batch_size=batch_size,
                   epochs=epochs, validation_data=val, callbacks=callbacks, verbose=verbose,
                   shuffle=True)
    record = dict(epochs=len(hist.history["loss"]), seconds=round(time.time() - t0, 1),
                  loss=[float(v) for v in hist.history["loss"]],
                  val_loss=[float(v) for v in hist.history.get("val_loss", [])],
                  alpha=[float(a) for a in alpha_vector(alpha)], gamma=float(gamma),
                  batch_size=int(batch_size), learning_rate=float(learning_rate),
                  n_train=int(len(x)), crop=int(x.shape[1]), seed=int(seed),
                  stopped_early=bool(net.stop_training))
    return net, scaler, record
