"""Photon energy spectra for the simulator.

A spectrum is any object with ``sample(rng, n) -> ndarray`` of photon
energies in eV and a ``describe() -> str`` used in FITS headers.  Three are
provided; a plain callable ``f(rng, n)`` is wrapped by :func:`as_spectrum`.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np

__all__ = ["LogUniformSpectrum", "PowerLawSpectrum", "LineSpectrum", "CallableSpectrum",
           "as_spectrum"]


def _ev(value, name):
    if not isinstance(value, u.Quantity):
        raise TypeError(f"{name} must be an astropy Quantity with energy units, "
                        f"got {value!r}")
    return float(value.to_value(u.eV, equivalencies=u.spectral()))


class LogUniformSpectrum:
    """Energies distributed uniformly in ``log E`` (seed paper Sec. 2).

    Parameters
    ----------
    e_min, e_max : `~astropy.units.Quantity` [energy]
        Range; default 0.2-10 keV as in the paper's training data.
    """

    def __init__(self, e_min=0.2 * u.keV, e_max=10 * u.keV):
        self.e_min = _ev(e_min, "e_min")
        self.e_max = _ev(e_max, "e_max")
        if not 0 < self.e_min < self.e_max:
            raise ValueError(f"need 0 < e_min < e_max, got {e_min}, {e_max}")

    def sample(self, rng, n):
        lo, hi = np.log(self.e_min), np.log(self.e_max)
        return np.exp(rng.uniform(lo, hi, n))

    def describe(self):
        return f"loguniform {self.e_min / 1e3:g}-{self.e_max / 1e3:g} keV"


class PowerLawSpectrum:
    """Power-law photon spectrum ``dN/dE ~ E**-index`` between two energies.

    ``index = 1`` is `LogUniformSpectrum`.  Sampled by inverting the
    cumulative distribution.

    Parameters
    ----------
    index : float
        Photon index Gamma (any real value).
    e_min, e_max : `~astropy.units.Quantity` [energy]
        Range; default 0.2-10 keV.
    """

    def __init__(self, index=1.0, e_min=0.2 * u.keV, e_max=10 * u.keV):
        self.index = float(index)
        if not np.isfinite(self.index):
            raise ValueError(f"index must be finite, got {index}")
        self.e_min = _ev(e_min, "e_min")
        self.e_max = _ev(e_max, "e_max")
        if not 0 < self.e_min < self.e_max:
            raise ValueError(f"need 0 < e_min < e_max, got {e_min}, {e_max}")

    def sample(self, rng, n):
        q = rng.random(n)
        a = 1.0 - self.index
        if abs(a) < 1e-9:
            return self.e_min * (self.e_max / self.e_min) ** q
        lo, hi = self.e_min ** a, self.e_max ** a
        return (lo + q * (hi - lo)) ** (1.0 / a)

    def describe(self):
        return (f"powerlaw index {self.index:.3g} "
                f"{self.e_min / 1e3:g}-{self.e_max / 1e3:.3g} keV")


class LineSpectrum:
    """A monochromatic line (natural width neglected), e.g. Mn K-alpha 5.9 keV.

    Parameters
    ----------
    energy : `~astropy.units.Quantity` [energy]
    """

    def __init__(self, energy=5.9 * u.keV):
        self.energy = _ev(energy, "energy")
        if self.energy <= 0:
            raise ValueError(f"line energy must be positive, got {energy}")

    def sample(self, rng, n):
        return np.full(n, self.energy)

    def describe(self):
        return f"line {self.energy / 1e3:g} keV"


class CallableSpectrum:
    """Wrap a user function ``f(rng, n) -> energies``.

    The function returns either a Quantity array with energy units or a
    plain array in eV.
    """

    def __init__(self, func, description="user callable"):
        if not callable(func):
            raise TypeError("func must be callable as func(rng, n)")
        self.func = func
        self.description = description

    def sample(self, rng, n):
        e = self.func(rng, n)
        if isinstance(e, u.Quantity):
            e = e.to_value(u.eV, equivalencies=u.spectral())
        e = np.asarray(e, dtype=float).reshape(-1)
        if e.shape != (n,):
            raise ValueError(f"spectrum callable returned shape {e.shape}, expected ({n},)")
        if not np.all(np.isfinite(e)) or np.any(e <= 0):
            raise ValueError("spectrum callable returned non-positive or non-finite energies")
        return e

    def describe(self):
        return self.description


def as_spectrum(spec):
    """Turn ``spec`` into a spectrum object.

    ``None`` -> :class:`LogUniformSpectrum` (0.2-10 keV); a scalar energy
    Quantity -> :class:`LineSpectrum`; a callable -> :class:`CallableSpectrum`;
    an object with ``sample`` is returned unchanged.
    """
    if spec is None:
        return LogUniformSpectrum()
    if isinstance(spec, u.Quantity):
        return LineSpectrum(spec)
    if hasattr(spec, "sample"):
        return spec
    if callable(spec):
        return CallableSpectrum(spec)
    raise TypeError(f"cannot interpret {spec!r} as a spectrum: give None, an energy "
                    "Quantity, a callable f(rng, n) or an object with sample(rng, n)")
