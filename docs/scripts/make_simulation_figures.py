"""Make the figures of the simulation page (docs/_static/simulation/*.png).

Run from the repository root::

    python benchmarks/calibrate_simulator.py --json calib.json   # optional
    python docs/scripts/make_simulation_figures.py [--calib calib.json]

Every figure is computed with :mod:`xcrfilter.simulate` itself (seeded), so
the pictures follow the code.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xcrfilter.simulate import (FrameSimulator, SimulationParameters,  # noqa: E402
                                absorption_probability, attenuation_length,
                                cloud_sigma, simulate_frames, simulate_tiles)
from xcrfilter.simulate import physics as ph  # noqa: E402
from xcrfilter.simulate.showers import track_deposits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "_static", "simulation")


def save(fig, name):
    os.makedirs(OUT, exist_ok=True)
    fig.savefig(os.path.join(OUT, name), dpi=110, bbox_inches="tight")
    plt.close(fig)
    print("wrote", name)


def fig_attenuation():
    e = np.geomspace(150, 20000, 600)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].loglog(e / 1e3, attenuation_length(e))
    ax[0].axhline(450, ls=":", c="k")
    ax[0].set(xlabel="photon energy [keV]", ylabel="attenuation length in Si [um]",
              title="Si attenuation length (NIST XCOM / Henke)")
    ax[1].semilogx(e / 1e3, absorption_probability(e, 450.0))
    ax[1].set(xlabel="photon energy [keV]", ylabel="absorbed in 450 um",
              title="quantum efficiency (bare sensor)")
    ax[1].grid(alpha=0.3)
    save(fig, "attenuation.png")


def fig_cloud():
    p = SimulationParameters()
    z = np.linspace(0, 450, 200)
    fig, ax = plt.subplots(figsize=(4.5, 3.3))
    ax.plot(z, cloud_sigma(450 - z, 450, p.bias_voltage, p.temperature))
    ax.set(xlabel="interaction depth from the entrance side [um]",
           ylabel="charge cloud rms [um]",
           title=f"diffusion: {p.bias_voltage:g} V, {p.temperature:g} K")
    ax.grid(alpha=0.3)
    save(fig, "cloud_sigma.png")


def fig_dedx():
    sim = FrameSimulator()
    rng = np.random.default_rng(0)
    n = 20000
    z = np.zeros(n)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, t in (("3 GeV protons", np.full(n, 3000.0)),
                     ("GCR protons (solar min.)", sim.proton_sampler.sample(rng, n))):
        tid, xs, ys, zs, es = track_deposits(sim, rng, z + 1e3, z + 1e3, z, z, z, z + 1,
                                          np.ones(n), np.full(n, ph.MP_MEV), t,
                                          np.full(n, np.inf))
        inside = (zs >= 0) & (zs <= 450)
        tot = np.bincount(tid, weights=es * inside, minlength=n) / 1e3 / 450
        ax.hist(tot, bins=np.arange(0.15, 0.8, 0.005), histtype="step", label=label)
    ax.axvline(0.275, ls=":", c="k")
    ax.set(xlabel="deposit / path, normal incidence [keV/um]", ylabel="tracks",
           title="energy loss in 450 um Si")
    ax.legend()
    save(fig, "dedx.png")


def fig_frame():
    """A 128 x 128 cut-out around one shower (photon rate raised to show them)."""
    params = SimulationParameters(cr_rate=1, xray_rate=1, photon_mean=1.0)
    c = simulate_frames(48, seed=7, params=params)
    s = c.sources
    prim = s[(s["KIND"] == "primary") & s["HIT"]]
    kids = np.array([np.count_nonzero((s["PARENT"] == i) & (s["KIND"] != "primary"))
                     for i in prim["ID"]])
    k = int(np.argmax(kids))
    f = int(prim["FRAME"][k])
    x0 = int(np.clip(prim["X"][k].value - 64, 0, 512 - 128))
    y0 = int(np.clip(prim["Y"][k].value - 64, 0, 512 - 128))
    cut = (slice(y0, y0 + 128), slice(x0, x0 + 128))
    ext = (x0 - 0.5, x0 + 127.5, y0 - 0.5, y0 + 127.5)
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    im = ax[0].imshow(np.log10(np.clip(c.frames[f][cut], 10, None)), origin="lower",
                      cmap="magma", vmin=1, vmax=5, extent=ext)
    fig.colorbar(im, ax=ax[0], label="log10(pixel energy / eV)", shrink=0.85, pad=0.02)
    ax[0].set_title(f"frame {f}: one shower (128 x 128 cut-out)", fontsize=10)
    for a in ax:
        a.set_xlabel("RAWX [pixel]")
        a.set_ylabel("RAWY [pixel]")
    cm = matplotlib.colors.ListedColormap(["white", "tab:blue", "tab:red"])
    ax[1].imshow(c.labels[f][cut], origin="lower", cmap=cm, vmin=0, vmax=2,
                 interpolation="nearest", extent=ext)
    ss = s[s["FRAME"] == f]
    for kind, mk in (("xray", "o"), ("primary", "D"), ("photon", "s"),
                     ("secondary_track", "^"), ("electron", "v")):
        kk = ss[ss["KIND"] == kind]
        if len(kk):
            ax[1].scatter(kk["X"].value, kk["Y"].value, marker=mk, s=50,
                          facecolors="none", edgecolors="k", label=kind)
    ax[1].set_xlim(ext[:2])
    ax[1].set_ylim(ext[2:])
    ax[1].legend(fontsize=7, loc="upper right")
    ax[1].set_title("truth labels (blue X-ray, red CR) and SOURCES", fontsize=10)
    save(fig, "frame.png")


def fig_tiles():
    tiles, labels, classes, _ = simulate_tiles(3, seed=2)
    names = ["EMPTY", "XRAY", "CR", "MIX"]
    fig, ax = plt.subplots(3, 4, figsize=(9.5, 7), layout="constrained")
    for c in range(4):
        idx = np.nonzero(classes == c)[0]
        for r in range(3):
            a = ax[r, c]
            im = a.imshow(np.log10(np.clip(tiles[idx[r]], 10, None)), origin="lower",
                          cmap="magma", vmin=1, vmax=5)
            a.set_xticks([0, 32, 63] if r == 2 else [])
            a.set_yticks([0, 32, 63] if c == 0 else [])
            if r == 0:
                a.set_title(names[c])
    fig.supxlabel("column in the tile [pixel]")
    fig.supylabel("row in the tile [pixel]")
    fig.colorbar(im, ax=ax, label="log10(pixel energy / eV)", shrink=0.6)
    fig.suptitle("64 x 64 training tiles, three per class")
    save(fig, "tiles.png")


def fig_calib(path):
    with open(path) as fh:
        res = json.load(fh)
    rows = res["splits"]
    mid = [np.sqrt(r[0] * r[1]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for i, name in enumerate(("single", "double", "triple", "quad")):
        v = [r[3 + i][0] for r in rows]
        e = [r[3 + i][1] for r in rows]
        ax.errorbar(mid, v, yerr=e, marker="o", label=name)
    ax.set(xscale="log", xlabel="energy [keV]", ylabel="accepted X-ray events [%]",
           title="split fractions (VF-accepted, 0.3-10 keV)")
    ax.set_xticks([0.5, 1, 2, 5, 10])
    ax.set_xticklabels(["0.5", "1", "2", "5", "10"])
    ax.minorticks_off()
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, "splits.png")
    if "shower_sizes_all" in res:
        sizes = np.asarray(res["shower_sizes_all"])
        fig, ax = plt.subplots(figsize=(5, 3.4))
        srt = np.sort(sizes)
        ax.step(srt, np.arange(1, srt.size + 1) / srt.size, where="post")
        ax.set_xlim(0, 300)
        ax.axvline(64, ls=":", c="k")
        ax.set(xlabel="shower extent (largest side of the bounding box) [pixel]",
               ylabel="cumulative fraction", title="CR shower sizes")
        ax.grid(alpha=0.3)
        save(fig, "shower_sizes.png")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--calib", default=None, help="JSON from calibrate_simulator.py")
    a = ap.parse_args(argv)
    fig_attenuation()
    fig_cloud()
    fig_dedx()
    fig_frame()
    fig_tiles()
    if a.calib:
        fig_calib(a.calib)
    return 0


if __name__ == "__main__":
    sys.exit(main())
