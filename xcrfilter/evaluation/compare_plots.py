"""Figures of a `xcrfilter.evaluation.compare.CompareReport` (PNG files of the report directory).

The numbers come from `xcrfilter.evaluation.compare` (evaluation); this module only
draws them: ROC, unrejected background spectrum, FOR improvement per band,
lost X-ray signal against energy and the pixel-wise Laplacian confusion.
"""
from __future__ import annotations

import os

import astropy.units as u
import numpy as np

from .selection import rejected
from .plots import COLORS, plot_roc
from ..units import DEFAULT_BAND, energy_values

__all__ = ["make_figures"]

FULL_BAND = tuple(float(e) for e in DEFAULT_BAND.to_value(u.keV))


def make_figures(report, outdir, *, frames=None, labels=None):
    """ROC, unrejected background spectrum (Fig. 3a), FOR improvement per band
    (Fig. 3b), lost X-ray signal vs energy (Fig. 4) and the Laplacian pixel
    confusion, as PNG files in ``outdir``.  Returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    t, ev, truth = report.table, report.events, report.truth
    full = f"{FULL_BAND[0]:g}-{FULL_BAND[1]:g}"
    tf = t[t["BAND"] == full]
    methods = list(tf["METHOD"])

    # --- ROC
    fig, ax = plt.subplots(figsize=(6, 4.5))
    plot_roc(report.roc, tf, ax=ax, title=f"ROC, {full} keV, {report.n_frames} frames")
    files.append(_save(fig, outdir, "roc.png"))

    # --- unrejected background spectrum (Fig. 3a)
    e = energy_values(ev["ENERGY"], u.keV)
    bins = np.geomspace(FULL_BAND[0], FULL_BAND[1], 25)
    width = np.diff(bins)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    cr = truth == 2
    n = max(report.n_frames, 1)
    h_all, _ = np.histogram(e[cr], bins)
    ax.stairs(h_all / width / n, bins, color="0.6", ls=":", label="all CR events")
    for m in methods:
        keep = cr & ~rejected(ev, m)
        h, _ = np.histogram(e[keep], bins)
        ax.stairs(h / width / n, bins, color=COLORS.get(m), label=m)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("event energy [keV]")
    ax.set_ylabel("unrejected CR events / keV / frame")
    ax.set_title("Unrejected background spectrum (cf. paper Fig. 3a)")
    ax.legend(fontsize=7)
    files.append(_save(fig, outdir, "background_spectrum.png"))

    # --- FOR relative improvement per band (Fig. 3b)
    bands = [b for b in dict.fromkeys(t["BAND"]) if b != full]
    others = [m for m in methods if m != "VF"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    w = 0.8 / max(len(others), 1)
    for j, m in enumerate(others):
        vals = [100 * t[(t["BAND"] == b) & (t["METHOD"] == m)]["FOR_IMPR"][0] for b in bands]
        ax.bar(np.arange(len(bands)) + (j - (len(others) - 1) / 2) * w,
               np.nan_to_num(vals), w, color=COLORS.get(m), label=m)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(bands)), [f"{b} keV" for b in bands])
    ax.set_ylabel("FOR relative improvement vs VF [%]")
    ax.set_title("Background reduction per band (cf. paper Fig. 3b)")
    ax.legend(fontsize=7)
    files.append(_save(fig, outdir, "for_improvement.png"))

    # --- lost X-ray signal vs energy (Fig. 4)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xr = truth == 1
    ebins = np.geomspace(FULL_BAND[0], FULL_BAND[1], 16)
    centers = np.sqrt(ebins[1:] * ebins[:-1])
    nx, _ = np.histogram(e[xr], ebins)
    for m in methods:
        nl, _ = np.histogram(e[xr & rejected(ev, m)], ebins)
        with np.errstate(invalid="ignore", divide="ignore"):
            ax.plot(centers, 100 * nl / nx, "o-", ms=3, color=COLORS.get(m), label=m)
    ax.set_xscale("log")
    ax.set_xlabel("event energy [keV]")
    ax.set_ylabel("lost X-ray signal [%]")
    ax.set_title("Lost X-ray signal vs energy (cf. paper Fig. 4)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    files.append(_save(fig, outdir, "lost_signal.png"))

    # --- pixel-wise confusion of the Laplacian mask
    if report.pixel:
        p = report.pixel
        fig, axes = plt.subplots(1, 2, figsize=(9, 4),
                                 gridspec_kw=dict(width_ratios=[1, 1.3]))
        mat = np.array([[p["TN"], p["FP"]], [p["FN"], p["TP"]]], float)
        axes[0].imshow(np.log10(mat + 1), cmap="Blues")
        dark = np.log10(mat + 1) > 0.5 * np.log10(mat.max() + 1)
        for (i, j), v in np.ndenumerate(mat):
            axes[0].text(j, i, f"{int(v)}", ha="center", va="center",
                         color="w" if dark[i, j] else "k")
        axes[0].set_xticks([0, 1], ["not masked", "masked"])
        axes[0].set_yticks([0, 1], ["truth not CR", "truth CR"])
        axes[0].set_title(f"purity {p['PURITY']:.3f}, completeness {p['COMPLETENESS']:.3f}\n"
                          f"F1 {p['F1']:.3f}, X-ray pixels masked {p['FP_XRAY']}",
                          fontsize=9)
        mask = report.laplacian_mask
        if mask is not None and labels is not None:
            k = int(np.argmax((labels[:mask.shape[0]] == 2).sum(axis=(1, 2))))
            rgb = np.zeros(mask.shape[1:] + (3,))
            lab = labels[k]
            rgb[(lab == 2) & mask[k]] = (1, 1, 1)       # TP white
            rgb[(lab == 2) & ~mask[k]] = (1, 0, 0)      # FN red
            rgb[(lab != 2) & mask[k]] = (0, 0.6, 1)     # FP blue
            rgb[(lab == 1) & ~mask[k]] = (1, 0.85, 0)   # X-ray kept yellow
            ys, xs = np.nonzero(lab == 2)
            m = 25
            y0, y1 = max(ys.min() - m, 0), min(ys.max() + m + 1, lab.shape[0])
            x0, x1 = max(xs.min() - m, 0), min(xs.max() + m + 1, lab.shape[1])
            axes[1].imshow(rgb[y0:y1, x0:x1], origin="lower", interpolation="nearest",
                           extent=(x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5))
            axes[1].set_title(f"frame {k}: TP white, FN red, FP blue, X-ray yellow",
                              fontsize=9)
            axes[1].set_xlabel("RAWX")
            axes[1].set_ylabel("RAWY")
        else:
            axes[1].axis("off")
        fig.suptitle("Pixel-wise L.A.Cosmic mask vs simulator truth")
        files.append(_save(fig, outdir, "laplacian_confusion.png"))
    return files


def _save(fig, outdir, name):
    import matplotlib.pyplot as plt
    path = os.path.join(outdir, name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
