"""Figures of filtered events: ROC, energy spectra and a frame with verdicts.

Each function draws on a matplotlib ``Axes`` (a new figure when none is
given) and returns it; nothing is saved.  Energies are plotted in keV and
pixel coordinates as RAWX / RAWY (0-based, as in the event files).
"""
from __future__ import annotations

import astropy.units as u
import numpy as np

from .units import DEFAULT_BAND, energy_values

_BAND_KEV = tuple(float(e) for e in DEFAULT_BAND.to_value(u.keV))

__all__ = ["plot_roc", "plot_spectrum", "plot_frame_verdicts"]

#: Colour of each method (and union with the very-faint filter) in every figure.
COLORS = {"VF": "k", "LACOSMIC": "tab:orange", "SAC": "tab:green", "CAM": "tab:blue",
          "MORPH": "tab:brown", "VF+LACOSMIC": "tab:red", "VF+SAC": "tab:olive",
          "VF+CAM": "tab:purple", "VF+MORPH": "tab:pink"}


def _axes(ax, figsize=(6, 4.5)):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    return plt.subplots(figsize=figsize)[1]


def plot_roc(roc, points=None, *, ax=None, title=None):
    """CR recall against lost X-ray signal, both in percent.

    Parameters
    ----------
    roc : `~astropy.table.Table`
        Output of :func:`xcrfilter.compare.roc_sweeps`: columns ``CURVE``,
        ``FPR``, ``RECALL`` (fractions).
    points : `~astropy.table.Table`, optional
        Operating points at the default settings, e.g. the rows of one band of
        :func:`xcrfilter.compare.compare_table` (``METHOD``, ``FPR``,
        ``RECALL``); drawn as markers.
    ax : `~matplotlib.axes.Axes`, optional
    title : str, optional

    Returns
    -------
    `~matplotlib.axes.Axes`
    """
    ax = _axes(ax)
    for curve in dict.fromkeys(roc["CURVE"]) if len(roc) else []:
        r = roc[roc["CURVE"] == curve]
        order = np.lexsort((np.asarray(r["RECALL"]), np.asarray(r["FPR"])))
        swept = "radius" if "SAC" in curve else "probability threshold"
        ax.plot(100 * np.asarray(r["FPR"])[order], 100 * np.asarray(r["RECALL"])[order], "-",
                color=COLORS.get(curve), alpha=0.8, label=f"{curve}, {swept} swept")
    for row in points if points is not None else []:
        ax.plot(100 * row["FPR"], 100 * row["RECALL"], "o", ms=7, mec="k",
                color=COLORS.get(row["METHOD"]), label=f"{row['METHOD']} at its defaults")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.set_xlabel("lost X-ray signal (X-ray events rejected) [%]")
    ax.set_ylabel("CR events rejected (recall) [%]")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_spectrum(events, rejected, *, truth=None, band=_BAND_KEV, ax=None, title=None,
                  bins=None):
    """Energy spectrum of the accepted and the rejected events.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with ``ENERGY``.
    rejected : bool array, shape (n_events,)
        True where the filter rejects the event.
    truth : int array, shape (n_events,), optional
        0 noise, 1 X-ray, 2 CR: with it the accepted and rejected spectra are
        split into X-ray and CR events.
    band : (float, float), optional
        Evaluation band [keV], marked by dashed lines.  Default 0.3-10.
    ax : `~matplotlib.axes.Axes`, optional
    title : str, optional
    bins : array, optional
        Bin edges [keV].  Default 40 logarithmic bins from 0.1 to 1000 keV.

    Returns
    -------
    `~matplotlib.axes.Axes`
    """
    ax = _axes(ax)
    e = energy_values(events["ENERGY"], u.keV)
    rejected = np.asarray(rejected, bool)
    if bins is None:
        bins = np.geomspace(0.1, 1000.0, 41)
    if truth is None:
        groups = [("accepted", ~rejected, "tab:blue", "-"),
                  ("rejected", rejected, "tab:red", "-")]
    else:
        truth = np.asarray(truth)
        groups = [("X-ray accepted", ~rejected & (truth == 1), "tab:blue", "-"),
                  ("X-ray rejected", rejected & (truth == 1), "tab:blue", ":"),
                  ("CR accepted", ~rejected & (truth == 2), "tab:red", "-"),
                  ("CR rejected", rejected & (truth == 2), "tab:red", ":")]
    for label, sel, color, ls in groups:
        h, _ = np.histogram(e[sel], bins)
        ax.stairs(h, bins, color=color, ls=ls, lw=1.5, label=f"{label} ({int(sel.sum())})")
    for edge in band:
        ax.axvline(edge, color="0.5", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("event energy [keV]")
    ax.set_ylabel("events per bin")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    return ax


def plot_frame_verdicts(frame, events, methods, *, ax=None, title=None, vmin_kev=0.08,
                        vmax_kev=10.0, center=None, half_size=None, labels=True):
    """One frame with a marker on every event showing which methods reject it.

    Parameters
    ----------
    frame : `~astropy.units.Quantity` [energy] or float array [eV], shape (ny, nx)
        The frame the events were found in.
    events : `~astropy.table.Table`
        The events of this frame (``RAWX``, ``RAWY``, ``STATUS``).
    methods : dict
        Method name -> STATUS bits, e.g. ``{"VF": 0b111, "SAC": 16}``.  An
        event rejected by no method is drawn as a red circle, one rejected by
        one or more methods as a black square labelled with their names.
    ax : `~matplotlib.axes.Axes`, optional
    title : str, optional
    vmin_kev, vmax_kev : float, optional
        Range of the logarithmic colour scale [keV] (default 0.08, the split
        threshold, to 10); pixels below ``vmin_kev`` are white.
    center : (float, float), optional
        (RAWX, RAWY) [pixel] of the centre of a zoomed view.
    half_size : float, optional
        Half width of the zoomed view [pixel] (with ``center``).
    labels : bool, optional
        Write the names of the rejecting methods beside the markers
        (default True).

    Returns
    -------
    `~matplotlib.axes.Axes`
    """
    import matplotlib
    from matplotlib.colors import LogNorm
    ax = _axes(ax, figsize=(7, 6))
    data = frame.to_value(u.keV) if isinstance(frame, u.Quantity) \
        else np.asarray(frame, float) / 1000.0
    cmap = matplotlib.colormaps["viridis"].with_extremes(under="white")
    im = ax.imshow(data, origin="lower", cmap=cmap, interpolation="antialiased",
                   norm=LogNorm(vmin=vmin_kev, vmax=vmax_kev))
    ax.figure.colorbar(im, ax=ax, label="pixel energy [keV]", shrink=0.8, extend="both")
    status = np.asarray(events["STATUS"]).astype(np.int64)
    x, y = np.asarray(events["RAWX"]), np.asarray(events["RAWY"])
    names = [[m for m, bits in methods.items() if s & bits] for s in status]
    kept = np.array([not n for n in names], bool)
    ax.plot(x[kept], y[kept], "o", mfc="none", mec="tab:red", ms=10, mew=1.5,
            label=f"accepted by every method ({int(kept.sum())})")
    ax.plot(x[~kept], y[~kept], "s", mfc="none", mec="k", ms=10, mew=1.2,
            label=f"rejected ({int((~kept).sum())})" + ("; label: by which" if labels else ""))
    for xi, yi, n in zip(x, y, names):
        if n and labels:
            ax.annotate("+".join(n), (xi, yi), xytext=(6, 6), textcoords="offset points",
                        fontsize=7, color="k", annotation_clip=True)
    if center is not None and half_size is not None:
        ax.set_xlim(center[0] - half_size, center[0] + half_size)
        ax.set_ylim(center[1] - half_size, center[1] + half_size)
    ax.set_xlabel("RAWX [pixel]")
    ax.set_ylabel("RAWY [pixel]")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return ax
