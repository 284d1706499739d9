"""Input scaling of frames for the frame-classifier network.

Seed paper Sec. 2: the network sees the "scaled logarithm of energy with zero
mean and unit variance".  The logarithm used here is ``log1p(max(E, 0) / 1 eV)``
so that noise pixels around zero stay finite; the mean and standard deviation
are measured once on the training tiles and stored with the model.
"""
from __future__ import annotations

import numpy as np

__all__ = ["log_energy", "LogEnergyScaler"]


def log_energy(energy_ev):
    """``log1p(max(E, 0))`` of pixel energies given in eV (float32 ndarray)."""
    e = np.asarray(energy_ev, dtype=np.float32)
    return np.log1p(np.maximum(e, np.float32(0.0)))


class LogEnergyScaler:
    """Zero-mean, unit-variance scaling of :func:`log_energy`.

    Parameters
    ----------
    mean, std : float
        Statistics of ``log_energy`` over the training tiles.
    """

    def __init__(self, mean, std):
        self.mean = float(mean)
        self.std = float(std)
        if not np.isfinite(self.mean) or not np.isfinite(self.std) or self.std <= 0:
            raise ValueError(f"invalid scaling statistics mean={mean}, std={std}")

    @classmethod
    def fit(cls, frames_ev):
        """Measure the statistics on ``frames_ev`` (any shape, eV)."""
        x = log_energy(frames_ev)
        return cls(float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64)))

    def transform(self, frames_ev):
        """Scaled log energy, float32, same shape as ``frames_ev``."""
        return (log_energy(frames_ev) - np.float32(self.mean)) / np.float32(self.std)

    def to_dict(self):
        return {"mean": self.mean, "std": self.std, "transform": "log1p(max(E,0)/1eV)"}

    @classmethod
    def from_dict(cls, d):
        return cls(d["mean"], d["std"])
