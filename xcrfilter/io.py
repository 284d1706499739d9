"""FITS input and output: energy frame cubes, event files, CAM maps, masks.

Frames in
    :func:`as_energy_cube` turns any accepted frame source (a `~astropy.units.Quantity`
    array, a `~astropy.nddata.CCDData` / `~astropy.nddata.NDData`, a FITS file
    path or a list of FITS paths) into a float32 cube of pixel energies in eV
    with a boolean bad-pixel mask (DESIGN.md Sec. 2 "Frames in").
    :func:`read_frames` returns the same as a `~astropy.nddata.CCDData`.

Events out
    :func:`write_events` / :func:`read_events` write and read OGIP-style event
    files (an ``EVENTS`` binary table extension, OGIP/93-003 conventions:
    ``TUNITn``, ``TLMINn``/``TLMAXn``, ``HDUCLASS`` keywords) whose header keeps
    every threshold and choice of the filters as keyword/comment pairs plus
    HISTORY lines.

Other products
    :func:`write_cam_maps` writes one float32 image HDU per class activation
    map; :func:`write_mask` writes a `~astropy.nddata.CCDData` with its mask
    in a ``MASK`` extension (readable by ccdproc and ds9).

Input files are always opened read-only and never modified.
"""
from __future__ import annotations

import datetime
import os
from collections import namedtuple

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, NDData
from astropy.table import QTable, Table

__all__ = ["FrameCube", "as_energy_cube", "read_frames", "write_events",
           "read_events", "write_cam_maps", "write_mask",
           "FRAME_COLS_KEY", "FRAME_ROWS_KEY"]

#: ``events.meta`` keyword holding the number of columns of one frame.
FRAME_COLS_KEY = "FRMCOLS"
#: ``events.meta`` keyword holding the number of rows of one frame.
FRAME_ROWS_KEY = "FRMROWS"

#: Smallest frame accepted: the 5 x 5 event window must fit.
MIN_FRAME_SIZE = 5

FrameCube = namedtuple("FrameCube", ["data", "mask", "header", "filenames", "was_2d"])
FrameCube.__doc__ = """Energy frame cube returned by :func:`as_energy_cube`.

Attributes
----------
data : `numpy.ndarray`, float32, shape (n_frames, n_rows, n_columns)
    Pixel energies in eV.  Masked and non-finite pixels are 0.0.
mask : `numpy.ndarray`, bool, same shape as ``data``
    True marks a bad pixel (input mask, ``MASK``/``DQ`` extension, NaN or inf).
header : `astropy.io.fits.Header`
    Header of the input (structural keywords such as ``NAXISn`` removed).
filenames : list of str
    Input file names (empty for in-memory input).
was_2d : bool
    True when the input was a single 2-D frame.
"""

_ACCEPTED_UNITS = "an energy (eV, keV), electron or adu"
_ACCEPTED_FORMS = ("an astropy Quantity array, a CCDData or NDData, a FITS file path, "
                   "or a list of FITS file paths")

# Keywords describing the HDU structure rather than the observation.
_STRUCTURAL = {"SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
               "EXTNAME", "EXTVER", "BSCALE", "BZERO", "BLANK", "CHECKSUM", "DATASUM",
               "ZIMAGE", "ZBITPIX", "ZCMPTYPE", "TFIELDS"}

_UNIT_ALIASES = {
    "ev": u.eV, "kev": u.keV, "electron": u.electron, "electrons": u.electron,
    "e-": u.electron, "e": u.electron, "adu": u.adu, "adus": u.adu, "dn": u.adu,
}


# --------------------------------------------------------------------------
# Frames in
# --------------------------------------------------------------------------

def _clean_header(header):
    """Copy of ``header`` without structural keywords."""
    out = fits.Header()
    if header is None:
        return out
    for card in header.cards:
        key = card.keyword
        if key in _STRUCTURAL or key.startswith("NAXIS") or key.startswith("ZNAXIS") \
                or key.startswith("ZTILE") or key.startswith("ZNAME") or key.startswith("ZVAL"):
            continue
        out.append(card, end=True)
    return out


