"""DenseNet frame classifier of the CAM filter (first stage).

Seed paper Sec. 3.2 ("Frame classification model"): one initial
convolutional block, two dense blocks of five convolutional layers, growth
rate 12, 64 initial filters, batch normalisation + ReLU + 0.2 dropout in every
convolutional layer, final resolution 16 x 16 for a 64 x 64 input (factor 4),
global average pooling (GAP) and a four-class softmax over
``EMPTY, XRAY, CR, MIX``.

Layout built by :func:`build_densenet` (every size is a parameter)::

    input (H, W, 1)  scaled log energy (xcrfilter.ml.scaling.LogEnergyScaler)
    initial block:   Conv(k x k, F0, stride 1) - BN - ReLU - MaxPool(2)    -> H/2
    dense block 1:   L x [BN - ReLU - Conv(3x3, growth) - Dropout] + concat
    transition:      BN - ReLU - Conv(1x1, compression * C) - AvgPool(2)   -> H/4
    dense block 2:   L x [BN - ReLU - Conv(3x3, growth) - Dropout] + concat
    final:           BN - ReLU                                  -> "cam_features" a_i(x, y)
    GAP - Dense(n_classes) ("logits") - softmax ("probabilities")

The network is fully convolutional up to the GAP, so the same weights run on
any input size whose sides are multiples of 4.  The class activation maps
(:mod:`xcrfilter.ml.cam`) are read from the ``cam_features`` layer and the
kernel of the ``logits`` layer.
"""
from __future__ import annotations

import keras
from keras import layers

# class order and layer names, defined where inference (without Keras) reads them
from .netgraph import CLASS_NAMES, FEATURES_LAYER, LOGITS_LAYER

__all__ = ["CLASS_NAMES", "build_densenet", "count_params", "FEATURES_LAYER", "LOGITS_LAYER",
           "NumpyInitializer"]


@keras.saving.register_keras_serializable(package="xcrfilter")
class NumpyInitializer(keras.initializers.Initializer):
    """He-normal or Glorot-uniform weights drawn with NumPy.

    Same distributions as Keras' ``HeNormal`` / ``GlorotUniform``, but drawn
    on the host with ``numpy.random.default_rng(seed)``: building the network
    then needs no compilation of random-number kernels (30 s -> 1 s on a
    loaded 2-core CPU).
    """

    def __init__(self, kind="he_normal", seed=0):
        if kind not in ("he_normal", "glorot_uniform"):
            raise ValueError(f"kind must be 'he_normal' or 'glorot_uniform', got {kind!r}")
        self.kind = kind
        self.seed = int(seed)

    def __call__(self, shape, dtype=None):
        import numpy as np
        shape = tuple(int(s) for s in shape)
        rng = np.random.default_rng(self.seed)
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in = shape[-2] * receptive if len(shape) > 1 else shape[0]
        fan_out = shape[-1] * receptive
        if self.kind == "he_normal":  # truncated at 2 sigma, as Keras' HeNormal
            std = np.sqrt(2.0 / fan_in) / 0.87962566103423978
            w = rng.normal(0.0, 1.0, shape)
            bad = np.abs(w) > 2
            while bad.any():
                w[bad] = rng.normal(0.0, 1.0, int(bad.sum()))
                bad = np.abs(w) > 2
            w = w * std
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, shape)
        return w.astype(dtype or "float32")

    def get_config(self):
        return {"kind": self.kind, "seed": self.seed}


def _he(seed):
    return NumpyInitializer("he_normal", seed)


def _bn(name, momentum):
    return layers.BatchNormalization(momentum=momentum, name=name)


def _conv_layer(x, filters, kernel, dropout, name, seed, momentum):
    x = _bn(f"{name}_bn", momentum)(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                      kernel_initializer=_he(seed), name=f"{name}_conv")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, seed=seed, name=f"{name}_drop")(x)
    return x


def _dense_block(x, n_layers, growth_rate, dropout, name, seed, momentum):
    for i in range(n_layers):
        y = _conv_layer(x, growth_rate, 3, dropout, f"{name}_l{i + 1}", seed + i, momentum)
        x = layers.Concatenate(name=f"{name}_cat{i + 1}")([x, y])
    return x


