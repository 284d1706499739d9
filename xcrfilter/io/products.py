"""Products besides events: class activation maps and pixel masks.

:func:`write_cam_maps` writes one float32 image HDU per class activation
map (:class:`CamMapWriter` writes the same file a chunk of frames at a
time); :func:`write_mask` writes a `~astropy.nddata.CCDData` with its mask
in a ``MASK`` extension (readable by ccdproc and ds9).  Written atomically
(`xcrfilter.io.outputs`).
"""
from __future__ import annotations

import os

import astropy.units as u
import numpy as np
from astropy.io import fits

from .headers import (add_text_lines, apply_meta, check_output_path, clean_header, creator_cards,
                      split_value, write_hdul)

__all__ = ["write_cam_maps", "read_cam_maps", "write_mask", "CamMapWriter"]


def _cards_to_header(header_cards, name="header_cards"):
    """Header from a Header, a mapping (meta style) or an iterable of cards."""
    header = fits.Header()
    if header_cards is None:
        return header
    if isinstance(header_cards, fits.Header):
        return clean_header(header_cards)
    if hasattr(header_cards, "items"):
        apply_meta(header, dict(header_cards))
        return header
    for item in header_cards:
        if isinstance(item, fits.Card):
            header.append(item, end=True)
            continue
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise TypeError(f"{name} must be a Header, a dict or (keyword, value[, comment]) "
                            f"tuples; got item {item!r}.")
        key, value = str(item[0]).upper(), item[1]
        comment = item[2] if len(item) == 3 else ""
        if key in ("HISTORY", "COMMENT"):
            add_text_lines(header, key, [value])
        else:
            value, qcomment = split_value(key, (value, comment) if comment else value)
            header[key] = (value, qcomment)
    return header


def _cam_extname(name):
    name = str(name).upper()
    return name if name.startswith("CAM_") else f"CAM_{name}"


def _cam_headers(classes, header_cards):
    """Primary header and ``{EXTNAME: header}`` of a CAM map file of ``classes``."""
    cards = _cards_to_header(header_cards)
    primary = fits.Header()
    primary.extend(cards, end=True)
    creator_cards(primary)
    primary["NCAMMAPS"] = (len(classes), "number of CAM image extensions")
    extensions = {}
    for i, cls in enumerate(classes, start=1):
        extname = _cam_extname(cls)
        primary[f"CAMEXT{i}"[:8]] = (extname, "CAM image extension")
        hdr = cards.copy()
        hdr["CLASSNAM"] = (extname[4:], "class of this activation map")
        hdr["BUNIT"] = ("", "class activation map (dimensionless)")
        extensions[extname] = hdr
    return primary, extensions


def write_cam_maps(path, maps, header_cards=None, *, overwrite=False):
    """Write class activation maps, one float32 image HDU per class.

    Parameters
    ----------
    path : str or path-like
        Output FITS file.
    maps : dict of str to `numpy.ndarray`
        Class name (e.g. ``"XRAY"``, ``"CR"``) to map, shape (rows, columns) or
        (frames, rows, columns).  Extensions are named ``CAM_<NAME>`` (a name
        already starting with ``CAM_`` is kept), in the dict's order.
    header_cards : `~astropy.io.fits.Header`, dict or iterable of tuples, optional
        Keywords (model name, input scaling, upsampling, class order ...)
        written to the primary header and to every map's header: a Header, a
        ``meta``-style dict (values plain or ``(value, comment)``) or
        ``(keyword, value[, comment])`` tuples.
    overwrite : bool, optional
        Replace an existing file.  Default False.

    Raises
    ------
    TypeError
        If ``maps`` is not a non-empty dict of numeric arrays.
    ValueError
        If a map is not 2-D or 3-D.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Notes
    -----
    Seed paper Sec. 3.3: CAM_k(x, y) = sum_i w_i^k a_i(x, y), upsampled to the
    input frame resolution.  Each extension has ``CLASSNAM`` (the class) and
    ``BUNIT = ''`` (CAM values are dimensionless).
    """
    if not isinstance(maps, dict) or len(maps) == 0:
        raise TypeError(f"maps must be a non-empty dict of class name to ndarray, got "
                        f"{type(maps).__name__}{'' if maps else ' (empty)'}.")
    path = check_output_path(path, overwrite)
    primary, extensions = _cam_headers(list(maps), header_cards)
    hdus = [fits.PrimaryHDU(header=primary)]
    for (cls, arr), (extname, hdr) in zip(maps.items(), extensions.items()):
        arr = _map_array(cls, arr, (2, 3))
        hdus.append(fits.ImageHDU(arr.astype(np.float32), header=hdr, name=extname))
    write_hdul(fits.HDUList(hdus), path, overwrite)