def _meta_to_header(meta):
    """Build a FITS header from an NDData ``meta`` mapping (unrepresentable items skipped)."""
    if isinstance(meta, fits.Header):
        return _clean_header(meta)
    header = fits.Header()
    if not meta:
        return header
    for key, value in dict(meta).items():
        try:
            if isinstance(value, tuple) and len(value) == 2:
                header[str(key)] = value
            elif isinstance(value, (list, tuple)) and str(key).upper() in ("HISTORY", "COMMENT"):
                for line in value:
                    header.add_history(str(line)) if str(key).upper() == "HISTORY" \
                        else header.add_comment(str(line))
            else:
                header[str(key)] = value
        except (ValueError, TypeError, KeyError):
            continue
    return header


def _parse_bunit(bunit, where):
    if bunit is None or str(bunit).strip() == "":
        raise ValueError(
            f"{where} has no BUNIT keyword; add BUNIT = 'eV', 'keV', 'electron' or 'adu' "
            f"to the header of the image HDU.")
    text = str(bunit).strip()
    unit = _UNIT_ALIASES.get(text.lower())
    if unit is None:
        unit = u.Unit(text, format="fits", parse_strict="silent")
        if isinstance(unit, u.UnrecognizedUnit):
            unit = u.Unit(text, parse_strict="silent")
    if isinstance(unit, u.UnrecognizedUnit) or not _unit_kind(unit):
        raise ValueError(
            f"{where}: unknown BUNIT {text!r}; expected {_ACCEPTED_UNITS} "
            f"(e.g. 'eV', 'keV', 'electron', 'adu').")
    return unit


def _unit_kind(unit):
    """'energy', 'electron', 'adu' or None."""
    if unit is None:
        return None
    try:
        if unit.is_equivalent(u.eV):
            return "energy"
        if unit.is_equivalent(u.electron):
            return "electron"
        if unit.is_equivalent(u.adu):
            return "adu"
    except Exception:  # pragma: no cover - exotic unit objects
        return None
    return None


def _check_gain(gain, name):
    """Validate a gain Quantity (eV/adu; a bare energy is read as per adu)."""
    if not isinstance(gain, u.Quantity):
        raise TypeError(
            f"{name} must be an astropy Quantity in eV/adu (e.g. 3.65 * u.eV / u.adu), "
            f"got {type(gain).__name__} {gain!r}.")
    if gain.unit.is_equivalent(u.eV):
        gain = gain / u.adu
    try:
        gain = gain.to(u.eV / u.adu)
    except u.UnitConversionError:
        raise u.UnitConversionError(
            f"{name} must be in eV/adu (energy per ADU), got unit {gain.unit}.") from None
    if gain.size != 1:
        raise ValueError(f"{name} must be a scalar Quantity in eV/adu, got shape {gain.shape}.")
    value = float(np.ravel(gain.value)[0])
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive Quantity in eV/adu, got {gain}.")
    return value * (u.eV / u.adu)


def _energy_factor(unit, *, gain, detector, header_gain, where):
    """Multiplicative factor taking values in ``unit`` to eV."""
    kind = _unit_kind(unit)
    if kind == "energy":
        return float((1 * unit).to_value(u.eV))
    if kind == "electron":
        pair = detector.pair_energy.to_value(u.eV / u.electron)
        return float((1 * unit).to_value(u.electron)) * pair
    if kind == "adu":
        if gain is not None:
            g = _check_gain(gain, "gain")
        elif detector is not None and detector.gain is not None:
            g = _check_gain(detector.gain, "detector.gain")
        elif header_gain is not None:
            if isinstance(header_gain, bool) or not isinstance(header_gain, (int, float, np.number)):
                raise ValueError(f"{where}: GAIN keyword must be a number in eV/adu, "
                                 f"got {header_gain!r}.")
            g = _check_gain(float(header_gain) * u.eV / u.adu, f"GAIN keyword of {where}")
        else:
            raise ValueError(
                f"{where} is in adu but no gain is known: pass gain=<Quantity in eV/adu> "
                f"(e.g. gain=3.65 * u.eV / u.adu), set DetectorModel.gain, or add a GAIN "
                f"keyword in eV/adu to the header.")
        return float((1 * unit).to_value(u.adu)) * g.to_value(u.eV / u.adu)
    raise u.UnitConversionError(
        f"{where} has unit {unit!s}; expected {_ACCEPTED_UNITS}.")


