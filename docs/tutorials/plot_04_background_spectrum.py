"""
Background spectra and levels before and after each filter
==========================================================

The figure quoted for a detector's particle background is its level, in
counts s\\ :sup:`-1` keV\\ :sup:`-1` cm\\ :sup:`-2` in a band such as
2-7 keV, before and after filtering.  This tutorial

1. simulates a background-dominated observation and filters it with the
   very-faint-mode (VF) and self-anti-coincidence (SAC) filters,
2. computes the background spectrum and the levels of the events each
   filter combination accepts, split into X-ray and cosmic-ray (CR) parts
   with the simulator's truth, and
3. writes the OGIP products (PHA spectra, an RMF and an ARF) that XSPEC,
   Sherpa or gammapy fit, with ``xcrfilter spectrum``.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np

from xcrfilter.cli.main import main
from xcrfilter.evaluation.compare import compare_filters
from xcrfilter.io.eventfile import write_events
from xcrfilter.simulate import SimulationParameters, simulate_frames
from xcrfilter.io.spectra import (accepted, background_levels, detector_area, exposure_of,
                               format_levels, parse_combination, pixel_size_of)

workdir = tempfile.mkdtemp(prefix="xcrfilter-tutorial-")

# %%
# A background-dominated observation
# ----------------------------------
# 100 frames of 128 x 128 pixels of 130 um with half an X-ray per frame and
# CR-enriched physics (two showers per frame, each with on average one
# secondary photon and half a low-energy electron blob, as in
# :doc:`plot_03_compare_classical`), so that a short run has CR events
# inside 0.3-10 keV to show.  :func:`~xcrfilter.evaluation.compare.compare_filters`
# finds the events once, runs the filters and returns the truth of each
# event (1 X-ray, 2 CR).
params = SimulationParameters(xray_rate=0.5, cr_rate=2.0, photon_mean=1.0,
                              electron_mean=0.5)
sim = simulate_frames(100, seed=4, params=params, shape=(128, 128))
report = compare_filters(sim.frames * u.eV, sim.labels, methods=["vfaint", "sac"])
events = report.events
events["TRUTH"] = report.truth.astype(np.int16)
print(f"{len(events)} events: {np.count_nonzero(report.truth == 1)} X-ray, "
      f"{np.count_nonzero(report.truth == 2)} CR")

# %%
# Exposure and area
# -----------------
# Frames of 5 ms: the exposure is ``NFRAMES x 5 ms`` (an event file of
# ``xcrfilter filter`` has ``EXPOSURE`` in its header).  The detector area
# is ``FRMROWS x FRMCOLS x pixel size**2``; the pixel size comes from the
# ``PIXSIZE`` keyword, else the WFI model's 130 um.
exposure = exposure_of(events.meta, frame_time=5 * u.ms)
pixel, origin = pixel_size_of(events.meta)
area = detector_area(events.meta, pixel)
print(f"exposure {exposure}, area {area:.4f} (pixel {pixel}, {origin})")

# %%
# The background spectrum before and after each filter
# ----------------------------------------------------
# A combination accepts the events whose ``STATUS`` bits of its filters are
# 0: ``none`` is every event (before filtering), ``all`` every bit.  The
# spectra are in ``PI`` channels of 5 eV, here summed to 500 eV bins and
# divided by exposure, bin width and area.
combinations = ["none", "vfaint", "sac", "all"]
pi = np.asarray(events["PI"])
edges = np.arange(0, 12001, 500)  # eV
width_kev = np.diff(edges) / 1e3
scale = 1 / (exposure.to_value(u.s) * width_kev * area.to_value(u.cm ** 2))
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, (label, title) in zip(axes, [(2, "cosmic-ray events (background)"),
                                     (1, "X-ray events (signal)")]):
    for combo in combinations:
        ok = accepted(events, parse_combination(combo, events.meta))
        counts, _ = np.histogram(pi[ok & (report.truth == label)] * 5.0, bins=edges)
        ax.stairs(counts * scale, edges / 1e3, label=combo)
    ax.set_yscale("log")
    ax.set_xlabel("energy (PI) [keV]")
    ax.set_title(title)
    ax.axvspan(2, 7, color="0.9", zorder=0)
axes[0].set_ylabel("level [counts s$^{-1}$ keV$^{-1}$ cm$^{-2}$]")
axes[0].legend(title="accepted by")
fig.tight_layout()

# %%
# Levels in bands
# ---------------
# :func:`~xcrfilter.io.spectra.background_levels` counts the accepted events
# in the ``PI`` channels of each band (2-7 keV is channels 400-1399) and
# gives Poisson 68 % intervals; with ``TRUTH`` it splits the level into its
# X-ray and CR parts.  The CR part is the residual particle background.
levels = background_levels(events, combinations, exposure=exposure, area=area)
print("\n".join(format_levels(levels)))

# %%
# The OGIP products
# -----------------
# From the shell, ``xcrfilter spectrum`` writes one type I PHA spectrum per
# combination, the level table (ECSV) and, with ``--rmf``, a diagonal
# Gaussian RMF (Fano factor and read noise of the detector model) and a
# flat ARF of the detector area, so that a fitted normalisation is a level
# per cm2.  Here it runs on the event file written above.
events_file = os.path.join(workdir, "events.fits")
write_events(events, events_file)
main(["spectrum", events_file, "-o", os.path.join(workdir, "obs"), "--rmf",
      "--frame-time", "5ms", "--combination", "none", "--combination", "all"])
print(sorted(os.listdir(workdir)))
