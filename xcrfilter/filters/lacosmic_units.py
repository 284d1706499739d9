"""Frames in the units astroscrappy works in, for the Laplacian filter.

``astroscrappy.detect_cosmics`` works in counts with a gain in
electron/count and a read noise and saturation level in electrons
(:mod:`xcrfilter.filters.laplacian` says how each kind of frame is
converted).  :func:`frames_with_unit` reads the frames and their unit,
:func:`counts_setup` gives the scale to counts, the gain, the read noise and
the pair energy, :func:`saturation_electrons` the saturation level; the
numbers astroscrappy takes are checked with :func:`positive_number` and
:func:`integer_at_least`, errors naming the argument.
"""
from __future__ import annotations

import os
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from ..io.bunit import adu_offset, parse_bunit
from ..io.frames import default_detector, is_nddata
from ..units import as_gain, header_gain

__all__ = ["header_of", "frames_with_unit", "counts_setup", "positive_number",
           "integer_at_least", "saturation_electrons"]


def header_of(meta):
    """A FITS header from an NDData ``meta`` (a header copied; unrepresentable keys skipped)."""
    header = fits.Header()
    if meta is None:
        return header
    if isinstance(meta, fits.Header):
        return meta.copy()
    for key, value in dict(meta).items():
        if key in ("HISTORY", "COMMENT") or len(str(key)) > 8:
            continue
        try:
            if isinstance(value, tuple):
                header[key] = value
            else:
                header[key] = value
        except (ValueError, TypeError):
            pass
    return header


def frames_with_unit(frames, unit):
    """Return (values ndarray, unit, mask or None, header, was_2d, is_cube)."""
    if hasattr(frames, "_fields") and "data" in frames._fields and "mask" in frames._fields:
        # xcrfilter.io.frames.FrameCube: data in eV, bad pixels already zeroed.
        data = np.asarray(frames.data)
        mask = None if frames.mask is None else np.asarray(frames.mask, bool)
        header = frames.header if frames.header is not None else fits.Header()
        return data, u.eV, mask, header, bool(getattr(frames, "was_2d", False)), True
    if isinstance(frames, (str, bytes)) or hasattr(frames, "__fspath__"):
        where = f"frames ({os.fspath(frames)})"
        try:
            hdul = fits.open(frames)
        except OSError as exc:
            raise OSError(f"{where}: cannot read it as a FITS file ({exc}).") from None
        with hdul:
            hdu = next((h for h in hdul if h.data is not None and h.is_image), None)
            if hdu is None:
                raise ValueError(f"frames: FITS file {frames!r} holds no image data.")
            header = hdu.header.copy()
            data = np.array(hdu.data, dtype=np.float64)
        if unit is None:
            # the BUNIT reading of every command (xcrfilter.io.frames)
            unit = parse_bunit(header.get("BUNIT"), where)
        unit = u.Unit(unit)
        if unit == u.adu:
            # E = (ADU - ADUOFFS) * gain, as xcrfilter filter
            data = data - adu_offset(header, None, where)
        return data, unit, None, header, data.ndim == 2, False
    if is_nddata(frames):
        if frames.unit is None and unit is None:
            raise ValueError("frames: the CCDData/NDData has no unit; pass unit=.")
        data = np.asarray(frames.data, dtype=np.float64)
        mask = None if frames.mask is None else np.asarray(frames.mask, bool)
        return data, u.Unit(unit or frames.unit), mask, header_of(frames.meta), \
            data.ndim == 2, False
    if isinstance(frames, u.Quantity):
        return np.asarray(frames.value, dtype=np.float64), frames.unit, None, fits.Header(), \
            frames.ndim == 2, False
    if isinstance(frames, np.ndarray):
        if unit is None:
            raise TypeError("frames: a plain ndarray has no unit; pass a Quantity, a CCDData, "
                            "a FrameCube, a FITS path, or unit= (eV, keV, electron or adu).")
        return np.asarray(frames, dtype=np.float64), u.Unit(unit), None, fits.Header(), \
            frames.ndim == 2, False
    raise TypeError("frames must be a CCDData/NDData, a Quantity array, a FrameCube, a FITS "
                    f"path, or an ndarray with unit=, got {type(frames).__name__}.")