def _check_shape(shape, name):
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{name} must be a 2-D frame (rows, columns) or a 3-D cube "
            f"(frames, rows, columns); got {len(shape)}-D data of shape {tuple(shape)}.")
    if len(shape) == 3 and shape[0] == 0:
        raise ValueError(f"{name} is empty: the cube has 0 frames (shape {tuple(shape)}).")
    if shape[-1] < MIN_FRAME_SIZE or shape[-2] < MIN_FRAME_SIZE:
        raise ValueError(
            f"{name} frames are {shape[-2]} x {shape[-1]} pixels; frames must be at least "
            f"{MIN_FRAME_SIZE} x {MIN_FRAME_SIZE} pixels (the 5 x 5 event window).")


def _to_cube(values, mask, factor, name):
    """float32 eV cube and bool mask from raw values; both new arrays."""
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}.")
    _check_shape(values.shape, name)
    data = np.array(values, dtype=np.float32, copy=True)
    if factor != 1.0:
        data *= np.float32(factor)
    bad = ~np.isfinite(data)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != data.shape:
            try:
                mask = np.broadcast_to(mask, data.shape)
            except ValueError:
                raise ValueError(
                    f"{name} mask has shape {mask.shape}, which does not match the data "
                    f"shape {data.shape}.") from None
        bad |= mask.astype(bool)
    data[bad] = 0.0
    if data.ndim == 2:
        return data[np.newaxis], bad[np.newaxis], True
    return data, bad, False


def _default_detector(detector):
    if detector is None:
        from .detector import DetectorModel
        return DetectorModel.wfi()
    from .detector import DetectorModel
    if not isinstance(detector, DetectorModel):
        raise TypeError(f"detector must be a DetectorModel or None, got "
                        f"{type(detector).__name__}.")
    return detector


def _is_path(obj):
    return isinstance(obj, (str, os.PathLike))


def _image_hdu(hdul, where, name):
    """Index of the first HDU with 2-D or 3-D image data."""
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) \
                and hdu.header.get("NAXIS", 0) in (2, 3) and hdu.data is not None \
                and hdu.name not in ("MASK", "DQ", "UNCERT", "ERR"):
            return i
    shapes = [f"{h.name}:{getattr(h.data, 'shape', None)}" for h in hdul]
    raise ValueError(
        f"{name}: FITS file {where} has no image data; expected an image HDU holding a "
        f"2-D frame or a 3-D cube (frames, rows, columns). HDUs found: {', '.join(shapes)}.")


def _read_fits(path, *, gain, detector, name):
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"{name}: FITS file {where!r} does not exist.")
    try:
        hdul = fits.open(where, mode="readonly", memmap=False, lazy_load_hdus=False)
    except OSError as exc:
        raise OSError(f"{name}: cannot read {where!r} as a FITS file ({exc}).") from None
    with hdul:
        idx = _image_hdu(hdul, where, name)
        hdu = hdul[idx]
        header = hdu.header
        primary = hdul[0].header
        bunit = header.get("BUNIT", primary.get("BUNIT"))
        unit = _parse_bunit(bunit, f"{name} ({where})")
        factor = _energy_factor(unit, gain=gain, detector=detector,
                                header_gain=header.get("GAIN", primary.get("GAIN")),
                                where=f"{name} ({where})")
        mask = None
        for ext in ("MASK", "DQ"):
            if ext in hdul and hdul[ext].data is not None:
                mask = np.array(hdul[ext].data != 0, dtype=bool)
                break
        data, bad, was_2d = _to_cube(hdu.data, mask, factor, f"{name} ({where})")
        out_header = _clean_header(primary) if idx != 0 else fits.Header()
        for card in _clean_header(header).cards:
            out_header.append(card, end=True)
    return data, bad, out_header, was_2d


