"""Frames in: energy frame cubes from every accepted frame source.

:func:`as_energy_cube` turns any accepted frame source (a `~astropy.units.Quantity`
array, a `~astropy.nddata.CCDData` / `~astropy.nddata.NDData`, a FITS file
path or a list of FITS paths) into a float32 cube of pixel energies in eV
with a boolean bad-pixel mask; :func:`read_frames` returns the same as a
`~astropy.nddata.CCDData`.  Pixel values in adu or electrons are converted
with the gain (:mod:`xcrfilter.units`), ``BUNIT`` is parsed here once
(:func:`parse_bunit`).

Events out are written by :mod:`xcrfilter.io.eventfile`, other products by
:mod:`xcrfilter.io.products`; the header conventions they share are in
:mod:`xcrfilter.io.headers`.  Input files are always opened read-only and
never modified.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections import namedtuple

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from ..meta import set_card
from .headers import clean_header, is_path, meta_to_header

__all__ = ["FrameCube", "as_energy_cube", "hdu_to_energy", "read_frames", "FRAME_COLS_KEY",
           "FRAME_ROWS_KEY"]


def is_nddata(obj):
    """True if ``obj`` is an `~astropy.nddata.NDData` (CCDData included).

    Does not import :mod:`astropy.nddata` (a third of a second): an object
    cannot be an NDData unless that module is loaded already.
    """
    nddata = sys.modules.get("astropy.nddata")
    return nddata is not None and isinstance(obj, nddata.NDData)


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

_UNIT_ALIASES = {
    "ev": u.eV, "kev": u.keV, "electron": u.electron, "electrons": u.electron,
    "e-": u.electron, "e": u.electron, "adu": u.adu, "adus": u.adu, "dn": u.adu,
}


# --------------------------------------------------------------------------
# Frames in
# --------------------------------------------------------------------------

def parse_bunit(bunit, where):
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


def check_gain(gain, name, pair_energy=None):
    """Validate a gain Quantity; returns it in eV/adu (`xcrfilter.units.as_gain`)."""
    from ..units import PAIR_ENERGY, as_gain
    return as_gain(gain, name, pair_energy=PAIR_ENERGY if pair_energy is None else pair_energy)


def _header_gain(header, primary, detector, where):
    """GAIN keyword (image header, else primary) in eV/adu, or None."""
    from ..units import header_gain
    for h in (header, primary):
        if h is not None and "GAIN" in h:
            return header_gain(h, pair_energy=detector.pair_energy, where=where)
    return None


def _energy_factor(unit, *, gain, detector, header_gain, where):
    """Multiplicative factor taking values in ``unit`` to eV."""
    kind = _unit_kind(unit)
    if gain is not None and kind in ("energy", "electron"):
        warnings.warn(f"{where} is in {unit}: the gain given is ignored (it converts adu "
                      "frames).", AstropyUserWarning, stacklevel=3)
    if kind == "energy":
        return float((1 * unit).to_value(u.eV))
    if kind == "electron":
        pair = detector.pair_energy.to_value(u.eV / u.electron)
        return float((1 * unit).to_value(u.electron)) * pair
    if kind == "adu":
        pair = detector.pair_energy if detector is not None else None
        if gain is not None:
            g = check_gain(gain, "gain", pair)
        elif detector is not None and detector.gain is not None:
            g = check_gain(detector.gain, "detector.gain", pair)
        elif header_gain is not None:
            g = header_gain  # already in eV/adu (_header_gain)
        else:
            raise ValueError(
                f"{where} is in adu but no gain is known: pass gain=<Quantity in eV/adu> "
                f"(e.g. gain=3.65 * u.eV / u.adu), set DetectorModel.gain, or add a GAIN "
                f"keyword in eV/adu to the header.")
        return float((1 * unit).to_value(u.adu)) * g.to_value(u.eV / u.adu)
    raise u.UnitConversionError(
        f"{where} has unit {unit!s}; expected {_ACCEPTED_UNITS}.")


def check_shape(shape, name):
    if len(shape) not in (2, 3):
        raise ValueError(
            f"{name} must be a 2-D frame (rows, columns) or a 3-D cube "
            f"(frames, rows, columns); got {len(shape)}-D data of shape {tuple(shape)}.")
    if len(shape) == 3 and shape[0] == 0:
        raise ValueError(f"{name} is empty: the cube has 0 frames (shape {tuple(shape)}).")
    if shape[-1] < MIN_FRAME_SIZE or shape[-2] < MIN_FRAME_SIZE:
        raise ValueError(
            f"{name}: the frames are {shape[-2]} x {shape[-1]} pixels; they must be at least "
            f"{MIN_FRAME_SIZE} x {MIN_FRAME_SIZE} pixels (the 5 x 5 event window).")


def _surely_finite(values):
    """True when a float32 array is surely all finite (False: check pixel by pixel).

    A finite sum of squares proves every pixel finite (NaN and inf
    propagate); it is one BLAS pass, twice as fast as a plain sum.  Huge
    finite values can overflow it: the caller then checks each pixel.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        if values.flags.c_contiguous:
            flat = values.reshape(-1)
            return bool(np.isfinite(np.dot(flat, flat)))
        return bool(np.isfinite(np.add.reduce(values, axis=None, dtype=np.float32)))