def counts_setup(unit, header, gain, readnoise, detector):
    """Return (scale to counts, astroscrappy gain, readnoise [e], count unit, pair)."""
    det = default_detector(detector)
    pair = float(det.pair_energy.to_value(u.eV / u.electron))
    # --- read noise in electrons
    if readnoise is None:
        rn_header = header.get("RDNOISE", header.get("READNOIS"))
        if rn_header is not None and unit.physical_type != "energy":
            rn = float(rn_header)
        else:
            rn = float(det.readout_noise.to_value(u.electron))
    elif isinstance(readnoise, u.Quantity):
        if readnoise.unit.is_equivalent(u.eV):
            rn = float(readnoise.to_value(u.eV)) / pair
        else:
            rn = float(readnoise.to_value(u.electron))
    else:
        rn = float(readnoise)
    if not np.isfinite(rn) or rn < 0:
        raise ValueError(f"readnoise must be finite and >= 0 electron, got {readnoise!r}.")
    if unit.is_equivalent(u.eV):
        if gain is not None:
            as_gain(gain, pair_energy=det.pair_energy)  # validated, then not needed
            warnings.warn(f"frames are in {unit}: gain is ignored (it converts adu frames).",
                          AstropyUserWarning, stacklevel=3)
        return unit.to(u.eV) / pair, 1.0, rn, "electron", pair
    if unit == u.electron:
        if gain is not None:
            as_gain(gain, pair_energy=det.pair_energy)  # validated, then not needed
            warnings.warn("frames are in electron: gain is ignored (1 electron/electron).",
                          stacklevel=3)
        return 1.0, 1.0, rn, "electron", pair
    if unit == u.adu:
        # one meaning of GAIN (xcrfilter.units): energy per adu; astroscrappy wants
        # electron/adu, i.e. the gain divided by the pair energy
        if gain is not None:
            g_ev = as_gain(gain, pair_energy=det.pair_energy)
        else:
            g_ev = header_gain(header, pair_energy=det.pair_energy, where="frames")
            if g_ev is None and det.gain is not None:
                g_ev = as_gain(det.gain, "detector.gain", pair_energy=det.pair_energy)
            if g_ev is None:
                raise ValueError("frames are in adu but no gain was given: pass gain= (a "
                                 "Quantity in eV/adu or electron/adu) or set the GAIN "
                                 "header keyword.")
        return 1.0, float(g_ev.to_value(u.eV / u.adu)) / pair, rn, "adu", pair
    raise u.UnitConversionError(f"frames must be in an energy unit, electron or adu, got {unit}.")


def positive_number(name, value, allow_zero=False, sign_free=False):
    """Raise ValueError naming ``name`` unless ``value`` is a finite (positive) number."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if not np.isfinite(v) or (not sign_free and (v < 0 or (v == 0 and not allow_zero))):
        what = "finite" if sign_free else "finite and positive"
        raise ValueError(f"{name} must be {what}, got {value!r}.")
    return v


def integer_at_least(name, value, minimum):
    """Raise ValueError naming ``name`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or float(value) != int(value):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def saturation_electrons(satlevel, header, unit, scale, gain, pair):
    """astroscrappy's ``satlevel`` in electrons: given (eV, adu, electron), or ``SATURATE``."""
    if satlevel is None:
        sat = header.get("SATURATE", header.get("SATLEVEL"))
        if sat is None:
            return np.inf
        return float(sat) * scale * gain
    if isinstance(satlevel, u.Quantity):
        if satlevel.unit.is_equivalent(u.eV):
            return float(satlevel.to_value(u.eV)) / pair
        if satlevel.unit == u.adu:
            return float(satlevel.value) * gain
        return float(satlevel.to_value(u.electron))
    return float(satlevel)
