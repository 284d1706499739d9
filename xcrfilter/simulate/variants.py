"""Randomised training physics and named evaluation variants of the simulator.

A filter trained on one simulator setting learns that setting's quirks
(one secondary spread, one yield, one rate).  Frames from Geant4 or from
flight differ in exactly those numbers.  Two tools address it:

* `PhysicsRanges` draws, for every block of `BLOCK_FRAMES` frames, the
  parameters the truth is sensitive to from stated ranges, so that a model
  trained on the result has seen a family of physics, not one point;
* `PRESETS` are named evaluation variants (paper rates, wider secondaries,
  isotropic secondaries, twice the CR rate, bright source, orphan-rich,
  noisy readout), each a fixed setting used to test a model trained without
  it (leave-one-physics-out, `PhysicsRanges.excluding`).

Why these ranges
----------------
Every range brackets the calibrated default (the paper-rate simulation,
``docs/simulation.rst``) by a factor of about two to four either way, which
is the spread between published Geant4 background estimates of different
camera designs and the range of orbital conditions a filter must survive:

* secondary distances along the track axis (``sec_track_scale``
  30-150 px, ``photon_scale`` 8-60 px, ``electron_scale`` 5-45 px) and across
  it (``sec_perp_sigma`` 2-16 px): the geometry of the camera housing sets
  them and it differs between instruments;
* the isotropic part (``sec_iso_fraction`` 0-0.5 at ``sec_iso_scale``
  5-60 px): showers from material all around the sensor, not only along
  the primary's path;
* yields: secondary tracks 0.15-0.8 per shower, secondary photons
  0.005-0.05 per shower (the calibrated 0.0145 is near the lower third),
  low-energy electron blobs 0-0.002 per shower;
* the continuum share of the secondary photons 0.2-0.9 (the rest are the
  fluorescence lines of the camera materials): which lines a camera
  shows depends on its materials, so a filter must not learn the
  simulator's line energies;
* orphan showers (primary misses the sensor): fraction 0.1-0.6, 0-2 extra
  tracks each, distance scales x0.5-3;
* rates: CR showers 0.5-3 per frame (solar-minimum GCR flux to a
  high-background orbit), X-rays 0.5-20 per frame (faint to moderately
  bright source), both Poisson;
* readout noise 4-9 electrons rms (the event and split thresholds stay the
  user's; a noisier detector makes more noise-seeded islands);
* primaries' incidence ``cos(theta)**n`` with ``n`` 0.5-3 (shielding
  favours normal incidence);
* X-ray spectra: power laws ``E**-Gamma`` with Gamma 0-2.5 between
  0.2 keV and 10-12 keV (the log-uniform training spectrum of the seed paper
  is Gamma = 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import astropy.units as u
import numpy as np

from ..detector import DetectorModel
from .params import SimulationParameters
from .spectra import PowerLawSpectrum
from .core import FrameSimulator

__all__ = ["PhysicsRanges", "PRESETS", "preset", "preset_names", "RandomPhysicsSimulator"]


def _r(lo, hi, log, doc):
    return field(default=(float(lo), float(hi)), metadata={"log": log, "doc": doc})


@dataclass(frozen=True)
class PhysicsRanges:
    """Ranges of the randomised simulator physics (one draw per block).

    Each field is a ``(low, high)`` pair; a draw is uniform in the value, or
    in its logarithm for scales, yields and rates (``log`` in the field
    metadata).  A pair with ``low == high`` fixes the value.  The module
    docstring says why each range is what it is.

    Attributes
    ----------
    sec_track_scale, photon_scale, electron_scale : tuple of float [pixel]
        Distance scales of secondary tracks, photons and electron blobs
        along the projected primary axis (`SimulationParameters`).
    sec_perp_sigma : tuple of float [pixel]
        Spread across the axis.
    sec_iso_fraction : tuple of float
        Fraction of isotropically placed secondaries.
    sec_iso_scale : tuple of float [pixel]
        Radial scale of the isotropic secondaries.
    sec_track_mean, photon_mean, electron_mean : tuple of float [1/shower]
        Secondary yields.
    photon_continuum_fraction : tuple of float
        Continuum share of the secondary photons.
    cr_miss_fraction : tuple of float
        Fraction of orphan showers (primary misses the sensor).
    orphan_extra_mean : tuple of float [1/shower]
        Extra secondary tracks of an orphan shower.
    orphan_spread : tuple of float
        Distance-scale factor of orphan showers.
    cr_rate, xray_rate : tuple of float [1/frame]
        Mean CR showers and X-rays per frame.
    readout_noise : tuple of float [electron]
        Readout noise rms.
    incidence_power : tuple of float
        Exponent of the primaries' ``cos(theta)**n`` flux.
    xray_index : tuple of float
        Photon index Gamma of the X-ray power law.
    xray_emax : tuple of float [keV]
        Upper end of the X-ray spectrum (the lower end is 0.2 keV).
    """

    sec_track_scale: tuple = _r(30, 150, True, "secondary-track distance scale [pixel]")
    photon_scale: tuple = _r(8, 60, True, "secondary-photon distance scale [pixel]")
    electron_scale: tuple = _r(5, 45, True, "electron-blob distance scale [pixel]")
    sec_perp_sigma: tuple = _r(2, 16, True, "spread across the axis [pixel]")
    sec_iso_fraction: tuple = _r(0, 0.5, False, "isotropic fraction of secondaries")
    sec_iso_scale: tuple = _r(5, 60, True, "isotropic radial scale [pixel]")
    sec_track_mean: tuple = _r(0.15, 0.8, True, "secondary tracks per shower")
    photon_mean: tuple = _r(0.005, 0.05, True, "secondary photons per shower")
    electron_mean: tuple = _r(0, 0.002, False, "electron blobs per shower")
    photon_continuum_fraction: tuple = _r(0.2, 0.9, False, "continuum share of photons")
    cr_miss_fraction: tuple = _r(0.1, 0.6, False, "fraction of orphan showers")
    orphan_extra_mean: tuple = _r(0, 2, False, "extra tracks per orphan shower")
    orphan_spread: tuple = _r(0.5, 3, True, "distance-scale factor of orphans")
    cr_rate: tuple = _r(0.5, 3, True, "CR showers per frame")
    xray_rate: tuple = _r(0.5, 20, True, "X-rays per frame")
    readout_noise: tuple = _r(4, 9, False, "readout noise [electron]")
    incidence_power: tuple = _r(0.5, 3, False, "primary flux ~ cos(theta)**n")
    xray_index: tuple = _r(0, 2.5, False, "X-ray photon index")
    xray_emax: tuple = _r(10, 12, False, "X-ray spectrum upper end [keV]")

    def __post_init__(self):
        for f in fields(self):
            lo, hi = (float(v) for v in getattr(self, f.name))
            if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or lo < 0:
                raise ValueError(f"{f.name}: need 0 <= low <= high, got ({lo}, {hi})")
            if f.metadata["log"] and lo == 0 and hi > 0:
                raise ValueError(f"{f.name}: a log-uniform range needs low > 0")
            object.__setattr__(self, f.name, (lo, hi))

    def replace(self, **changes):
        """Copy with some ranges changed (validated again)."""
        return replace(self, **changes)

    def excluding(self, name):
        """Ranges that leave out the distinctive physics of preset ``name``.

        Used for leave-one-physics-out validation: a model trained on
        ``PhysicsRanges().excluding("wide")`` never saw secondaries spread as
        wide as the ``wide`` preset.  Presets whose parameters lie inside the
        default ranges (``paper``) return the ranges unchanged: they are
        held out by frames, not by physics.

        Raises
        ------
        KeyError
            If ``name`` is not in `PRESETS`.
        """
        return self.replace(**PRESETS[name]["exclude"])

    def draw(self, rng):
        """Draw one physics setting.

        Parameters
        ----------
        rng : `numpy.random.Generator`

        Returns
        -------
        params : `SimulationParameters`
        readout_noise : `~astropy.units.Quantity` [electron]
        spectrum : `~xcrfilter.simulate.PowerLawSpectrum`
        """
        v = {}
        for f in fields(self):
            lo, hi = getattr(self, f.name)
            if lo == hi:
                v[f.name] = lo
            elif f.metadata["log"]:
                v[f.name] = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            else:
                v[f.name] = float(rng.uniform(lo, hi))
        noise = v.pop("readout_noise") * u.electron
        spectrum = PowerLawSpectrum(v.pop("xray_index"), 0.2 * u.keV, v.pop("xray_emax") * u.keV)
        return SimulationParameters(**v), noise, spectrum

    def to_header_cards(self):
        """``(keyword, value, comment)`` cards recording every range."""
        cards = [("RANDPHYS", True, "physics drawn per block from the ranges below")]
        for i, f in enumerate(fields(self), start=1):
            lo, hi = getattr(self, f.name)
            cards.append((f"RNDPAR{i:02d}", f"{f.name}:{lo:g}:{hi:g}",
                          ("log " if f.metadata["log"] else "") + "range"))
        return cards


class RandomPhysicsSimulator:
    """Draw a new `FrameSimulator` for every block of frames.

    Passed as ``physics`` to `xcrfilter.simulate.iter_frames`; the draw of
    block ``b`` depends only on ``(seed, b)``, so runs are reproducible and
    independent of the chunk size.

    Parameters
    ----------
    ranges : `PhysicsRanges`, optional
        Default: the documented ranges.
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Everything but the readout noise (drawn) comes from it.  Default WFI.
    """

    def __init__(self, ranges=None, detector=None):
        self.ranges = PhysicsRanges() if ranges is None else ranges
        if not isinstance(self.ranges, PhysicsRanges):
            raise TypeError("ranges must be a PhysicsRanges")
        self.detector = DetectorModel.wfi() if detector is None else detector

    def block_simulator(self, seed, block, shape):
        """The `FrameSimulator` of block ``block`` of a run with ``seed``."""
        ss = np.random.SeedSequence(seed, spawn_key=(int(block), 1))
        rng = np.random.Generator(np.random.PCG64(ss))
        params, noise, spectrum = self.ranges.draw(rng)
        det = replace(self.detector, readout_noise=noise)
        return FrameSimulator(det, params, spectrum, shape)


#: Named evaluation variants.  ``params`` are `SimulationParameters`
#: overrides, ``noise`` the readout noise [electron] (None: the WFI 7 e-),
#: ``exclude`` the `PhysicsRanges` a leave-one-physics-out model is trained
#: on when this variant is held out.
PRESETS = {
    "paper": dict(
        doc="the seed paper's rates: 1 X-ray and 1 CR shower per frame, calibrated physics",
        params={}, noise=None, exclude={}),
    "wide": dict(
        doc="secondaries spread twice as wide along and across the track axis",
        params=dict(sec_track_scale=120.0, sec_perp_sigma=10.0, photon_scale=45.0,
                    electron_scale=35.0),
        noise=None,
        exclude=dict(sec_track_scale=(30, 80), sec_perp_sigma=(2, 6), photon_scale=(8, 30),
                     electron_scale=(5, 22))),
    "isotropic": dict(
        doc="half of the secondaries placed isotropically (40 px scale) around the shower",
        params=dict(sec_iso_fraction=0.5, sec_iso_scale=40.0), noise=None,
        exclude=dict(sec_iso_fraction=(0, 0.15))),
    "high-cr": dict(
        doc="twice the CR rate (2 showers per frame)",
        params=dict(cr_rate=2.0), noise=None, exclude=dict(cr_rate=(0.5, 1.4))),
    "bright": dict(
        doc="a bright source: 10 X-rays per frame",
        params=dict(xray_rate=10.0), noise=None, exclude=dict(xray_rate=(0.5, 5))),
    "orphan": dict(
        doc="60 % orphan showers (primary misses the sensor) with 2 extra tracks, spread x2",
        params=dict(cr_miss_fraction=0.6, orphan_extra_mean=2.0, orphan_spread=2.0),
        noise=None,
        exclude=dict(cr_miss_fraction=(0.1, 0.35), orphan_extra_mean=(0, 0.8),
                     orphan_spread=(0.5, 1.4))),
    "noisy": dict(
        doc="9 e- rms readout noise",
        params={}, noise=9.0, exclude=dict(readout_noise=(4, 7.5))),
}


def preset_names():
    """Names of the evaluation variants, in `PRESETS` order."""
    return list(PRESETS)


def preset(name, base=None):
    """Parameters and detector of the evaluation variant ``name``.

    Parameters
    ----------
    name : str
        A key of `PRESETS`.
    base : `SimulationParameters`, optional
        Parameters the overrides apply to (default: the calibrated set).

    Returns
    -------
    params : `SimulationParameters`
    detector : `~xcrfilter.detector.DetectorModel`

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    spec = PRESETS[name]
    params = (base or SimulationParameters()).replace(**spec["params"])
    det = DetectorModel.wfi() if spec["noise"] is None else \
        DetectorModel.wfi(readout_noise=spec["noise"] * u.electron)
    return params, det
