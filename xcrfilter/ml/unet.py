"""U-Net pixel segmentation with focal loss: network, loss and training.

The network classifies every pixel of a frame as readout noise, X-ray or
cosmic ray (the simulator's ``labels``: 0 none, 1 X-ray, 2 CR).  It is the
pixel-level segmentation alternative to the CAM filter:

* U-Net: a contracting path of ``3 x 3`` convolutions and ``2 x 2`` max
  pooling, an expanding path of ``2 x 2`` transposed convolutions
  ("deconvolution") whose outputs are concatenated with the feature maps of
  the same resolution (skip connections), and a ``1 x 1`` convolution with a
  softmax over the three classes (Ronneberger, Fischer & Brox 2015, MICCAI,
  LNCS 9351, 234; the U-Net of seed ``004``);
* focal loss ``FL(p_t) = -alpha_t (1 - p_t)**gamma log(p_t)`` (Lin et al.
  2017, ICCV, 2980; TPAMI 42, 318, 2020; seed ``004``, which uses
  ``alpha`` to trade precision for recall; seed ``001`` Sec. 2, its
  ref. 13, which used it against the class imbalance of sparse frames);
* input: the scaled logarithm of the pixel energy
  (`xcrfilter.ml.scaling.LogEnergyScaler`, seed ``001`` Sec. 2).

Model directories and the sparse inference are in `xcrfilter.ml.unet_model`.
"""
from __future__ import annotations

import functools
import time

import numpy as np

from .scaling import LogEnergyScaler
from .unet_model import CLASS_NAMES

__all__ = ["build_unet", "focal_loss", "focal_loss_value", "receptive_field",
           "flops_per_pixel", "training_crops", "train_unet"]


# -- architecture ---------------------------------------------------------------

def _check_arch(levels, base_filters, convs, kernel):
    for name, v, lo in (("levels", levels, 1), ("base_filters", base_filters, 1),
                        ("convs", convs, 1), ("kernel", kernel, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if kernel % 2 == 0:
        raise ValueError(f"kernel must be odd, got {kernel}")


def build_unet(levels=4, base_filters=8, convs=2, kernel=3, n_classes=3, seed=0):
    """The U-Net (Keras 3 functional model).

    Parameters
    ----------
    levels : int, optional
        Resolution levels including the bottleneck (default 4: full, 1/2,
        1/4 and 1/8 resolution).  Inputs must have sides divisible by
        ``2**(levels - 1)``.
    base_filters : int, optional
        Filters of the first level, doubled at every level down (default 8).
    convs : int, optional
        ``kernel x kernel`` convolutions (ReLU, same padding) per level and
        per path (default 2).
    kernel : int, optional
        Odd convolution size (default 3).
    n_classes : int, optional
        Output classes (default 3: noise, X-ray, CR).
    seed : int, optional
        Seed of the weight initialisers.

    Returns
    -------
    keras.Model
        Input ``(None, None, 1)`` (scaled log energy), output
        ``(None, None, n_classes)`` softmax probabilities.

    Raises
    ------
    ValueError
        Non-integer or non-positive sizes, an even kernel.
    """
    _check_arch(levels, base_filters, convs, kernel)
    import keras
    from keras import layers
    init = functools.partial(keras.initializers.HeNormal)
    k = 0

    def conv_block(x, filters, tag):
        nonlocal k
        for i in range(convs):
            k += 1
            x = layers.Conv2D(filters, kernel, padding="same", activation="relu",
                              kernel_initializer=init(seed=seed + k), name=f"{tag}_conv{i + 1}")(x)
        return x

    inp = keras.Input((None, None, 1), name="log_energy")
    x = inp
    skips = []
    for lev in range(levels - 1):
        x = conv_block(x, base_filters * 2 ** lev, f"down{lev + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{lev + 1}")(x)
    x = conv_block(x, base_filters * 2 ** (levels - 1), "bottom")
    for lev in reversed(range(levels - 1)):
        k += 1
        x = layers.Conv2DTranspose(base_filters * 2 ** lev, 2, strides=2,
                                   kernel_initializer=init(seed=seed + k),
                                   name=f"upconv{lev + 1}")(x)
        x = layers.Concatenate(name=f"skip{lev + 1}")([skips[lev], x])
        x = conv_block(x, base_filters * 2 ** lev, f"up{lev + 1}")
    k += 1
    out = layers.Conv2D(n_classes, 1, activation="softmax", name="classes",
                        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + k))(x)
    return keras.Model(inp, out, name="unet")


def receptive_field(levels=4, convs=2, kernel=3):
    """Receptive field of :func:`build_unet` [pixels], from the layer chain.

    An output pixel depends on the input pixels of a square whose side is
    computed by walking the longest path (through the bottleneck): a
    ``k x k`` convolution at input stride ``j`` widens it by ``(k - 1) j``,
    a ``2 x 2`` pooling by ``j`` (and doubles ``j``), a ``2 x 2`` stride-2
    transposed convolution maps each output pixel to one input pixel (adds
    nothing, halves ``j``).  Skip connections take shorter paths and widen
    nothing.  ``tests/test_unet.py`` checks the value against the gradient
    of a built network.

    Parameters
    ----------
    levels, convs, kernel : int
        As for :func:`build_unet`.

    Returns
    -------
    int
        Side of the receptive field, e.g. 96 for the defaults (4 levels,
        two 3 x 3 convolutions).
    """
    _check_arch(levels, 1, convs, kernel)
    rf, j = 1, 1
    for _ in range(levels - 1):
        rf += convs * (kernel - 1) * j
        rf += j          # 2 x 2 max pooling
        j *= 2
    rf += convs * (kernel - 1) * j  # bottleneck
    for _ in range(levels - 1):
        j //= 2                          # transposed convolution
        rf += convs * (kernel - 1) * j
    return int(rf)


def flops_per_pixel(levels=4, base_filters=8, convs=2, kernel=3, n_classes=3):
    """Multiply-adds x 2 of :func:`build_unet` per input pixel (inference).

    Each convolution costs ``2 k**2 c_in c_out`` per output pixel, a
    transposed ``2 x 2`` stride-2 convolution ``2 c_in c_out`` per output
    pixel; a level at ``1 / 2**l`` resolution has ``4**-l`` of the pixels.
    Bias additions, activations, pooling and concatenation are not counted.

    Returns
    -------
    float
        FLOPs per input pixel.
    """
    _check_arch(levels, base_filters, convs, kernel)
    total = 0.0
    c_in = 1

    def block(c_in, c_out):
        f = 0.0
        for _ in range(convs):
            f += 2 * kernel ** 2 * c_in * c_out
            c_in = c_out
        return f

    for lev in range(levels):
        c = base_filters * 2 ** lev
        total += block(c_in, c) / 4 ** lev
        c_in = c
    for lev in reversed(range(levels - 1)):
        c = base_filters * 2 ** lev
        total += 2 * c_in * c / 4 ** lev          # transposed convolution
        total += block(2 * c, c) / 4 ** lev
        c_in = c
    total += 2 * c_in * n_classes
    return float(total)


# -- focal loss -----------------------------------------------------------------

def _alpha_vector(alpha, n_classes=3):
    a = np.asarray(alpha, np.float64)
    if a.ndim == 0:
        a = np.full(n_classes, float(a))
    if a.shape != (n_classes,) or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"alpha must be a non-negative number or {n_classes} non-negative "
                         f"class weights, got {alpha!r}")
    return a.astype(np.float32)


