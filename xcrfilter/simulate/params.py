"""Simulation parameters: one dataclass, every number named and documented.

Every field carries metadata (FITS keyword, unit, comment) so that
:meth:`SimulationParameters.to_header_cards` writes all of them to the
header of a simulated observation, and
:meth:`SimulationParameters.from_header` reads them back.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

__all__ = ["SimulationParameters", "DEFAULT_FLUORESCENCE_LINES"]

#: Fluorescence lines of typical camera / shield materials: (name, energy eV,
#: relative weight).  Energies: X-ray Data Booklet (Thompson et al. 2009),
#: K-alpha1 / L-alpha1 / M-alpha1.  Weights are relative photon yields of the
#: line component of the secondary-photon spectrum (the continuum is separate).
DEFAULT_FLUORESCENCE_LINES = (
    ("Al K", 1486.7, 0.25),
    ("Si K", 1739.8, 0.20),
    ("Au M", 2122.9, 0.10),
    ("Ni K", 7478.2, 0.15),
    ("Cu K", 8047.8, 0.20),
    ("Au L", 9713.3, 0.10),
)


def _f(default, key, unit, doc):
    return field(default=default, metadata={"key": key, "unit": unit, "doc": doc})


@dataclass(frozen=True)
class SimulationParameters:
    """Parameters of the physics frame simulator.

    The detector itself (pixel size, thickness, readout noise, Fano factor,
    pair energy) comes from `xcrfilter.detector.DetectorModel`; this class
    holds everything else.  Units are fixed per field (documented below and
    in the FITS keyword comments).  Defaults reproduce the paper's
    configuration (seed paper Sec. 2: 1 X-ray and 1 CR per 512 x 512 frame,
    0.2-10 keV log-uniform X-rays); the secondary-particle parameters marked
    *fitted* were adjusted so that the traditional filter reproduces the
    paper's Table 2 (see ``docs/simulation.rst`` and
    ``benchmarks/calibrate_simulator.py``).

    Parameters
    ----------
    xray_rate : float
        Mean number of X-ray photons per frame (Poisson).
    cr_rate : float
        Mean number of cosmic-ray showers per frame (Poisson).  A shower is a
        primary and its secondaries; a fraction ``cr_miss_fraction`` of them
        has only secondaries in the sensor.
    no_pileup : bool
        Re-draw X-ray positions whose footprint touches a CR pixel or another
        X-ray (seed paper Sec. 2).
    max_redraw : int
        Maximum number of re-draw rounds for ``no_pileup``.
    exact_noise : bool
        Draw the readout noise with ``Generator.standard_normal`` instead of
        the faster quantile table of `xcrfilter.simulate.physics.gaussian_noise`.
    bias_voltage : float
        Depletion voltage across the sensor [V], sets the drift field.
    temperature : float
        Sensor temperature [K], sets the diffusion constant.
    cloud_sigma0 : float
        Initial charge-cloud rms added in quadrature [um].
    alpha_fraction : float
        Fraction of primaries that are alpha particles (rest protons).
    modulation_potential : float
        Force-field solar modulation potential [MV]; 400 MV ~ CREME96 solar
        minimum.
    primary_min_energy, primary_max_energy : float
        Primary kinetic-energy range per nucleon [MeV].
    step_length : float
        Track step length [um] for energy loss and diffusion.
    delta_min_energy : float
        Energy above which delta rays are simulated explicitly [keV]; the
        softer collisions are the per-step Moyal loss.
    soft_loss_scale : float
        Multiplier of the restricted Bethe mean loss of the soft part; 1.0
        gives a most probable loss of about 0.27 keV/um and a mean of
        0.39 keV/um for a normally incident minimum-ionising proton.
    cr_miss_fraction : float
        Fraction of showers whose primary misses the sensor (secondaries
        only).  *fitted*
    sec_track_mean : float
        Mean number of secondary charged-particle tracks (electrons) per
        shower (Poisson; a miss shower always has at least one).  *fitted*
    sec_track_scale : float
        Exponential scale of the distance of secondaries from the primary's
        entry point along the projected primary axis [pixel].  *fitted*
    sec_perp_sigma : float
        Gaussian rms of secondaries perpendicular to the axis [pixel].
    sec_electron_min, sec_electron_max : float
        Kinetic-energy range of secondary-track electrons [MeV], log-uniform.
    photon_mean : float
        Mean number of secondary photons (fluorescence + continuum) per
        shower.  *fitted*
    photon_scale : float
        Exponential distance scale of secondary photons along the axis [pixel].
    photon_continuum_fraction : float
        Fraction of secondary photons drawn from the continuum.
    photon_continuum_min, photon_continuum_max : float
        Continuum range [keV], log-uniform.
    photon_front_fraction : float
        Fraction of secondary photons entering from the readout (front) side.
    electron_mean : float
        Mean number of low-energy secondary-electron blobs per shower.
        *fitted*
    electron_scale : float
        Exponential distance scale of electron blobs along the axis [pixel].
    electron_min_energy, electron_max_energy : float
        Deposited-energy range of electron blobs [keV], log-uniform.
    electron_blob_sigma : float
        Rms lateral spread of the sub-deposits of an electron blob [um].
    electron_blob_parts : int
        Number of sub-deposits of an electron blob.
    sec_iso_fraction : float
        Fraction of the secondaries (tracks, photons, electron blobs) placed
        isotropically around the shower centre instead of along the
        projected primary axis.  0 (default) keeps the calibrated set.
    sec_iso_scale : float
        Exponential scale of the radial distance of the isotropic
        secondaries from the shower centre [pixel].
    orphan_extra_mean : float
        Mean number of extra secondary tracks of a shower whose primary
        misses the sensor (Poisson, added to its guaranteed one); raises the
        multiplicity of orphan showers.
    orphan_spread : float
        Multiplier of every distance scale (along, across, isotropic) for
        the secondaries of orphan showers.
    incidence_power : float
        Exponent ``n`` of the angular distribution of the primaries' flux
        through the sensor plane, ``dN/dOmega ~ cos(theta)**n``; 1 (default)
        is an isotropic intensity seen through a plane, larger values favour
        normal incidence (shorter projected tracks).
    label_threshold : float
        Minimum noise-free deposit for a pixel to carry a truth label [eV].
    split_threshold : float
        Deposit above which a labelled pixel makes a 64 x 64 tile non-empty
        for its class [eV] (the paper's split threshold, 80 eV).
    tile : int
        Tile size for the per-tile truth classes [pixel].
    fluorescence_lines : tuple
        ``(name, energy eV, weight)`` of the secondary fluorescence lines.
    """

    xray_rate: float = _f(1.0, "XRAYRATE", "1/frame", "mean X-rays per frame")
    cr_rate: float = _f(1.0, "CRRATE", "1/frame", "mean CR showers per frame")
    no_pileup: bool = _f(True, "NOPILEUP", "", "X-rays re-drawn off CR pixels")
    max_redraw: int = _f(50, "MAXREDRW", "", "max re-draw rounds (no pile-up)")
    exact_noise: bool = _f(False, "EXACTNOI", "", "noise by standard_normal (else table)")
    bias_voltage: float = _f(120.0, "BIASVOLT", "V", "depletion voltage (drift field)")
    temperature: float = _f(213.0, "SENSTEMP", "K", "sensor temperature (diffusion)")
    cloud_sigma0: float = _f(0.0, "CLDSIG0", "um", "initial charge cloud rms")
    alpha_fraction: float = _f(0.08, "ALPHAFRC", "", "fraction of alpha primaries")
    modulation_potential: float = _f(400.0, "PHIMOD", "MV", "GCR force-field modulation")
    primary_min_energy: float = _f(10.0, "PRIMEMIN", "MeV/n", "min primary kinetic energy")
    primary_max_energy: float = _f(1.0e5, "PRIMEMAX", "MeV/n", "max primary kinetic energy")
    step_length: float = _f(2.0, "STEPLEN", "um", "track step length")
    delta_min_energy: float = _f(10.0, "DELTAMIN", "keV", "explicit delta-ray threshold")
    soft_loss_scale: float = _f(1.04, "SOFTSCAL", "", "scale of restricted Bethe loss")
    cr_miss_fraction: float = _f(0.3, "CRMISS", "", "showers w/o primary in sensor")
    sec_track_mean: float = _f(0.35, "SECTRK", "1/shower", "mean secondary e- tracks")
    sec_track_scale: float = _f(60.0, "SECSCALE", "pixel", "secondary distance scale")
    sec_perp_sigma: float = _f(4.0, "SECPERP", "pixel", "secondary perp. rms")
    sec_electron_min: float = _f(0.2, "SECEMIN", "MeV", "secondary e- min energy")
    sec_electron_max: float = _f(20.0, "SECEMAX", "MeV", "secondary e- max energy")
    photon_mean: float = _f(0.0145, "PHOTMEAN", "1/shower", "mean secondary photons")
    photon_scale: float = _f(20.0, "PHOTSCAL", "pixel", "photon distance scale")
    photon_continuum_fraction: float = _f(0.4, "PHOTCONT", "", "continuum photon fraction")
    photon_continuum_min: float = _f(0.2, "PHCNTMIN", "keV", "continuum min energy")
    photon_continuum_max: float = _f(15.0, "PHCNTMAX", "keV", "continuum max energy")
    photon_front_fraction: float = _f(0.5, "PHOTFRNT", "", "photons entering front side")
    electron_mean: float = _f(0.0002, "ELECMEAN", "1/shower", "mean low-E electron blobs")
    electron_scale: float = _f(15.0, "ELECSCAL", "pixel", "electron-blob distance scale")
    electron_min_energy: float = _f(0.3, "ELECEMIN", "keV", "electron blob min deposit")
    electron_max_energy: float = _f(30.0, "ELECEMAX", "keV", "electron blob max deposit")
    electron_blob_sigma: float = _f(60.0, "ELECBSIG", "um", "electron blob lateral rms")
    electron_blob_parts: int = _f(3, "ELECBPRT", "", "sub-deposits per e- blob")
    sec_iso_fraction: float = _f(0.0, "SECISOF", "", "secondaries placed isotropically")
    sec_iso_scale: float = _f(20.0, "SECISOSC", "pixel", "isotropic secondary scale")
    orphan_extra_mean: float = _f(0.0, "ORPHXTRA", "1/shower", "extra tracks of orphan shower")
    orphan_spread: float = _f(1.0, "ORPHSPRD", "", "distance-scale factor, orphans")
    incidence_power: float = _f(1.0, "INCPOWER", "", "primary flux ~ cos(theta)**n")
    label_threshold: float = _f(1.0, "LABTHRES", "eV", "min deposit for a truth label")
    split_threshold: float = _f(80.0, "TILETHR", "eV", "tile class deposit threshold")
    tile: int = _f(64, "TILESIZE", "pixel", "tile size of truth classes")
    fluorescence_lines: tuple = field(default=DEFAULT_FLUORESCENCE_LINES,
                                      metadata={"key": None})

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "fluorescence_lines":
                lines = tuple((str(n), float(e), float(w)) for n, e, w in v)
                if not lines or any(e <= 0 or w < 0 for _, e, w in lines) or \
                        sum(w for *_, w in lines) <= 0:
                    raise ValueError("fluorescence_lines need positive energies and weights")
                object.__setattr__(self, f.name, lines)
                continue
            if isinstance(v, bool):
                continue
            if not np.isfinite(v):
                raise ValueError(f"{f.name} must be finite, got {v!r}")
            if v < 0:
                raise ValueError(f"{f.name} must be >= 0, got {v!r}")
        for name in ("cr_miss_fraction", "alpha_fraction", "photon_continuum_fraction",
                     "photon_front_fraction", "sec_iso_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("bias_voltage", "temperature", "step_length", "delta_min_energy",
                     "sec_electron_min", "photon_continuum_min", "electron_min_energy",
                     "primary_min_energy"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for lo, hi in (("sec_electron_min", "sec_electron_max"),
                       ("photon_continuum_min", "photon_continuum_max"),
                       ("electron_min_energy", "electron_max_energy"),
                       ("primary_min_energy", "primary_max_energy")):
            if getattr(self, lo) >= getattr(self, hi):
                raise ValueError(f"{lo} must be < {hi}")
        if int(self.tile) < 5 or int(self.electron_blob_parts) < 1:
            raise ValueError("tile must be >= 5 and electron_blob_parts >= 1")

    def replace(self, **changes):
        """Copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_header_cards(self):
        """List of ``(keyword, value, comment)`` FITS cards for every field."""
        cards = []
        for f in fields(self):
            key = f.metadata.get("key")
            if key is None:
                continue
            v = getattr(self, f.name)
            unit = f.metadata["unit"]
            comment = (f"[{unit}] " if unit else "") + f.metadata["doc"]
            if isinstance(v, bool):
                val = bool(v)
            elif isinstance(v, (int, np.integer)) and f.type in ("int", int):
                val = int(v)
            else:
                val = float(v)
            cards.append((key, val, comment[:47]))
        for i, (name, e, w) in enumerate(self.fluorescence_lines, start=1):
            cards.append((f"FLLINE{i:d}", f"{name}:{e:.1f}:{w:g}",
                          "fluorescence line name:eV:weight"))
        return cards

    @classmethod
    def from_header(cls, header):
        """Rebuild parameters from a header written by :meth:`to_header_cards`.

        Keywords that are absent keep their defaults.
        """
        kw = {}
        for f in fields(cls):
            key = f.metadata.get("key")
            if key and key in header:
                v = header[key]
                kw[f.name] = type(f.default)(v) if f.default is not None else v
        lines = []
        i = 1
        while f"FLLINE{i}" in header:
            name, e, w = str(header[f"FLLINE{i}"]).rsplit(":", 2)
            lines.append((name, float(e), float(w)))
            i += 1
        if lines:
            kw["fluorescence_lines"] = tuple(lines)
        return cls(**kw)
