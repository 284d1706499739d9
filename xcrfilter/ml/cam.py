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

The network runs as one compiled JAX function
(`xcrfilter.ml.netgraph.LayerGraph`, no Keras at inference), in three ways:

* :meth:`CamNetwork.window_centres` -- probabilities and the CAMs of the
  central pixels of 64 x 64 windows centred on events: what the event
  features need, and all that is computed and copied for them.
* :meth:`CamNetwork.windows` -- probabilities and whole CAMs of windows.
* :meth:`CamNetwork.frame_maps` -- whole frames of any size.  The network is
  fully convolutional, so a frame is processed as large tiles whose
  *margins* (48 pixels, more than the 33-pixel receptive-field radius plus
  the bilinear-interpolation support) are discarded: each kept pixel sees
  exactly the data it would see in one pass over the whole frame, so there
  are no seams at tile edges (tested).  The frame is surrounded by 0 eV
  (noise-free) pixels.

Windows are given to the compiled function in batches of a few fixed sizes
(`BATCH_SIZES`), so that it is compiled at most once per size and process.
"""
from __future__ import annotations

import numpy as np

from .netgraph import FEATURES_LAYER, LOGITS_LAYER, LayerGraph, graph_from_keras

__all__ = ["CamNetwork", "cam_from_features", "upsample_bilinear", "output_stride",
           "receptive_field", "BATCH_SIZES"]

#: Batch sizes of the compiled network: windows go through it in batches of
#: the largest size, the last one zero-padded, so that it is compiled once per
#: size and process (about 2 s each).  Small batches keep a batch's
#: activations in the CPU cache (4 windows: 2 MB for the paper's network) and
#: are faster per window than large ones on a CPU.
BATCH_SIZES = (4,)


def _graph(model):
    return model if isinstance(model, LayerGraph) else graph_from_keras(model)


def output_stride(model):
    """Ratio of input to ``cam_features`` resolution (4 for the paper's network).

    ``model``: a Keras network or a `~xcrfilter.ml.netgraph.LayerGraph`.
    """
    return _graph(model).stride()


def receptive_field(model):
    """Receptive-field size in input pixels of one ``cam_features`` cell.

    Computed from the layer list (kernel sizes and strides of the
    convolutions and poolings); 66 pixels for the default network.
    """
    return _graph(model).receptive_field()


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


def _lerp_index(n, factor, out=None):
    """Source cells and weights of bilinear upsampling along one axis.

    Output pixel ``j`` samples input coordinate ``(j + 0.5) / factor - 0.5``,
    clamped to ``[0, n - 1]``; ``out`` selects output pixels (default all).
    """
    j = np.arange(n * factor) if out is None else np.asarray(out)
    u = np.clip((j + 0.5) / factor - 0.5, 0, n - 1)
    i0 = np.floor(u).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, u - i0


def upsample_bilinear(maps, factor):
    """Bilinear upsampling of ``(..., h, w, K)`` maps by an integer ``factor``.

    Half-pixel centres (output pixel ``j`` samples input coordinate
    ``(j + 0.5) / factor - 0.5``), values beyond the edge clamped.  NumPy
    reference implementation of what the network wrapper computes.
    """
    maps = np.asarray(maps, dtype=np.float64)
    h, w = maps.shape[-3], maps.shape[-2]

    def weights(n):
        i0, i1, t = _lerp_index(n, factor)
        m = np.zeros((n * factor, n))
        m[np.arange(n * factor), i0] += 1 - t
        m[np.arange(n * factor), i1] += t
        return m

    wy, wx = weights(h), weights(w)
    return np.einsum("ay,...yxk,bx->...abk", wy, maps, wx)


def _resize(cams, factor, rows=None, cols=None, first=(0, 0)):
    """Backend version of :func:`upsample_bilinear` (used inside jit).

    ``rows``/``cols`` select output pixels of a map of ``h x w`` cells of
    which ``cams`` holds those from ``first`` on (the full map by default).
    """
    import jax.numpy as jnp
    out = cams
    for axis, sel, k0 in ((1, rows, first[0]), (2, cols, first[1])):
        n = out.shape[axis] if sel is None else sel[1]
        i0, i1, t = _lerp_index(n, factor, None if sel is None else sel[0])
        shape = [1, 1, 1, 1]
        shape[axis] = len(i0)
        t = jnp.asarray(t.astype(np.float32).reshape(shape))
        a = jnp.take(out, (i0 - k0).astype(np.int32), axis=axis)
        b = jnp.take(out, (i1 - k0).astype(np.int32), axis=axis)
        out = a * (1 - t) + b * t
    return out


class CamNetwork:
    """Frame classifier plus its class activation maps, compiled once.

    Parameters
    ----------
    model : xcrfilter.ml.netgraph.LayerGraph or keras.Model
        Network from :func:`xcrfilter.ml.densenet.build_densenet` (layers
        ``cam_features`` and ``logits``), read from a file or in memory.
    scaler : xcrfilter.ml.scaling.LogEnergyScaler
        Input scaling stored with the model (never refitted at inference).
    window : int, optional
        Window side the network was trained on (64).
    """

    def __init__(self, model, scaler, window=64):
        self.graph = _graph(model)
        self.scaler = scaler
        self.window = int(window)
        self.stride = self.graph.stride()
        self.receptive_field = self.graph.receptive_field()
        self.kernel = self.graph.kernel
        self.bias = self.graph.bias
        self._compiled = {}

    def _function(self, kind, half=2, shape=(64, 64)):
        key = (kind, half, shape)
        if key not in self._compiled:
            import jax
            import jax.numpy as jnp
            body = self.graph.function((FEATURES_LAYER, LOGITS_LAYER))
            kernel, s = jnp.asarray(self.kernel), self.stride
            h, w = shape[0] // s, shape[1] // s
            cy, cx = shape[0] // 2, shape[1] // 2
            rows = np.arange(cy - half, cy + half + 1)
            cols = np.arange(cx - half, cx + half + 1)
            ry0, ry1, _ = _lerp_index(h, s, rows)
            rx0, rx1, _ = _lerp_index(w, s, cols)
            y0, y1, x0, x1 = ry0.min(), ry1.max() + 1, rx0.min(), rx1.max() + 1

            def full(x):
                feats, logits = body(x)
                low = feats @ kernel
                return jax.nn.softmax(logits, axis=-1), _resize(low, s), logits, low

            def centre(x):
                feats, logits = body(x)
                low = feats[:, y0:y1, x0:x1] @ kernel
                cams = _resize(low, s, (rows, h), (cols, w), (y0, x0))
                return jax.nn.softmax(logits, axis=-1), cams

            self._compiled[key] = jax.jit(full if kind == "full" else centre)
        return self._compiled[key]

    def _batches(self, w, batch_size):
        """Scaled ``(size, rows, cols, 1)`` batches, zero-padded to `BATCH_SIZES`."""
        sizes = [b for b in BATCH_SIZES if b <= batch_size] or [1]
        start, n = 0, len(w)
        while start < n:
            left = n - start
            size = next((b for b in sizes if b >= left), sizes[-1])
            chunk = self.scaler.transform(w[start:start + size])[..., None]
            m = len(chunk)
            if m < size:
                chunk = np.concatenate([chunk, np.zeros((size - m,) + chunk.shape[1:],
                                                        np.float32)])
            yield start, m, chunk
            start += m

    def _check(self, windows_ev):
        w = np.asarray(windows_ev, dtype=np.float32)
        if w.ndim != 3:
            raise ValueError(f"windows_ev must be (n, rows, cols), got shape {w.shape}")
        if w.shape[1] % self.stride or w.shape[2] % self.stride:
            raise ValueError(f"window sides must be multiples of {self.stride}, got {w.shape[1:]}")
        return w

    def window_centres(self, windows_ev, half=2, batch_size=max(BATCH_SIZES)):
        """Probabilities and the CAMs of the central pixels of windows given in eV.

        Parameters
        ----------
        windows_ev : ndarray, shape (n, rows, cols)
            Pixel energies in eV (normally 64 x 64, centred on events).
        half : int, optional
            Half-size of the central square: ``2 * half + 1`` pixels a side
            (2: the 5 x 5 of the event features).
        batch_size : int, optional
            Largest batch given to the compiled network.

        Returns
        -------
        probs : ndarray, shape (n, K)
            Softmax class probabilities.
        cams : ndarray, shape (n, 2 * half + 1, 2 * half + 1, K)
            Upsampled class activation maps at pixels ``rows // 2 - half`` to
            ``rows // 2 + half`` (and the same columns): equal to those
            pixels of :meth:`windows`' maps.
        """
        w = self._check(windows_ev)
        n, k = len(w), self.kernel.shape[1]
        probs = np.empty((n, k), np.float32)
        cams = np.empty((n, 2 * half + 1, 2 * half + 1, k), np.float32)
        fn = self._function("centre", int(half), tuple(w.shape[1:]))
        # every batch is dispatched before the first result is read: JAX runs
        # them one after another while Python prepares the next inputs
        done = [(start, m, fn(chunk)) for start, m, chunk in self._batches(w, batch_size)]
        for start, m, (p, c) in done:
            probs[start:start + m] = np.asarray(p)[:m]
            cams[start:start + m] = np.asarray(c)[:m]
        return probs, cams

    def windows(self, windows_ev, batch_size=max(BATCH_SIZES), raw=False):
        """Run the network on a stack of windows given in eV.

        Parameters
        ----------
        windows_ev : ndarray, shape (n, rows, cols)
            Pixel energies in eV (sides multiples of the output stride;
            normally 64 x 64).
        batch_size : int, optional
            Largest batch given to the compiled network; batches are padded
            to one of `BATCH_SIZES` so that the network is compiled at most
            once per size.
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
        w = self._check(windows_ev)
        n, k = len(w), self.kernel.shape[1]
        ny, nx = w.shape[1:]
        s = self.stride
        out = (np.empty((n, k), np.float32), np.empty((n, ny, nx, k), np.float32),
               np.empty((n, k), np.float32), np.empty((n, ny // s, nx // s, k), np.float32))
        fn = self._function("full", shape=(ny, nx))
        for start, m, chunk in self._batches(w, batch_size):
            for dest, src in zip(out, fn(chunk)):
                dest[start:start + m] = np.asarray(src)[:m]
        return out if raw else out[:2]

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
        fn = self._function("full", shape=(big, big))
        for iy in range(ty):
            for ix in range(tx):
                sub = x[iy * tile:iy * tile + big, ix * tile:ix * tile + big][None, ..., None]
                c = np.asarray(fn(sub)[1])
                out[iy * tile:(iy + 1) * tile, ix * tile:(ix + 1) * tile] = \
                    c[0, margin:margin + tile, margin:margin + tile]
        return out[:ny, :nx]