def _check_gamma(gamma):
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.floating)) \
            or not np.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    return float(gamma)


def focal_loss_value(y_true, probs, alpha=1.0, gamma=2.0, eps=1e-7):
    """Mean focal loss of per-pixel class probabilities (NumPy reference).

    ``FL = -sum_c alpha_c y_c (1 - p_c)**gamma log(p_c)`` averaged over the
    pixels (Lin et al. 2017, Eq. 5, with one ``alpha`` per class);
    ``gamma = 0`` is the class-weighted cross-entropy.

    Parameters
    ----------
    y_true : int ndarray (...) or one-hot float ndarray (..., n_classes)
        Truth class of every pixel.
    probs : float ndarray (..., n_classes)
        Predicted probabilities (rows sum to 1); clipped to ``[eps, 1]``.
    alpha : float or sequence of float, optional
        Weight of each class (default 1 for all).
    gamma : float, optional
        Focusing parameter >= 0 (default 2, Lin et al.'s choice).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Shapes that do not match, alpha or gamma out of range.
    """
    probs = np.asarray(probs, np.float64)
    n = probs.shape[-1]
    y = np.asarray(y_true)
    if y.shape == probs.shape[:-1]:
        if np.any((y < 0) | (y >= n)):
            raise ValueError(f"y_true classes must lie in 0..{n - 1}")
        y = np.eye(n)[y.astype(int)]
    if y.shape != probs.shape:
        raise ValueError(f"y_true {np.shape(y_true)} does not match probs {probs.shape}")
    a = _alpha_vector(alpha, n).astype(np.float64)
    g = _check_gamma(gamma)
    p = np.clip(probs, eps, 1.0)
    return float(np.mean(np.sum(-a * y * (1 - p) ** g * np.log(p), axis=-1)))


def focal_loss(alpha=1.0, gamma=2.0, eps=1e-7):
    """The focal loss as a Keras loss function ``loss(y_true, y_pred)``.

    Same definition as :func:`focal_loss_value` (Lin et al. 2017; seed
    ``004``: ``alpha`` trades precision for recall), in `keras.ops`, for
    one-hot ``y_true`` of shape ``(batch, rows, cols, n_classes)``.

    Parameters
    ----------
    alpha : float or sequence of 3 floats, optional
        Class weights (noise, X-ray, CR); default 1.
    gamma : float, optional
        Focusing parameter >= 0; 0 gives the weighted cross-entropy.
    eps : float, optional
        Probability floor before the logarithm.

    Returns
    -------
    callable
        Mean loss per pixel of each sample, shape ``(batch,)``.

    Raises
    ------
    ValueError
        alpha negative or of the wrong length, gamma negative or not finite.
    """
    a = _alpha_vector(alpha)
    g = _check_gamma(gamma)

    def loss(y_true, y_pred):
        from keras import ops
        p = ops.clip(y_pred, eps, 1.0)
        w = ops.convert_to_tensor(a) * y_true * ops.power(1.0 - p, g)
        per_pixel = -ops.sum(w * ops.log(p), axis=-1)
        return ops.mean(per_pixel, axis=tuple(range(1, len(per_pixel.shape))))

    loss.__name__ = "focal_loss"
    return loss


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
        Architecture (:func:`build_unet`).
    alpha, gamma : optional
        Focal-loss parameters (:func:`focal_loss`).
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
                  alpha=[float(a) for a in _alpha_vector(alpha)], gamma=float(gamma),
                  batch_size=int(batch_size), learning_rate=float(learning_rate),
                  n_train=int(len(x)), crop=int(x.shape[1]), seed=int(seed),
                  stopped_early=bool(net.stop_training))
    return net, scaler, record