def _to_cube(values, mask, factor, name):
    """float32 eV cube and bool mask from raw values.

    The mask is a new array.  The data are a new array, except when the input
    already is float32 in eV, finite and unmasked: then it is a read-only
    view (no copy of a large cube; the input can still never be modified).
    """
    values = np.asarray(values)
    if values.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {values.dtype}.")
    check_shape(values.shape, name)
    if values.dtype == np.float32 and factor == 1.0 and mask is None:
        if _surely_finite(values):
            data = values.view()
            data.flags.writeable = False
            bad = np.zeros(data.shape, dtype=bool)
            if data.ndim == 2:
                return data[np.newaxis], bad[np.newaxis], True
            return data, bad, False
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        data = np.array(values, dtype=np.float32, copy=True)
        if factor != 1.0:
            data *= np.float32(factor)
    # Fast path: np.zeros does not touch memory until a pixel is masked.
    if _surely_finite(data):
        bad = np.zeros(data.shape, dtype=bool)
    else:
        bad = np.isfinite(data)
        np.logical_not(bad, out=bad)
        n_bad = int(np.count_nonzero(bad))
        if n_bad:
            # finite input values that overflow float32 eV are an error, not "non-finite"
            with np.errstate(invalid="ignore", over="ignore"):
                was_finite = np.isfinite(np.asarray(values)[bad.reshape(np.shape(values))])
            n_big = int(np.count_nonzero(was_finite))
            if n_big:
                big = np.asarray(values)[bad.reshape(np.shape(values))][was_finite]
                raise ValueError(
                    f"{name}: {n_big} pixel(s) out of range: {float(big[0]):.3g} "
                    f"{'(x %.4g eV per unit) ' % factor if factor != 1.0 else ''}exceeds the "
                    f"largest storable energy, {float(np.finfo(np.float32).max):.3g} eV.")
            warnings.warn(f"{name}: {n_bad} non-finite (NaN/inf) pixels are masked and "
                          f"set to 0.", AstropyUserWarning, stacklevel=3)
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


def default_detector(detector):
    if detector is None:
        from ..detector import DetectorModel
        return DetectorModel.wfi()
    from ..detector import DetectorModel
    if not isinstance(detector, DetectorModel):
        raise TypeError(f"detector must be a DetectorModel or None, got "
                        f"{type(detector).__name__}.")
    return detector


def image_hdu(hdul, where, name):
    """Index of the first HDU with 2-D or 3-D image data."""
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) \
                and hdu.header.get("NAXIS", 0) in (2, 3) \
                and hdu.name not in ("MASK", "DQ", "UNCERT", "ERR"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyUserWarning)
                try:
                    data = hdu.data
                except Exception as exc:
                    raise OSError(
                        f"{name}: FITS file {where} is corrupt or truncated: the image "
                        f"data of HDU {i} cannot be read ({exc}).") from None
            if data is not None:
                return i
    shapes = [f"{h.name}:{getattr(h.data, 'shape', None)}" for h in hdul]
    raise ValueError(
        f"{name}: FITS file {where} has no image data; expected an image HDU holding a "
        f"2-D frame or a 3-D cube (frames, rows, columns). HDUs found: {', '.join(shapes)}.")


