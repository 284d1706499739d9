"""U-Net pixel segmentation with focal loss: the network and the loss.

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

Training (crops of simulated frames, the fit) is in
`xcrfilter.ml.unet_training`; model directories and the sparse inference
are in `xcrfilter.ml.unet_model`.
"""
from __future__ import annotations


import numpy as np

__all__ = ["build_unet", "focal_loss", "focal_loss_value", "alpha_vector", "receptive_field",
           "flops_per_pixel"]


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
    # weights drawn with NumPy (Keras' HeNormal / GlorotUniform distributions): no
    # compilation of random-number kernels when the network is built
    from .densenet import NumpyInitializer
    k = 0

    def conv_block(x, filters, tag):
        nonlocal k
        for i in range(convs):
            k += 1
            x = layers.Conv2D(filters, kernel, padding="same", activation="relu",
                              kernel_initializer=NumpyInitializer("he_normal", seed + k),
                              name=f"{tag}_conv{i + 1}")(x)
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
                                   kernel_initializer=NumpyInitializer("he_normal", seed + k),
                                   name=f"upconv{lev + 1}")(x)
        x = layers.Concatenate(name=f"skip{lev + 1}")([skips[lev], x])
        x = conv_block(x, base_filters * 2 ** lev, f"up{lev + 1}")
    k += 1
    out = layers.Conv2D(n_classes, 1, activation="softmax", name="classes",
                        kernel_initializer=NumpyInitializer("glorot_uniform", seed + k))(x)
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

def alpha_vector(alpha, n_classes=3):
    """The focal loss's class weights: ``alpha`` as ``n_classes`` float32 weights.

    A number weights every class alike; a sequence gives one weight a class
    (in the order of `xcrfilter.ml.unet_model.CLASS_NAMES`).

    Raises
    ------
    ValueError
        A negative or non-finite weight, or not ``n_classes`` of them.
    """
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
    a = alpha_vector(alpha, n).astype(np.float64)
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
    a = alpha_vector(alpha)
    g = _check_gamma(gamma)

    def loss(y_true, y_pred):
        from keras import ops
        p = ops.clip(y_pred, eps, 1.0)
        w = ops.convert_to_tensor(a) * y_true * ops.power(1.0 - p, g)
        per_pixel = -ops.sum(w * ops.log(p), axis=-1)
        return ops.mean(per_pixel, axis=tuple(range(1, len(per_pixel.shape))))

    loss.__name__ = "focal_loss"
    return loss
