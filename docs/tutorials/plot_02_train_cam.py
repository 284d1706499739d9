"""
Train the CAM filter on your own labelled frames
================================================

The CAM filter of Poliszczuk et al. (Proc. SPIE) has two stages:

1. a DenseNet classifies 64 x 64 tiles as empty, X-ray, cosmic ray (CR) or
   both; its class activation maps (CAMs) say *where* in a frame it sees
   X-ray-like and CR-like structure;
2. a balanced random forest scores every event from its CAM values and
   shape features and rejects events whose CR probability is above a
   threshold chosen for a target lost X-ray fraction.

Stage 1 trains on tiles, stage 2 on frames whose pixels carry truth labels
(0 none, 1 X-ray, 2 CR) in a ``TRUTH`` image extension, as ``xcrfilter
simulate`` writes them; frames from your own simulation (e.g. Geant4) work
the same way once their truth is in such an extension.

This is a *tiny* run (a small network, one epoch, 50 trees, toy frames)
that finishes in under a minute on two CPU cores: it shows the mechanics,
not a useful model.  The shipped model was trained on 200,000
tiles and 30,000 frames (``xcrfilter train --help``).
"""

import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
from astropy.io import fits

from xcrfilter.filters.cam import cam_filter
from xcrfilter.ml.model import load_model
from xcrfilter.ml.training import train
from xcrfilter.simulate import build_tile_dataset

workdir = tempfile.mkdtemp(prefix="xcrfilter-train-")


def labelled_frames(path, n, seed, size=128):
    """Write ``n`` labelled frames [eV] with a TRUTH extension to ``path``.

    A stand-in for your own frames: X-ray charge clouds (label 1) and, in
    every frame, a particle track with two secondary clouds beside it
    (label 2), on 25 eV Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    frames = rng.normal(0.0, 25.0, (n, size, size)).astype(np.float32)
    truth = np.zeros(frames.shape, np.uint8)
    cloud = np.array([[0.05, 0.1, 0.05], [0.1, 0.4, 0.1], [0.05, 0.1, 0.05]])
    for k in range(n):
        for _ in range(12):
            y, x = rng.integers(8, size - 8, 2)
            frames[k, y - 1:y + 2, x - 1:x + 2] += rng.uniform(500, 8000) * cloud
            truth[k, y - 1:y + 2, x - 1:x + 2] = 1
        row = rng.integers(20, size - 20)
        frames[k, row, 10:size - 10] += 3000.0
        truth[k, row, 10:size - 10] = 2
        for x in (30, 70):
            frames[k, row + 6 - 1:row + 6 + 2, x - 1:x + 2] += rng.uniform(1000, 5000) * cloud
            truth[k, row + 6 - 1:row + 6 + 2, x - 1:x + 2] = 2
    primary = fits.PrimaryHDU(frames)
    primary.header["BUNIT"] = "eV"
    fits.HDUList([primary, fits.ImageHDU(truth, name="TRUTH")]).writeto(path, overwrite=True)
    return path


# %%
# Training data
# -------------
# Stage 1: 40 simulated tiles of each class.  Stage 2: 12 labelled frames in
# a FITS file with a ``TRUTH`` extension (never the data of stage 1).
tiles = os.path.join(workdir, "tiles.npz")
build_tile_dataset(40, tiles, seed=11)
labelled = labelled_frames(os.path.join(workdir, "labelled.fits"), 12, seed=12)
with fits.open(labelled) as hdul:
    hdul.info()
    truth = hdul["TRUTH"].data
print(f"X-ray pixels {np.count_nonzero(truth == 1)}, CR pixels {np.count_nonzero(truth == 2)}")

# %%
# Train both stages
# -----------------
# ``arch`` shrinks the DenseNet (the paper's network is far larger) and
# ``n_estimators`` the forest; ``target_fpr`` is the fraction of X-ray
# events the chosen threshold may reject on the validation frames.
model_dir = os.path.join(workdir, "my_model")
meta = train(tiles, [labelled], model_dir, epochs=1, batch_size=16,
             arch=dict(initial_filters=4, growth_rate=2, layers_per_block=1),
             n_estimators=50, target_fpr=0.02, seed=3, progress=False,
             command="tutorial: tiny run")
print(f"threshold {meta['threshold']:.3f}")
print(sorted(os.listdir(model_dir)))

# %%
# Use the model
# -------------
# Load it and filter frames it has never seen; ``xcrfilter filter
# frames.fits --method cam --cam-model my_model`` does the same.
model = load_model(model_dir)
new = labelled_frames(os.path.join(workdir, "new.fits"), 4, seed=13)
events = cam_filter(new, model=model)
prob = np.asarray(events["PROB_CR"], float)
with fits.open(new) as hdul:
    truth_new = hdul["TRUTH"].data
truth = truth_new[np.asarray(events["FRAME"]), np.asarray(events["RAWY"]),
                  np.asarray(events["RAWX"])]
scored = np.isfinite(prob)  # PROB_CR is NaN outside the scored 0.3-10 keV band
print(f"{len(events)} events, {scored.sum()} scored; rejected (STATUS bit 5): "
      f"{np.count_nonzero(np.asarray(events['STATUS']) & 32)}")

# %%
# The CR probability of the scored events, by truth.  The shipped model's
# results on realistic simulations are in :doc:`/cam`.
fig, ax = plt.subplots(figsize=(6, 4))
bins = np.linspace(0, 1, 21)
for cls, name, color in ((1, "X-ray", "tab:blue"), (2, "CR", "tab:red")):
    sel = scored & (truth == cls)
    ax.hist(prob[sel], bins, histtype="step", color=color, lw=1.5,
            label=f"{name} events ({int(sel.sum())})")
ax.axvline(meta["threshold"], color="k", ls="--", label="chosen threshold")
ax.set_xlabel("CR probability PROB_CR (dimensionless)")
ax.set_ylabel("events per bin")
ax.legend(fontsize=8)
fig.tight_layout()
