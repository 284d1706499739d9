"""Class activation maps (CAM) of the DenseNet frame classifier.

Seed paper Sec. 3.2, Eq. 1: with ``a_i(x, y)`` the activation of feature map
``i`` of the last convolutional layer and ``w_i^k`` the weight of the dense
layer for class ``k``,

    CAM_k(x, y) = sum_i w_i^k a_i(x, y)

and the pre-softmax score is ``S_k = sum_i w_i^k GAP_i + b_k`` with
``GAP_i = mean_{x,y} a_i(x, y)``.  **Bias convention**: the CAM carries no
bias, so ``mean_{x,y} CAM_k(x, y) + b_k = S_k`` exactly (the paper writes the
GAP as a sum and drops the bias; the mean is the Keras
``GlobalAveragePooling2D`` the network uses).  The maps come out at 1/4 of the
input resolution and are bilinearly upsampled by the output stride to the
input resolution (half-pixel centres, edge values clamped; this upsampling
preserves the mean, so the identity above also holds for upsampled maps).

Two ways of running the network are provided:

* :meth:`CamNetwork.windows` -- a batch of 64 x 64 windows (the size the
  network was trained on), e.g. centred on candidate events.  This is what
  the event features use: it is exactly the training condition, and only
  the neighbourhoods of events are computed.
* :meth:`CamNetwork.frame_maps` -- whole frames of any size.  The network is
  fully convolutional, so a frame is processed as large tiles whose
  *margins* (48 pixels, more than the 33-pixel receptive-field radius plus
  the bilinear-interpolation support) are discarded: each kept pixel sees
  exactly the data it would see in one pass over the whole frame, so there
  are no seams at tile edges (tested).  The frame is surrounded by 0 eV
  (noise-free) pixels.
"""
from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402
import keras  # noqa: E402

from .densenet import FEATURES_LAYER, LOGITS_LAYER  # noqa: E402

__all__ = ["CamNetwork", "cam_from_features", "upsample_bilinear", "output_stride",
           "receptive_field"]

_BUCKETS = (1, 4, 16, 64)


def output_stride(model):
    """Ratio of input to ``cam_features`` resolution (4 for the paper's network)."""
    feat = model.get_layer(FEATURES_LAYER)
    probe = keras.Model(model.inputs, feat.output)
    out = probe.compute_output_shape((1, 64, 64, 1))
    return 64 // int(out[1])


def receptive_field(model):
    """Receptive-field size in input pixels of one ``cam_features`` cell.

    Computed from the layer list (kernel sizes and strides of the
    convolutions and poolings); 66 pixels for the default network.
    """
    rf, jump = 1, 1
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k, s = layer.kernel_size[0], layer.strides[0]
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            k, s = layer.pool_size[0], layer.strides[0]
        else:
            continue
        rf += (k - 1) * jump
        jump *= s
        if layer.name == FEATURES_LAYER:
            break
    return int(rf)


def cam_from_features(features, kernel):
    """Eq. 1: ``CAM_k(x, y) = sum_i w_i^k a_i(x, y)``.

    Parameters
    ----------
    features : ndarray, shape (..., h, w, C)
        Activations of the last convolutional layer.
    kernel : ndarray, shape (C, K)
        Dense-layer weights ``w_i^k``.

    Returns
    -------
    ndarray, shape (..., h, w, K)
        Class activation maps without bias (see module docstring).
    """
    return np.asarray(features) @ np.asarray(kernel)


def upsample_bilinear(maps, factor):
    """Bilinear upsampling of ``(..., h, w, K)`` maps by an integer ``factor``.

    Half-pixel centres (output pixel ``j`` samples input coordinate
    ``(j + 0.5) / factor - 0.5``), values beyond the edge clamped.  NumPy
    reference implementation of what the network wrapper computes.
    """
    maps = np.asarray(maps, dtype=np.float64)
    h, w = maps.shape[-3], maps.shape[-2]

    def weights(n):
        u = (np.arange(n * factor) + 0.5) / factor - 0.5
        u = np.clip(u, 0, n - 1)
        i0 = np.floor(u).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        t = u - i0
        m = np.zeros((n * factor, n))
        m[np.arange(n * factor), i0] += 1 - t
        m[np.arange(n * factor), i1] += t
        return m

    wy, wx = weights(h), weights(w)
    return np.einsum("ay,...yxk,bx->...abk", wy, maps, wx)


def _resize(cams, factor):
    """Backend version of :func:`upsample_bilinear` (used inside jit)."""
    from keras import ops
    n, h, w, k = cams.shape
    # Separable linear interpolation with clamped half-pixel coordinates.
    out = cams
    for axis, size in ((1, h), (2, w)):
        u = (np.arange(size * factor) + 0.5) / factor - 0.5
        u = np.clip(u, 0, size - 1)
        i0 = np.floor(u).astype("int32")
        i1 = np.minimum(i0 + 1, size - 1).astype("int32")
        t = (u - i0).astype("float32")
        a = ops.take(out, i0, axis=axis)
        b = ops.take(out, i1, axis=axis)
        shape = [1, 1, 1, 1]
        shape[axis] = size * factor
        t = ops.reshape(ops.convert_to_tensor(t), shape)
        out = a * (1 - t) + b * t
    return out