def as_energy_cube(frames, *, gain=None, detector=None, name="frames"):
    """Convert any accepted frame source to a float32 energy cube with a mask.

    Parameters
    ----------
    frames : `~astropy.units.Quantity`, `~astropy.nddata.CCDData`, `~astropy.nddata.NDData`, str, path-like or list of paths
        One frame of shape (rows, columns) or a cube (frames, rows, columns).
        Quantities and NDData must carry a unit convertible to eV, electron or
        adu.  FITS files: the first HDU with 2-D or 3-D image data; its unit
        comes from ``BUNIT`` (``eV``, ``keV``, ``electron`` or ``adu``); a
        ``MASK`` or ``DQ`` extension (nonzero = bad) is honoured.  A list of
        paths is concatenated along the frame axis (frame shapes must match).
    gain : `~astropy.units.Quantity` [eV / adu], optional
        Gain for data in adu.  Takes precedence over ``detector.gain`` and the
        ``GAIN`` header keyword (read in eV/adu).  A bare energy (eV) is read
        as eV per adu.
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Supplies the pair energy for data in electron (and an optional gain).
        Default `~xcrfilter.detector.DetectorModel.wfi` (3.65 eV per pair).
    name : str, optional
        Name of the argument, used in error messages.  Default ``"frames"``.

    Returns
    -------
    FrameCube
        ``data`` float32 (n_frames, rows, columns) in eV, ``mask`` bool of the
        same shape (True = bad; input mask, NaN and inf), ``header``,
        ``filenames``, ``was_2d``.  Masked and non-finite pixels are 0 in
        ``data``.  The input is never modified (arrays are copied, files are
        opened read-only).

    Raises
    ------
    TypeError
        If ``frames`` is a bare ndarray or number (no unit), a `NDData` without
        unit, or another unsupported type; if ``gain`` is not a Quantity.
    astropy.units.UnitConversionError
        If the unit is not an energy, electron or adu; if ``gain`` is not in
        eV/adu.
    ValueError
        Wrong dimensionality, frames smaller than 5 x 5, zero frames, FITS
        without image data, missing or unknown ``BUNIT``, adu data without a
        gain, a non-positive gain, a mask whose shape does not match, a list of
        files whose frame shapes differ, an empty list.
    FileNotFoundError, OSError
        If a path does not exist or is not a FITS file.

    Notes
    -----
    Electron to energy: ``E = N * pair_energy`` (seed paper Sec. 2, 3.65 eV
    per electron-hole pair).  ADU to energy: ``E = ADU * gain``.
    """
    if isinstance(frames, FrameCube):
        return FrameCube(frames.data.copy(), frames.mask.copy(), frames.header.copy(),
                         list(frames.filenames), frames.was_2d)
    if isinstance(frames, (list, tuple)):
        return _cube_from_paths(list(frames), gain=gain, detector=detector, name=name)
    if _is_path(frames):
        det = _default_detector(detector)
        data, mask, header, was_2d = _read_fits(frames, gain=gain, detector=det, name=name)
        return FrameCube(data, mask, header, [os.fspath(frames)], was_2d)
    if isinstance(frames, NDData):
        det = _default_detector(detector)
        unit = frames.unit
        if unit is None:
            raise TypeError(
                f"{name} ({type(frames).__name__}) has no unit; set unit to "
                f"{_ACCEPTED_UNITS}.")
        header = _meta_to_header(frames.meta)
        header_gain = header.get("GAIN")
        factor = _energy_factor(u.Unit(unit), gain=gain, detector=det,
                                header_gain=header_gain, where=name)
        data, mask, was_2d = _to_cube(frames.data, frames.mask, factor, name)
        return FrameCube(data, mask, header, [], was_2d)
    if isinstance(frames, u.Quantity):
        det = _default_detector(detector)
        factor = _energy_factor(frames.unit, gain=gain, detector=det, header_gain=None,
                                where=name)
        mask = getattr(frames, "mask", None)
        values = getattr(frames, "unmasked", frames).value
        data, bad, was_2d = _to_cube(values, mask, factor, name)
        return FrameCube(data, bad, fits.Header(), [], was_2d)
    if isinstance(frames, np.ndarray) or np.isscalar(frames):
        raise TypeError(
            f"{name} is a bare {type(frames).__name__} without units; pass an astropy "
            f"Quantity in {_ACCEPTED_UNITS} (e.g. frames * u.eV), a CCDData with a unit, "
            f"or a FITS file path.")
    raise TypeError(f"{name} must be {_ACCEPTED_FORMS}; got {type(frames).__name__}.")