def build_densenet(input_shape=(None, None, 1), n_classes=4, initial_filters=64,
                   initial_kernel=3, growth_rate=12, n_blocks=2, layers_per_block=5,
                   dropout=0.2, compression=0.5, initial_stride=1, transition_pool=True,
                   bn_momentum=0.9, seed=0):
    """Build the (uncompiled) DenseNet frame classifier.

    Parameters
    ----------
    input_shape : tuple of int or None, optional
        ``(rows, cols, 1)``; ``None`` sides (default) make the model fully
        convolutional: it runs on any size whose sides are multiples of
        ``2 ** n_blocks`` (4 by default).
    n_classes : int, optional
        Number of output classes (4: EMPTY, XRAY, CR, MIX).
    initial_filters : int, optional
        Filters of the initial convolution (64 in the paper).
    initial_kernel : int, optional
        Kernel size of the initial convolution (3).
    growth_rate : int, optional
        Filters added by each dense-block layer (12 in the paper).
    n_blocks : int, optional
        Number of dense blocks (2).  Each block but the last is followed by a
        transition with 2 x 2 average pooling; the initial block has a 2 x 2
        max pooling, so the output stride is ``2 ** n_blocks``.
    layers_per_block : int, optional
        Convolutional layers per dense block (5).
    dropout : float, optional
        Dropout rate after every dense-block convolution (0.2).
    compression : float, optional
        Channel compression of the transition 1 x 1 convolution (0.5, the
        DenseNet-BC choice).
    initial_stride : int, optional
        Stride of the initial convolution (1).  ``2`` with
        ``transition_pool=False`` gives the same output stride (4) at about
        a third of the cost (both dense blocks then run at 1/4 resolution,
        like the ImageNet DenseNet stem).
    transition_pool : bool, optional
        2 x 2 average pooling in the transitions (True).
    bn_momentum : float, optional
        Momentum of the batch-normalisation moving averages (0.9: short
        time constant, so that validation metrics during training are
        meaningful; the statistics are recomputed exactly after training by
        :func:`xcrfilter.ml.stage1.recalibrate_batchnorm`).
    seed : int, optional
        Seed of the weight initialisers and dropout.

    Returns
    -------
    keras.Model
        Input: scaled log energy, float32 ``(batch, rows, cols, 1)``.  Output:
        class probabilities ``(batch, n_classes)`` (softmax).  Layers named
        ``cam_features`` (last conv activations, ``(batch, rows/4, cols/4,
        C)``) and ``logits`` (pre-softmax scores) are used for the CAMs.

    Raises
    ------
    ValueError
        If a size parameter is not positive.
    """
    for name, v in (("n_classes", n_classes), ("initial_filters", initial_filters),
                    ("growth_rate", growth_rate), ("n_blocks", n_blocks),
                    ("layers_per_block", layers_per_block), ("initial_kernel", initial_kernel)):
        if int(v) < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if not 0 < compression <= 1:
        raise ValueError(f"compression must be in (0, 1], got {compression!r}")

    mom = float(bn_momentum)
    inputs = keras.Input(shape=tuple(input_shape), name="scaled_log_energy")
    x = layers.Conv2D(initial_filters, initial_kernel, strides=int(initial_stride),
                      padding="same", use_bias=False,
                      kernel_initializer=_he(seed), name="init_conv")(inputs)
    x = _bn("init_bn", mom)(x)
    x = layers.Activation("relu", name="init_relu")(x)
    x = layers.MaxPooling2D(2, name="init_pool")(x)
    for b in range(n_blocks):
        x = _dense_block(x, layers_per_block, growth_rate, dropout, f"block{b + 1}",
                         seed + 100 * (b + 1), mom)
        if b < n_blocks - 1:
            channels = max(1, int(int(x.shape[-1]) * compression))
            x = _bn(f"trans{b + 1}_bn", mom)(x)
            x = layers.Activation("relu", name=f"trans{b + 1}_relu")(x)
            x = layers.Conv2D(channels, 1, padding="same", use_bias=False,
                              kernel_initializer=_he(seed + 7),
                              name=f"trans{b + 1}_conv")(x)
            if transition_pool:
                x = layers.AveragePooling2D(2, name=f"trans{b + 1}_pool")(x)
    x = _bn("final_bn", mom)(x)
    x = layers.Activation("relu", name=FEATURES_LAYER)(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(n_classes, kernel_initializer=NumpyInitializer("glorot_uniform", seed + 9),
                     name=LOGITS_LAYER)(x)
    outputs = layers.Activation("softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="cam_densenet")


def count_params(model):
    """Total number of weights (trainable and not) of ``model``."""
    return int(sum(int(w.numpy().size) if hasattr(w, "numpy") else int(w.size)
                   for w in model.weights))
