"""
Compare with classical cosmic-ray detectors on the same events
==============================================================

Cosmic-ray rejection in optical CCD images is usually done with
L.A.Cosmic (van Dokkum 2001, here through astroscrappy), which looks for
sharp features in the Laplacian of the image.  X-ray detectors instead
count single photons: every X-ray is itself a sharp, compact charge cloud.
This tutorial runs L.A.Cosmic, self-anti-coincidence (SAC) and the CAM
filter on the *same* events of simulated frames, and scores each against
the simulator's truth with counts and 68 % intervals.
"""

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np

from xcrfilter.evaluation.compare import compare_filters
from xcrfilter.cli.demo import format_report
from xcrfilter.evaluation.plots import plot_roc, plot_spectrum
from xcrfilter.simulate import SimulationParameters, simulate_frames

# %%
# Frames with truth
# -----------------
# Twelve 512 x 512 frames of a bright source (10 X-rays per frame).
# ``labels`` holds the truth of every pixel: 0 none, 1 X-ray, 2 cosmic ray
# (CR).
#
# Most CR events are far above 10 keV and rejected by the energy cut alone:
# at the rates of Poliszczuk et al. (one shower per frame) only about one
# frame in a hundred holds a CR event inside 0.3-10 keV, and twelve such
# frames hold none.  These frames are *CR-enriched* so that the ROC below
# has in-band CR events to score: two showers per frame, each with on
# average one secondary photon (``photon_mean``, 0.0145 in the default
# physics) and half a low-energy electron blob (``electron_mean``, 0.0002),
# the CR events that look like X-rays.  The rates are not those of an
# observation; the comparison at the real rates, on 20,000 frames, is in
# :doc:`/compare`.
enriched = SimulationParameters(xray_rate=10.0, cr_rate=2.0, photon_mean=1.0,
                                electron_mean=0.5)
sim = simulate_frames(12, seed=5, params=enriched)
print(sim.frames.shape, "frames;", np.count_nonzero(sim.labels == 1), "X-ray and",
      np.count_nonzero(sim.labels == 2), "CR pixels")

# %%
# Every filter on the same events
# -------------------------------
# :func:`~xcrfilter.evaluation.compare.compare_filters` finds the events once and lets
# each filter set its own ``STATUS`` bit; L.A.Cosmic also gets a pixel-wise
# comparison of its mask with the truth.
report = compare_filters(sim.frames * u.eV, sim.labels,
                         methods=["vfaint", "lacosmic", "sac", "cam"], pixel_frames=12)
print(format_report(report.events, report.truth, report.table))

# %%
# L.A.Cosmic at its defaults masks the compact charge clouds of nearly all
# X-ray events: astroscrappy's defaults are made for seeing-limited optical
# images, in which a real source spreads over a point-spread function of
# several pixels.  Pixel by pixel:
p = report.pixel
print(f"L.A.Cosmic mask: {p['TP']} of {p['N_CR']} CR pixels and {p['FP_XRAY']} of "
      f"{p['N_XRAY']} X-ray pixels masked")

# %%
# Accepted and rejected events
# ----------------------------
# The spectrum of the events each method accepts and rejects, split by
# truth; the dashed lines mark the 0.3-10 keV band.  The CAM filter scores
# only that band: the events outside it (``PROB_CR`` NaN) are not rejected,
# so they count as accepted, and the grey curve shows them.
methods = ["LACOSMIC", "SAC", "CAM"]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
for ax, m in zip(axes, methods):
    rej = (np.asarray(report.events["STATUS"]) & {"LACOSMIC": 8, "SAC": 16, "CAM": 32}[m]) > 0
    unscored = np.isnan(np.asarray(report.events["PROB_CR"], float)) if m == "CAM" else None
    plot_spectrum(report.events, rej, truth=report.truth, ax=ax, title=m, unscored=unscored)
fig.tight_layout()

# %%
# ROC
# ---
# SAC swept in radius and CAM in probability threshold; the markers are the
# defaults.  With a few tens of in-band CR events (printed in the table
# above) both axes carry wide intervals: the curves show the shape, the
# 20,000-frame run in :doc:`/compare` the numbers.
full = report.table[report.table["BAND"] == "0.3-10"]
fig, ax = plt.subplots(figsize=(6, 4.5))
plot_roc(report.roc, full, ax=ax, title=f"0.3-10 keV, {report.n_frames} frames")
fig.tight_layout()
