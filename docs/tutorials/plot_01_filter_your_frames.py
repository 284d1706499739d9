"""
Filter your own FITS frames and look at the events
==================================================

Raw frames of a pixelated X-ray detector go in, an event table with one row
per event and its ``STATUS`` bits comes out.  This tutorial

1. writes a small FITS cube of frames (here simulated; use your own file
   instead, with ``BUNIT`` eV, keV, electron or adu and ``GAIN``),
2. finds the events and flags cosmic-ray events with the very-faint-mode
   (VF) and self-anti-coincidence (SAC) filters,
3. looks at the events as an astropy table,
4. writes the OGIP event file and a ds9 region file, and
5. draws one frame with the verdict on each event.
"""

import os
import tempfile

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
from astropy.io import fits
from regions import CirclePixelRegion, PixCoord, RegionMeta, RegionVisual, Regions

from xcrfilter.io.eventfile import read_events, write_events
from xcrfilter.pipeline import run_pipeline
from xcrfilter.registry import METHOD_BITS
from xcrfilter.evaluation.plots import plot_frame_verdicts
from xcrfilter.simulate import write_simulation

workdir = tempfile.mkdtemp(prefix="xcrfilter-tutorial-")
frames_file = os.path.join(workdir, "frames.fits")

# %%
# The frames
# ----------
# Twenty 512 x 512 frames with X-rays, cosmic rays and 7 e- readout noise.
# Any FITS file with a 2-D image or a 3-D cube (frames, rows, columns) and a
# ``BUNIT`` works the same way.
write_simulation(frames_file, 20, seed=1)
with fits.open(frames_file) as hdul:
    hdul.info()
    print("BUNIT =", hdul[0].header["BUNIT"])

# %%
# Find and filter the events
# --------------------------
# :func:`~xcrfilter.pipeline.run_pipeline` reads the file, finds events
# (local maxima at or above 260 eV, pixels at or above 80 eV join the event)
# and runs the filters; ``xcrfilter filter frames.fits --method vfaint,sac``
# does the same from the shell.
events = run_pipeline(frames_file, "vfaint,sac", event_threshold=260 * u.eV,
                      split_threshold=80 * u.eV, mip_threshold=10 * u.keV)
print(f"{len(events)} events in {events.meta['NFRAMES']} frames")
events["FRAME", "RAWX", "RAWY", "ENERGY", "GRADE", "STATUS", "SAC_DIST"][:8]

# %%
# ``STATUS`` is 0 for an event that every filter accepts.  Bits 0-2 belong
# to the VF filter (grade, 5x5 outer ring, energy outside [260 eV, 10 keV)),
# bit 4 to SAC (closer than its radius to a particle track).
status = np.asarray(events["STATUS"])
for name in ("vfaint", "sac"):
    n_rej = np.count_nonzero(status & METHOD_BITS[name])
    print(f"{name:7s} rejects {n_rej:4d} of {len(events)} events")
clean = events[status == 0]
print(f"{len(clean)} events accepted by both, energies "
      f"{clean['ENERGY'].min().to(u.keV):.2f} to {clean['ENERGY'].max().to(u.keV):.2f}")

# %%
# Files: the event list and ds9 regions
# -------------------------------------
# The event file is an OGIP ``EVENTS`` table that every X-ray tool reads;
# nothing is dropped, the ``STATUS`` bits say what each filter decided.
events_file = os.path.join(workdir, "events.fits")
write_events(events, events_file, overwrite=True, input_files=[frames_file])
back = read_events(events_file)
print(f"read back {len(back)} events, columns {back.colnames[:8]} ...")

# %%
# ds9 regions for the events of frame 0, written with the astropy
# ``regions`` package: one circle per event, green when accepted, red when
# rejected, labelled with its energy.  ``PixCoord`` counts pixels from 0,
# as the event table does; ``regions`` writes the 1-based ds9 convention.
frame = 0
marks = Regions([
    CirclePixelRegion(PixCoord(float(row["RAWX"]), float(row["RAWY"])), radius=3,
                      meta=RegionMeta(text=f"{row['ENERGY'].to_value(u.keV):.2f} keV"),
                      visual=RegionVisual(color="green" if row["STATUS"] == 0 else "red"))
    for row in events[np.asarray(events["FRAME"]) == frame]])
regions_file = os.path.join(workdir, "frame0.reg")
marks.write(regions_file, format="ds9", overwrite=True)
with open(regions_file) as fh:
    print(fh.read())

# %%
# One frame and its verdicts
# --------------------------
# The frame with the most events, every event marked with the filters that
# reject it.
counts = np.bincount(np.asarray(events["FRAME"]))
frame = int(np.argmax(counts))
with fits.open(frames_file) as hdul:
    image = hdul[0].data[frame] * u.Unit(hdul[0].header["BUNIT"])
sel = np.asarray(events["FRAME"]) == frame
fig, ax = plt.subplots(figsize=(7, 6))
plot_frame_verdicts(image, events[sel], {"VF": METHOD_BITS["vfaint"], "SAC": METHOD_BITS["sac"]},
                    ax=ax, title=f"frame {frame}: {int(sel.sum())} events")
fig.tight_layout()
