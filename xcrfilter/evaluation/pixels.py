"""Pixel-wise comparison of a filter's pixel mask with the truth labels.

The pixel-wise comparison of the Laplacian mask with the truth labels
(:func:`pixel_confusion`) and the ``sigclip`` tuning (:func:`scan_sigclip`) follow the LSST report of
seed ``003``: purity = TP/(TP+FP), completeness = TP/(TP+FN), F1, and the
mean squared error of the binary masks, MSE = (FP+FN)/N_pixels; sigclip is
chosen at the MSE minimum or at the "knee" of the (sigclip, number of CR
pixels) curve.
"""
from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..filters.laplacian import cosmic_ray_pixels
from ..io.frames import as_energy_cube

__all__ = ["pixel_confusion", "knee_point", "scan_sigclip"]


def pixel_confusion(mask, labels):
    """Pixel-wise confusion of a CR mask against truth labels.

    Parameters
    ----------
    mask : bool ndarray, shape (n_frames, ny, nx) or (ny, nx)
        Predicted CR pixels.
    labels : int ndarray, same shape
        Truth: 0 none, 1 X-ray, 2 CR.

    Returns
    -------
    dict
        ``TP``, ``FP``, ``FN``, ``TN`` (CR positive, every non-CR pixel
        negative), ``FP_XRAY`` (X-ray pixels masked), ``N_XRAY``, ``PURITY``,
        ``COMPLETENESS``, ``F1``, ``MSE`` = (FP+FN)/N.
    """
    mask = np.asarray(mask, bool)
    labels = np.asarray(labels)
    if mask.shape != labels.shape:
        raise ValueError(f"mask {mask.shape} and labels {labels.shape} differ in shape.")
    cr = labels == 2
    tp = int(np.count_nonzero(mask & cr))
    fp = int(np.count_nonzero(mask & ~cr))
    fn = int(np.count_nonzero(~mask & cr))
    tn = int(mask.size - tp - fp - fn)
    xr = labels == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = tp / (tp + fp) if tp + fp else np.nan
        completeness = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * purity * completeness / (purity + completeness) if tp else 0.0
    return dict(TP=tp, FP=fp, FN=fn, TN=tn, FP_XRAY=int(np.count_nonzero(mask & xr)),
                N_XRAY=int(np.count_nonzero(xr)), N_CR=int(np.count_nonzero(cr)),
                PURITY=float(purity), COMPLETENESS=float(completeness), F1=float(f1),
                MSE=(fp + fn) / mask.size)


def knee_point(x, y):
    """Knee of a monotonic curve: the point farthest from the chord joining its ends.

    Both axes are rescaled to [0, 1] first (the "kneedle" construction of
    Satopaa et al. 2011).  Returns the index of the knee.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size < 3:
        raise ValueError("knee_point needs at least 3 points.")
    xn = (x - x.min()) / np.ptp(x) if np.ptp(x) else np.zeros_like(x)
    yn = (y - y.min()) / np.ptp(y) if np.ptp(y) else np.zeros_like(y)
    # distance to the line through the first and last point
    dx, dy = xn[-1] - xn[0], yn[-1] - yn[0]
    dist = np.abs(dy * (xn - xn[0]) - dx * (yn - yn[0])) / max(np.hypot(dx, dy), 1e-12)
    return int(np.argmax(dist))


def scan_sigclip(frames, labels, sigclips=None, *, detector=None, **lacosmic_options):
    """Scan L.A.Cosmic ``sigclip`` on X-ray frames against truth labels.

    For each ``sigclip`` the frames are run through
    :func:`xcrfilter.filters.laplacian.lacosmic_mask` and the mask compared
    pixel by pixel with the truth (:func:`pixel_confusion`).

    Parameters
    ----------
    frames : frames accepted by :func:`xcrfilter.io.frames.as_energy_cube`, shape (n, ny, nx)
    labels : uint8 ndarray, shape (n, ny, nx)
        Truth labels (0 none, 1 X-ray, 2 CR).
    sigclips : array-like, optional
        Values to scan.  Default ``np.arange(1.0, 10.01, 0.5)`` (the LSST
        report's wide range 1-10).
    **lacosmic_options
        Other keyword arguments of ``lacosmic_mask`` (fixed during the scan).

    Returns
    -------
    table : `~astropy.table.Table`
        One row per sigclip: ``SIGCLIP``, ``N_CRPIX``, ``TP``, ``FP``, ``FN``,
        ``FP_XRAY``, ``PURITY``, ``COMPLETENESS``, ``F1``, ``MSE``; ``meta``
        holds ``SIGMSE`` (sigclip at the MSE minimum) and ``SIGKNEE`` (knee of
        N_CRPIX vs sigclip, :func:`knee_point`).
    """
    if sigclips is None:
        sigclips = np.arange(1.0, 10.01, 0.5)
    sigclips = np.asarray(sigclips, float)
    cube = as_energy_cube(frames, detector=detector)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.shape != cube.data.shape:
        raise ValueError(f"labels {labels.shape} must match frames {cube.data.shape}.")
    rows = []
    for s in sigclips:
        mask = cosmic_ray_pixels(cube, sigclip=float(s), detector=detector,
                                 **lacosmic_options).reshape(labels.shape)
        c = pixel_confusion(mask, labels)
        rows.append((float(s), int(mask.sum()), c["TP"], c["FP"], c["FN"], c["FP_XRAY"],
                     c["PURITY"], c["COMPLETENESS"], c["F1"], c["MSE"]))
    table = Table(rows=rows, names=("SIGCLIP", "N_CRPIX", "TP", "FP", "FN", "FP_XRAY",
                                    "PURITY", "COMPLETENESS", "F1", "MSE"))
    i_mse = int(np.argmin(table["MSE"]))
    i_knee = knee_point(table["SIGCLIP"], table["N_CRPIX"]) if len(table) >= 3 else i_mse
    table.meta["SIGMSE"] = float(table["SIGCLIP"][i_mse])
    table.meta["SIGKNEE"] = float(table["SIGCLIP"][i_knee])
    table.meta["NCR_TRUE"] = int(np.count_nonzero(labels == 2))
    return table
