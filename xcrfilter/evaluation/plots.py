"""Figures of filtered events: ROC, energy spectra and a frame with verdicts.

Each function draws on a matplotlib ``Axes`` (a new figure when none is
given) and returns it; nothing is saved.  Energies are plotted in keV and
pixel coordinates as RAWX / RAWY (0-based, as in the event files).
"""
from __future__ import annotations

import astropy.units as u
import numpy as np

from ..units import DEFAULT_BAND, energy_values

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
        Output of :func:`xcrfilter.evaluation.tables.roc_sweeps`: columns ``CURVE``,
        ``FPR``, ``RECALL`` (fractions).
    points : `~astropy.table.Table`, optional
        Operating points at the default settings, e.g. the rows of one band of
        :func:`xcrfilter.evaluation.tables.compare_table` (``METHOD``, ``FPR``,
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
    # 0 % and the percent region both matter: linear up to 1 %, logarithmic above,
    # and the axis says so
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.5)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 101)
    ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("lost X-ray signal (X-ray events rejected) [%]\n"
                  "linear from 0 to 1 % (dotted line), logarithmic above")
    ax.set_ylabel("CR events rejected (recall) [%]")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right", framealpha=0.9)
    return ax


def plot_spectrum(events, rejected, *, truth=None, band=_BAND_KEV, ax=None, title=None,
                  bins=None, unscored=None):
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
    unscored : bool array, shape (n_events,), optional
        Events the method does not judge (e.g. the CAM filter outside its
        scored band, ``PROB_CR`` NaN).  They are not rejected, so they are
        in the accepted curves; they are also drawn in grey and counted in
        a note, so that the panel does not pass them off as judged.

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
    if unscored is not None and np.any(unscored):
        unscored = np.asarray(unscored, bool)
        h, _ = np.histogram(e[unscored], bins)
        ax.stairs(h, bins, color="0.55", lw=3, alpha=0.5, zorder=0,
                  label=f"not scored, counted as accepted ({int(unscored.sum())})")
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


#: label offsets [points] tried in turn, beside the marker (10 points wide)
_LABEL_OFFSETS = ((7, 5), (7, -13), (-7, 5), (-7, -13), (-4, 12), (-4, -20))


def _place_labels(ax, x, y, texts, fontsize=7):
    """Annotate ``(x, y)`` with ``texts``, each where it overlaps no marker or earlier label.

    Label boxes are estimated in points (0.65 em per character, 1.2 em
    high, plus a margin) from the limits already set; of the offsets tried, the first
    free one is used, else the one overlapping least.
    """
    to_pt = 72.0 / ax.figure.dpi
    # the markers (10 points) are taken, as are the labels placed so far
    placed = [(px - 6, py - 6, px + 6, py + 6)
              for px, py in ax.transData.transform(np.column_stack([x, y])) * to_pt]

    def overlap(a, b):
        dx = min(a[2], b[2]) - max(a[0], b[0])
        dy = min(a[3], b[3]) - max(a[1], b[1])
        return max(dx, 0.0) * max(dy, 0.0)

    for xi, yi, text in zip(x, y, texts):
        if not text:
            continue
        px, py = ax.transData.transform((xi, yi)) * to_pt
        w, h = 0.65 * fontsize * len(text) + 4, 1.2 * fontsize + 2  # with a margin
        best = None
        for dx, dy in _LABEL_OFFSETS:
            x0 = px + dx if dx >= 0 else px + dx - w
            box = (x0, py + dy, x0 + w, py + dy + h)
            cost = sum(overlap(box, other) for other in placed)
            if best is None or cost < best[0]:
                best = (cost, box, (dx, dy))
            if cost == 0:
                break
        _, box, (dx, dy) = best
        placed.append(box)
        ax.annotate(text, (xi, yi), xytext=(dx, dy), textcoords="offset points",
                    ha="left" if dx >= 0 else "right", va="bottom", fontsize=fontsize,
                    color="k", annotation_clip=True)


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
    if center is not None and half_size is not None:
        ax.set_xlim(center[0] - half_size, center[0] + half_size)
        ax.set_ylim(center[1] - half_size, center[1] + half_size)
    if labels:
        _place_labels(ax, x, y, ["+".join(n) for n in names])
    ax.set_xlabel("RAWX [pixel]")
    ax.set_ylabel("RAWY [pixel]")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")
    return ax
