"""Figures and numbers of docs/laplacian.rst.

Run from the repository root::

    python docs/scripts/make_laplacian_figures.py [--frames 8] [--seed 7]

Writes into ``docs/_static/laplacian/``:

* ``real_gmos.png``, ``real_saao.png``: the real CCD frames shipped with
  astroscrappy and ccdproc, their L.A.Cosmic mask (default parameters) and
  the pixel counts; ``real_counts.txt`` the numbers;
* ``sigclip_scan.png`` and ``sigclip_scan.ecsv``: the sigclip scan on
  simulated WFI frames against the simulator truth (MSE minimum and knee).
"""
import argparse
import os

import astropy.units as u
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xcrfilter.evaluation.pixels import scan_sigclip
from xcrfilter.filters.laplacian import lacosmic_mask  # noqa: E402
from xcrfilter.io.realdata import REAL_FRAMES, load_real_frame, real_frame_path  # noqa: E402

OUT = os.path.join("docs", "_static", "laplacian")


def real_frames():
    lines = []
    for name in REAL_FRAMES:
        try:
            real_frame_path(name)
        except FileNotFoundError as exc:
            lines.append(f"{name}: not available ({exc})")
            continue
        ccd = load_real_frame(name)
        out = lacosmic_mask(ccd)
        mask = out.mask
        from scipy import ndimage
        _, n_regions = ndimage.label(mask, structure=np.ones((3, 3)))
        h = out.header
        info = REAL_FRAMES[name]
        line = (f"{name}: {info['package']}/{info['resource']} "
                f"{ccd.shape[1]}x{ccd.shape[0]} px, unit {ccd.unit}, gain {h['LACGAIN']} "
                f"e/{ccd.unit}, read noise {h['LACRDNS']} e: {h['LACNCRPX']} CR pixels "
                f"({100 * h['LACNCRPX'] / mask.size:.3f} %) in {n_regions} regions "
                f"(sigclip {h['LACSIGCL']}, sigfrac {h['LACSIGFR']}, objlim {h['LACOBJLM']})")
        lines.append(line)
        print(line)
        lo, hi = np.percentile(ccd.data, [1, 99.5])
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True)
        axes[0].imshow(ccd.data, origin="lower", cmap="gray", vmin=lo, vmax=hi)
        axes[0].set_title(REAL_FRAMES[name]["title"], fontsize=9)
        axes[1].imshow(ccd.data, origin="lower", cmap="gray", vmin=lo, vmax=hi)
        overlay = np.zeros(mask.shape + (4,))
        overlay[mask] = (1, 0, 0, 1)
        axes[1].imshow(overlay, origin="lower", interpolation="nearest")
        axes[1].set_title(f"L.A.Cosmic mask (red): {h['LACNCRPX']} pixels, "
                          f"{n_regions} regions", fontsize=9)
        for ax in axes:
            ax.set_xlabel("column")
        axes[0].set_ylabel("row")
        fig.tight_layout()
        fig.savefig(os.path.join(OUT, f"real_{name}.png"), dpi=90)
        plt.close(fig)
    with open(os.path.join(OUT, "real_counts.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


def sigclip_scan(n_frames, seed):
    from xcrfilter.simulate import simulate_frames
    sim = simulate_frames(n_frames, seed=seed)
    sigclips = np.round(np.arange(1.0, 10.01, 0.5), 2)
    table = scan_sigclip(sim.frames * u.eV, sim.labels, sigclips=sigclips)
    table.meta["NFRAMES"] = n_frames
    table.meta["SIMSEED"] = seed
    table.write(os.path.join(OUT, "sigclip_scan.ecsv"), overwrite=True)
    print(table)
    print("MSE minimum at sigclip", table.meta["SIGMSE"], "; knee at", table.meta["SIGKNEE"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.plot(table["SIGCLIP"], table["N_CRPIX"], "o-", label="L.A.Cosmic CR pixels")
    ax.axhline(table.meta["NCR_TRUE"], color="k", ls=":", label="true CR pixels")
    ax.axvline(table.meta["SIGKNEE"], color="tab:red", ls="--",
               label=f"knee {table.meta['SIGKNEE']}")
    ax.axvline(table.meta["SIGMSE"], color="tab:green", ls="--",
               label=f"MSE minimum {table.meta['SIGMSE']}")
    ax.set_yscale("log")
    ax.set_xlabel("sigclip")
    ax.set_ylabel("pixels")
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(table["SIGCLIP"], table["PURITY"], "o-", label="purity")
    ax.plot(table["SIGCLIP"], table["COMPLETENESS"], "s-", label="completeness")
    ax.plot(table["SIGCLIP"], table["F1"], "^-", label="F1")
    ax2 = ax.twinx()
    ax2.plot(table["SIGCLIP"], table["MSE"], "k:", label="MSE")
    ax2.set_ylabel("MSE (fraction of pixels)")
    ax.set_xlabel("sigclip")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="center right")
    fig.suptitle(f"sigclip scan on {n_frames} simulated WFI frames (pixel-wise vs truth)")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "sigclip_scan.png"), dpi=90)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-scan", action="store_true", help="real frames only")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    real_frames()
    if not args.skip_scan:
        sigclip_scan(args.frames, args.seed)


if __name__ == "__main__":
    main()