def _map_array(cls, arr, ndims):
    if isinstance(arr, u.Quantity):
        arr = arr.value
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"maps[{cls!r}] must be a numeric array, got dtype {arr.dtype}.")
    if arr.ndim not in ndims:
        shapes = " or ".join({2: "2-D (rows, columns)", 3: "3-D (frames, rows, columns)"}[n]
                             for n in ndims)
        raise ValueError(f"maps[{cls!r}] must be {shapes}, got shape {arr.shape}.")
    return arr


class CamMapWriter:
    """A CAM map file written a chunk of frames at a time (a pipeline run's ``cam_output``).

    Each :meth:`append` adds the maps of a chunk of frames to raw side files
    (`xcrfilter.io.cubefile.CubeWriter`, nothing is re-read); :meth:`close`
    writes the FITS file, laid out as :func:`write_cam_maps` lays it out, and
    :meth:`abort` (or leaving a ``with`` block by an error) removes
    everything.  Nothing is created before the first :meth:`append`.

    Parameters
    ----------
    path : path-like
        Output FITS file.
    overwrite : bool, optional
        Replace an existing file.  Default False.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """

    def __init__(self, path, *, overwrite=False):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to "
                                  "replace it.")
        self.overwrite = overwrite
        self._cube = None

    def append(self, maps, header_cards=None):
        """Append ``maps`` (class name -> (frames, rows, columns)) of the next frames.

        ``header_cards`` (as for :func:`write_cam_maps`) are taken from the
        first call; later chunks must have the same classes.
        """
        if not isinstance(maps, dict) or not maps:
            raise TypeError("maps must be a non-empty dict of class name to ndarray.")
        if self._cube is None:
            from .cubefile import CubeWriter
            primary, extensions = _cam_headers(list(maps), header_cards)
            self._cube = CubeWriter(self.path, primary, extensions, overwrite=self.overwrite)
        names = [_cam_extname(c) for c in maps]
        if names != list(self._cube.extensions):
            raise ValueError(f"maps: classes {names} after {list(self._cube.extensions)}.")
        for (cls, arr), name in zip(maps.items(), names):
            self._cube.append(name, _map_array(cls, arr, (3,)))

    def close(self):
        """Write the file (atomically); a writer that got no maps writes nothing."""
        if self._cube is not None:
            self._cube.close()
            self._cube = None

    def abort(self):
        """Remove what was written so far; no file is left."""
        if self._cube is not None:
            self._cube.abort()
            self._cube = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.abort() if exc_type is not None else self.close()
        return False


def read_cam_maps(path):
    """Read maps written by :func:`write_cam_maps`.

    Returns
    -------
    maps : dict of str to `numpy.ndarray`
        Class name (without the ``CAM_`` prefix) to float32 map.
    header : `astropy.io.fits.Header`
        Primary header.
    """
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"path: CAM map file {where!r} does not exist.")
    maps = {}
    with fits.open(where, mode="readonly", memmap=False) as hdul:
        header = hdul[0].header.copy()
        for hdu in hdul[1:]:
            if hdu.name.startswith("CAM_") and hdu.data is not None:
                maps[hdu.name[4:]] = np.array(hdu.data, dtype=np.float32)
    if not maps:
        raise ValueError(f"path: {where!r} has no CAM_* image extensions.")
    return maps, header


def write_mask(path, ccd, *, overwrite=False, header_cards=None):
    """Write a `~astropy.nddata.CCDData` and its mask (``MASK`` extension).

    Parameters
    ----------
    path : str or path-like
        Output FITS file.
    ccd : `~astropy.nddata.CCDData`
        E.g. the output of :func:`xcrfilter.io.masks.mask_events`; must have a
        unit and a mask.  The primary HDU holds the data (``BUNIT``), the
        ``MASK`` image extension holds the mask as uint8 (1 = masked), the
        layout ccdproc reads back with ``CCDData.read`` and ds9 can display.
    overwrite : bool, optional
        Replace an existing file.  Default False.
    header_cards : optional
        Extra keywords for the primary header (see :func:`write_cam_maps`).

    Raises
    ------
    TypeError
        If ``ccd`` is not a CCDData.
    ValueError
        If ``ccd`` has no mask.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    """
    from astropy.nddata import CCDData
    if not isinstance(ccd, CCDData):
        raise TypeError(f"ccd must be a CCDData, got {type(ccd).__name__}.")
    if ccd.mask is None:
        raise ValueError("ccd has no mask; write_mask needs ccd.mask (True = masked pixel).")
    path = check_output_path(path, overwrite)
    hdul = ccd.to_hdu(hdu_mask="MASK", hdu_uncertainty=None, hdu_flags=None)
    hdul[0].header.extend(_cards_to_header(header_cards), update=True)
    creator_cards(hdul[0].header)
    hdul["MASK"].header["HDUCLAS2"] = ("MASK", "1 = masked pixel")
    write_hdul(hdul, path, overwrite)