class CamNetwork:
    """Frame classifier plus its class activation maps, compiled once.

    Parameters
    ----------
    model : keras.Model
        Network from :func:`xcrfilter.ml.densenet.build_densenet` (layers
        ``cam_features`` and ``logits``).
    scaler : xcrfilter.scaling.LogEnergyScaler
        Input scaling stored with the model (never refitted at inference).
    window : int, optional
        Window side the network was trained on (64).
    """

    def __init__(self, model, scaler, window=64):
        self.model = model
        self.scaler = scaler
        self.window = int(window)
        self.stride = output_stride(model)
        self.receptive_field = receptive_field(model)
        dense = model.get_layer(LOGITS_LAYER)
        self.kernel = np.asarray(keras.ops.convert_to_numpy(dense.kernel))
        self.bias = np.asarray(keras.ops.convert_to_numpy(dense.bias))
        self._extractor = keras.Model(
            model.inputs, [model.get_layer(FEATURES_LAYER).output,
                           model.get_layer(LOGITS_LAYER).output])
        self._fn = self._make_fn()

    def _make_fn(self):
        extractor, kernel, stride = self._extractor, self.kernel, self.stride

        def fn(x):
            feats, logits = extractor(x, training=False)
            cams = keras.ops.matmul(feats, keras.ops.convert_to_tensor(kernel))
            probs = keras.ops.softmax(logits, axis=-1)
            return probs, logits, _resize(cams, stride), cams

        if keras.backend.backend() == "jax":
            import jax
            return jax.jit(fn)
        return fn

    def _run(self, x):
        out = self._fn(x)
        return tuple(np.asarray(keras.ops.convert_to_numpy(o)) for o in out)

    def windows(self, windows_ev, batch_size=64, raw=False):
        """Run the network on a stack of windows given in eV.

        Parameters
        ----------
        windows_ev : ndarray, shape (n, rows, cols)
            Pixel energies in eV (sides multiples of the output stride;
            normally 64 x 64).
        batch_size : int, optional
            Largest batch given to the compiled network; batches are padded
            to one of a few fixed sizes (1, 4, 16, 64) so that the network is
            compiled at most once per size.
        raw : bool, optional
            Also return the un-upsampled CAMs and the logits.

        Returns
        -------
        probs : ndarray, shape (n, K)
            Softmax class probabilities.
        cams : ndarray, shape (n, rows, cols, K)
            Upsampled class activation maps (Eq. 1, no bias).
        logits, cams_low : ndarray
            Only with ``raw=True``: pre-softmax scores ``(n, K)`` and maps
            ``(n, rows/stride, cols/stride, K)``.
        """
        w = np.asarray(windows_ev, dtype=np.float32)
        if w.ndim != 3:
            raise ValueError(f"windows_ev must be (n, rows, cols), got shape {w.shape}")
        if w.shape[1] % self.stride or w.shape[2] % self.stride:
            raise ValueError(f"window sides must be multiples of {self.stride}, got {w.shape[1:]}")
        n = len(w)
        k = self.kernel.shape[1]
        ny, nx = w.shape[1:]
        probs = np.empty((n, k), np.float32)
        logits = np.empty((n, k), np.float32)
        cams = np.empty((n, ny, nx, k), np.float32)
        low = np.empty((n, ny // self.stride, nx // self.stride, k), np.float32) if raw else None
        x = self.scaler.transform(w)[..., None]
        buckets = [b for b in _BUCKETS if b <= batch_size] or [1]
        start = 0
        while start < n:
            left = n - start
            size = next((b for b in buckets if b >= left), buckets[-1])
            chunk = x[start:start + size]
            m = len(chunk)
            if m < size:
                chunk = np.concatenate([chunk, np.zeros((size - m,) + chunk.shape[1:], np.float32)])
            p, lg, c, cl = self._run(chunk)
            probs[start:start + m] = p[:m]
            logits[start:start + m] = lg[:m]
            cams[start:start + m] = c[:m]
            if raw:
                low[start:start + m] = cl[:m]
            start += m
        if raw:
            return probs, cams, logits, low
        return probs, cams

    def frame_maps(self, frame_ev, tile=256, margin=48):
        """Upsampled CAMs of a whole frame (any size), seam-free.

        Parameters
        ----------
        frame_ev : ndarray, shape (rows, cols)
            Pixel energies in eV.
        tile : int, optional
            Side of the kept central part of each processing tile (multiple
            of the output stride).
        margin : int, optional
            Discarded border of each processing tile (multiple of the stride
            and at least half the receptive field plus one stride).

        Returns
        -------
        ndarray, shape (rows, cols, K), float32
        """
        f = np.asarray(frame_ev, dtype=np.float32)
        if f.ndim != 2:
            raise ValueError(f"frame_ev must be 2-D, got shape {f.shape}")
        s = self.stride
        if tile % s or margin % s:
            raise ValueError(f"tile and margin must be multiples of {s}")
        if margin < self.receptive_field // 2 + s:
            raise ValueError(f"margin {margin} is smaller than the receptive-field radius "
                             f"{self.receptive_field // 2} plus one stride {s}")
        ny, nx = f.shape
        ty, tx = -(-ny // tile), -(-nx // tile)
        padded = np.zeros((ty * tile + 2 * margin, tx * tile + 2 * margin), np.float32)
        padded[margin:margin + ny, margin:margin + nx] = f
        k = self.kernel.shape[1]
        out = np.empty((ty * tile, tx * tile, k), np.float32)
        big = tile + 2 * margin
        x = self.scaler.transform(padded)
        for iy in range(ty):
            for ix in range(tx):
                sub = x[iy * tile:iy * tile + big, ix * tile:ix * tile + big][None, ..., None]
                _, _, c, _ = self._run(sub)
                out[iy * tile:(iy + 1) * tile, ix * tile:(ix + 1) * tile] = \
                    c[0, margin:margin + tile, margin:margin + tile]
        return out[:ny, :nx]
