"""Event features of the second stage (seed paper Sec. 3.3 and 4.2, Eq. 9).

For every reconstructed event with energy in the scored band the random
forest sees ten features, in this order (:data:`FEATURE_NAMES`):

=============  ==============================================================
ENERGY         reconstructed event energy [eV]
P_XRAY         network probability of class XRAY for the event's 64 x 64 context
P_CR           network probability of class CR for the same context
MAX_CAM_XRAY   max of CAM_XRAY in the 5 x 5 window at the event centre
MAX_CAM_CR     max of CAM_CR in that window
MED_CAM_CR     median of CAM_CR in that window
F1             max(CAM_CR) - min(CAM_XRAY)
F2             max(CAM_CR)/max(CAM_XRAY) - min(CAM_CR)/min(CAM_XRAY)
F3             max(CAM_CR)/max(CAM_XRAY) - min(CAM_CR)/max(CAM_XRAY)
F4             max(CAM_CR)/min(CAM_XRAY) - min(CAM_CR)/max(CAM_XRAY)
=============  ==============================================================

The 64 x 64 context of an event is the window *centred* on the event (its
central pixel at row/column 32 of the window).  Reason: the network was
trained on 64 x 64 tiles with the event anywhere inside; centring gives every
event the same +-32 pixel context in all directions, so a parent track or a
sibling island near the event is seen whichever side it lies on, and no event
is scored from a tile in which it sits at the edge (where the CAM is least
reliable).  The result does not depend on a tiling grid.

CAM values can be zero or negative, so the ratios of Eq. 9 use
:func:`safe_divide`: a denominator whose magnitude is below ``eps`` is
replaced by ``+eps`` or ``-eps`` with its own sign (``+eps`` for exactly 0),
which keeps every feature finite and continuous in the numerator.
"""
from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_NAMES", "EXTRA_FEATURE_NAMES", "safe_divide", "cam_window_stats",
           "event_features", "extra_features"]

FEATURE_NAMES = ("ENERGY", "P_XRAY", "P_CR", "MAX_CAM_XRAY", "MAX_CAM_CR", "MED_CAM_CR",
                 "F1", "F2", "F3", "F4")

#: Optional physics-based features (``feature_set="extended"``), not in the paper.
EXTRA_FEATURE_NAMES = ("CTX_MAX_PIX", "CTX_SUM", "CTX_NACTIVE")

#: Default denominator floor of :func:`safe_divide` (CAM units).
EPS = 1e-3


def safe_divide(num, den, eps=EPS):
    """Finite ratio ``num / den`` for CAM values of any sign.

    Parameters
    ----------
    num, den : array_like
        Numerator and denominator (broadcast together).
    eps : float, optional
        Floor on ``|den|`` (1e-3 by default; CAM values of a trained network
        are of order 1-10).  ``|den| < eps`` is replaced by ``copysign(eps,
        den)``, with ``den == 0`` taken as positive.

    Returns
    -------
    ndarray of float64
        Always finite for finite inputs.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    sign = np.where(den < 0, -1.0, 1.0)
    den = np.where(np.abs(den) < eps, sign * eps, den)
    return num / den


def cam_window_stats(cam_xray, cam_cr, rows, cols, half=2):
    """Min, max and median of CAM windows centred on events.

    Parameters
    ----------
    cam_xray, cam_cr : ndarray, shape (n, H, W)
        Upsampled XRAY and CR class activation maps, one per event (e.g. the
        event-centred windows) or broadcastable.
    rows, cols : int or ndarray of int, shape (n,)
        Event centre in each map.
    half : int, optional
        Half-size of the window (2 -> 5 x 5, the paper's choice, from the
        input-to-output resolution ratio of 4).

    Returns
    -------
    dict of ndarray, shape (n,)
        ``xray_min, xray_max, cr_min, cr_max, cr_median``.  Pixels of the
        window outside the map are ignored.
    """
    cam_xray = np.asarray(cam_xray)
    cam_cr = np.asarray(cam_cr)
    n, h, w = cam_xray.shape
    rows = np.broadcast_to(np.asarray(rows, dtype=int), (n,))
    cols = np.broadcast_to(np.asarray(cols, dtype=int), (n,))
    off = np.arange(-half, half + 1)
    yy = rows[:, None, None] + off[None, :, None]
    xx = cols[:, None, None] + off[None, None, :]
    inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    yy = np.clip(yy, 0, h - 1)
    xx = np.clip(xx, 0, w - 1)
    idx = np.arange(n)[:, None, None]
    wx = np.where(inside, cam_xray[idx, yy, xx], np.nan).reshape(n, -1)
    wc = np.where(inside, cam_cr[idx, yy, xx], np.nan).reshape(n, -1)
    return {"xray_min": np.nanmin(wx, axis=1), "xray_max": np.nanmax(wx, axis=1),
            "cr_min": np.nanmin(wc, axis=1), "cr_max": np.nanmax(wc, axis=1),
            "cr_median": np.nanmedian(wc, axis=1)}


def event_features(energy_ev, p_xray, p_cr, stats, eps=EPS):
    """The ten features of Sec. 4.2 (order :data:`FEATURE_NAMES`).

    Parameters
    ----------
    energy_ev : array_like, shape (n,)
        Event energies [eV] (plain numbers; strip the unit first).
    p_xray, p_cr : array_like, shape (n,)
        Network class probabilities of the event's context.
    stats : dict
        Output of :func:`cam_window_stats`.
    eps : float, optional
        Denominator floor of :func:`safe_divide`.

    Returns
    -------
    ndarray, shape (n, 10), float64
    """
    xmin, xmax = stats["xray_min"], stats["xray_max"]
    cmin, cmax = stats["cr_min"], stats["cr_max"]
    f1 = cmax - xmin
    f2 = safe_divide(cmax, xmax, eps) - safe_divide(cmin, xmin, eps)
    f3 = safe_divide(cmax, xmax, eps) - safe_divide(cmin, xmax, eps)
    f4 = safe_divide(cmax, xmin, eps) - safe_divide(cmin, xmax, eps)
    cols = [np.asarray(energy_ev, dtype=np.float64), p_xray, p_cr, xmax, cmax,
            stats["cr_median"], f1, f2, f3, f4]
    return np.column_stack([np.asarray(c, dtype=np.float64) for c in cols])


def extra_features(windows_ev, split_threshold_ev=80.0, exclude_half=2):
    """Optional context features (not in the paper; ``feature_set="extended"``).

    Computed on the event-centred window with the event's own 5 x 5 island
    blanked: the brightest other pixel (a nearby primary track), the total
    energy of the other pixels above the split threshold, and their number.

    Parameters
    ----------
    windows_ev : ndarray, shape (n, H, W)
        Event-centred windows [eV].
    split_threshold_ev : float, optional
        Active-pixel threshold [eV].
    exclude_half : int, optional
        Half-size of the blanked island around the centre.

    Returns
    -------
    ndarray, shape (n, 3)
    """
    w = np.array(windows_ev, dtype=np.float64, copy=True)
    n, h, wd = w.shape
    cy, cx = h // 2, wd // 2
    w[:, cy - exclude_half:cy + exclude_half + 1, cx - exclude_half:cx + exclude_half + 1] = 0.0
    active = w >= split_threshold_ev
    return np.column_stack([w.reshape(n, -1).max(axis=1),
                            np.where(active, w, 0).reshape(n, -1).sum(axis=1),
                            active.reshape(n, -1).sum(axis=1)])