def hdu_to_energy(values, header, primary=None, *, mask=None, gain=None, detector=None,
                  where="frames"):
    """Pixel values of an image HDU (or a slice of it) in eV, as every command reads them.

    The one reading of frame units: ``BUNIT`` (required; eV, keV, electron or
    adu), ``GAIN`` [eV/adu] for adu frames and the bias offset ``ADUOFFS``
    [adu] subtracted from adu frames (E = (ADU - ADUOFFS) * GAIN).  Keywords
    missing from ``header`` are taken from ``primary``.

    Parameters
    ----------
    values : array-like, shape (ny, nx) or (n_frames, ny, nx)
        Raw pixel values.
    header, primary : `~astropy.io.fits.Header`
        Header of the image HDU and of the primary HDU (optional).
    mask : bool array-like, optional
        Bad pixels (True), same shape as ``values``.
    gain : `~astropy.units.Quantity` [energy / adu], optional
        Overrides the ``GAIN`` keyword.
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Pair energy for electron frames (default WFI preset).
    where : str
        Name of the input in error messages.

    Returns
    -------
    data : float32 ndarray, shape (n_frames, ny, nx)
        Energies [eV]; bad pixels are 0.
    bad : bool ndarray, same shape
    was_2d : bool

    Raises
    ------
    ValueError
        Missing or unknown ``BUNIT``, adu frames without a gain, energies out
        of the float32 range.
    """
    primary = fits.Header() if primary is None else primary
    detector = default_detector(detector)
    bunit = header.get("BUNIT", primary.get("BUNIT"))
    unit = parse_bunit(bunit, where)
    factor = _energy_factor(unit, gain=gain, detector=detector,
                            header_gain=_header_gain(header, primary, detector, where)
                            if _unit_kind(unit) == "adu" else None, where=where)
    offset = adu_offset(header, primary, where) if _unit_kind(unit) == "adu" else 0.0
    if offset != 0.0:
        # ADU frames written with a bias offset: E = (ADU - ADUOFFS) * gain
        values = np.asarray(values, dtype=np.float32) - np.float32(offset)
    return _to_cube(values, mask, factor, where)


def adu_offset(header, primary=None, where="frames"):
    """The bias offset ``ADUOFFS`` [adu] of adu frames (image header, else primary), or 0.

    Raises
    ------
    ValueError
        ``ADUOFFS`` is not a finite number.
    """
    value = header.get("ADUOFFS", None if primary is None else primary.get("ADUOFFS"))
    if value is None:
        return 0.0
    try:
        offset = float(value)
    except (TypeError, ValueError):
        offset = float("nan")
    if isinstance(value, bool) or not np.isfinite(offset):
        raise ValueError(f"{where}: ADUOFFS keyword must be a finite number of adu, got "
                         f"{value!r}.")
    return offset


def _read_fits(path, *, gain, detector, name):
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"{name}: FITS file {where!r} does not exist.")
    try:
        hdul = fits.open(where, mode="readonly", memmap=False, lazy_load_hdus=False)
    except OSError as exc:
        raise OSError(f"{name}: cannot read {where!r} as a FITS file ({exc}).") from None
    with hdul:
        idx = image_hdu(hdul, where, name)
        hdu = hdul[idx]
        header = hdu.header
        primary = hdul[0].header
        mask = None
        for ext in ("MASK", "DQ"):
            if ext in hdul and hdul[ext].data is not None:
                mask = np.array(hdul[ext].data != 0, dtype=bool)
                break
        data, bad, was_2d = hdu_to_energy(hdu.data, header, primary, mask=mask, gain=gain,
                                          detector=detector, where=f"{name} ({where})")
        out_header = clean_header(primary) if idx != 0 else fits.Header()
        for card in clean_header(header).cards:
            out_header.append(card, end=True)
    return data, bad, out_header, was_2d