def _cube_from_paths(paths, *, gain, detector, name):
    if len(paths) == 0:
        raise ValueError(f"{name} is an empty list; expected at least one FITS file path.")
    for i, p in enumerate(paths):
        if not _is_path(p):
            raise TypeError(f"{name}[{i}] must be a FITS file path (str or pathlib.Path), "
                            f"got {type(p).__name__}.")
    det = _default_detector(detector)
    datas, masks, header, names = [], [], None, []
    frame_shape = None
    was_2d = False
    for i, p in enumerate(paths):
        data, mask, hdr, was_2d = _read_fits(p, gain=gain, detector=det, name=f"{name}[{i}]")
        if frame_shape is None:
            frame_shape, header = data.shape[1:], hdr
        elif data.shape[1:] != frame_shape:
            raise ValueError(
                f"{name}[{i}] ({os.fspath(p)}) has frames of shape {data.shape[1:]}, but "
                f"{name}[0] has {frame_shape}; all files must have the same frame shape.")
        datas.append(data)
        masks.append(mask)
        names.append(os.fspath(p))
    if len(datas) == 1:
        return FrameCube(datas[0], masks[0], header, names, was_2d)
    return FrameCube(np.concatenate(datas), np.concatenate(masks), header, names, False)


def read_frames(source, *, gain=None, detector=None):
    """Read frames from any accepted source as a 3-D `~astropy.nddata.CCDData` in eV.

    Parameters
    ----------
    source : see :func:`as_energy_cube`
    gain : `~astropy.units.Quantity` [eV / adu], optional
    detector : `~xcrfilter.detector.DetectorModel`, optional

    Returns
    -------
    `~astropy.nddata.CCDData`
        Shape (n_frames, rows, columns), unit eV, ``mask`` True on bad pixels,
        ``meta`` the input header with ``BUNIT = 'eV'`` and the input files
        listed as ``INFILEn`` keywords.

    Raises
    ------
    See :func:`as_energy_cube`.
    """
    cube = as_energy_cube(source, gain=gain, detector=detector, name="source")
    header = cube.header.copy()
    old = header.get("BUNIT")
    header["BUNIT"] = ("eV", "pixel energies")
    if old is not None and str(old).strip().lower() != "ev":
        header.add_history(f"xcrfilter.io.read_frames: converted from BUNIT={old} to eV")
    for i, fname in enumerate(cube.filenames, start=1):
        header[f"INFILE{i}"[:8]] = (os.path.basename(fname)[:68], "input frame file")
    return CCDData(cube.data, unit=u.eV, mask=cube.mask, meta=header)