def as_energy_cube(frames, *, gain=None, detector=None, name="frames"):
    """Convert any accepted frame source to a float32 energy cube with a mask.

    Parameters
    ----------
    frames : Quantity, CCDData, NDData, str, path-like or list of paths
        An `~astropy.units.Quantity` array, a `~astropy.nddata.CCDData` or
        `~astropy.nddata.NDData`, a FITS file path or a list of paths; one
        frame of shape (rows, columns) or a cube (frames, rows, columns).
        Quantities and NDData must carry a unit convertible to eV, electron or
        adu.  FITS files: the first HDU with 2-D or 3-D image data; its unit
        comes from ``BUNIT`` (``eV``, ``keV``, ``electron`` or ``adu``); a
        ``MASK`` or ``DQ`` extension (nonzero = bad) is honoured; ADU frames
        with an ``ADUOFFS`` keyword have that offset subtracted.  A list of
        paths is concatenated along the frame axis (frame shapes must match).
    gain : `~astropy.units.Quantity` [eV / adu], optional
        Gain for data in adu.  Takes precedence over ``detector.gain`` and the
        ``GAIN`` header keyword (eV/adu, or the unit in brackets at the start
        of its comment, e.g. ``[electron/adu]``; see `xcrfilter.units`).  A
        bare energy (eV) is read as eV per adu; electron/adu is converted
        with the detector's pair energy.
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
        ``data``.  The input is never modified: arrays are copied (or, for
        finite unmasked float32 input in eV, returned as a read-only view),
        files are opened read-only.

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
        If a path does not exist, is not a FITS file, or is truncated.

    Warns
    -----
    astropy.utils.exceptions.AstropyUserWarning
        With the number of NaN / inf pixels, when there are any (they are
        masked and set to 0).

    Notes
    -----
    Electron to energy: ``E = N * pair_energy`` (seed paper Sec. 2, 3.65 eV
    per electron-hole pair).  ADU to energy: ``E = ADU * gain``.
    """
    if isinstance(frames, FrameCube):
        data = np.array(frames.data, dtype=np.float32, copy=True)
        if data.ndim != 3:
            raise ValueError(f"{name} (FrameCube) data must be 3-D (frames, rows, columns), "
                             f"got shape {data.shape}.")
        check_shape(data.shape, name)
        mask = (np.zeros(data.shape, dtype=bool) if frames.mask is None
                else np.array(np.broadcast_to(frames.mask, data.shape), dtype=bool))
        header = fits.Header() if frames.header is None else frames.header.copy()
        return FrameCube(data, mask, header, list(frames.filenames or []),
                         bool(frames.was_2d))
    if isinstance(frames, (list, tuple)):
        return _cube_from_paths(list(frames), gain=gain, detector=detector, name=name)
    if is_path(frames):
        det = default_detector(detector)
        data, mask, header, was_2d = _read_fits(frames, gain=gain, detector=det, name=name)
        return FrameCube(data, mask, header, [os.fspath(frames)], was_2d)
    if is_nddata(frames):
        det = default_detector(detector)
        unit = frames.unit
        if unit is None:
            raise TypeError(
                f"{name} ({type(frames).__name__}) has no unit; set unit to "
                f"{_ACCEPTED_UNITS}.")
        header = meta_to_header(frames.meta)
        factor = _energy_factor(u.Unit(unit), gain=gain, detector=det,
                                header_gain=_header_gain(header, None, det, name)
                                if _unit_kind(u.Unit(unit)) == "adu" else None, where=name)
        data, mask, was_2d = _to_cube(frames.data, frames.mask, factor, name)
        return FrameCube(data, mask, header, [], was_2d)
    if isinstance(frames, u.Quantity):
        det = default_detector(detector)
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
        if not is_path(p):
            raise TypeError(f"{name}[{i}] must be a FITS file path (str or pathlib.Path), "
                            f"got {type(p).__name__}.")
    det = default_detector(detector)
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
        listed as ``INFILE01`` ... ``INFILE99`` keywords.

    Raises
    ------
    See :func:`as_energy_cube`.
    """
    cube = as_energy_cube(source, gain=gain, detector=detector, name="source")
    header = cube.header.copy()
    old = header.get("BUNIT")
    header["BUNIT"] = ("eV", "pixel energies")
    if old is not None and str(old).strip().lower() != "ev":
        header.add_history(f"xcrfilter.io.frames.read_frames: converted from BUNIT={old} to eV")
    for i, fname in enumerate(cube.filenames, start=1):
        if i <= 99:
            set_card(header, f"INFILE{i:02d}", os.path.basename(fname)[-68:],
                     "input frame file")
    from astropy.nddata import CCDData
    return CCDData(cube.data, unit=u.eV, mask=cube.mask, meta=header)
