"""Compact pixel-mask files, written chunk by chunk as the frames are filtered.

A mask file marks the 3 x 3 pixels of the chosen events (by default the
rejected ones).  It never holds the frames: the primary HDU has a header and
no data, and every chunk of frames is one tile-compressed uint8 image
extension (``EXTNAME = 'MASK'``, ``EXTVER`` 1, 2, ...; Rice compression, one
tile per frame; 1 = masked pixel) whose ``FRAME0`` keyword is the 0-based
index of its first frame.  ds9 shows each extension; ``CCDData.read(path,
hdu=1, unit=u.dimensionless_unscaled)`` reads one; :func:`read_mask` joins
them all.  The file is
written to ``NAME.part`` and renamed when complete.
"""
from __future__ import annotations

import os

import numpy as np
from astropy.io import fits

from ..meta import set_card
from .masks import WHICH, select_events, event_pixel_mask
from .outputs import atomic_write

__all__ = ["MaskWriter", "read_mask"]


class MaskWriter:
    """Context manager writing a mask file, one extension per chunk of frames.

    Parameters
    ----------
    path : path-like
        Output FITS file (written as ``path.part``, renamed on success).
    frame_shape : tuple of int
        (rows, columns) of one frame [pixel].
    which : {"rejected", "accepted", "all"}, optional
        Events whose pixels are masked (see
        :func:`xcrfilter.io.masks.mask_events`).  Default ``"rejected"``.
    bits : int, str or iterable, optional
        STATUS bits counted as rejection.  Default: all.
    overwrite : bool, optional
        Replace an existing ``path``.  Default False.
    header : `~astropy.io.fits.Header`, optional
        Cards for the primary header (e.g. ``INFILEnn``).

    Raises
    ------
    ValueError
        Unknown ``which``.
    FileExistsError
        ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> with MaskWriter("mask.fits", (512, 512)) as mask:  # doctest: +SKIP
    ...     run_pipeline(paths, on_chunk=mask.add)
    """

    def __init__(self, path, frame_shape, *, which="rejected", bits=None, overwrite=False,
                 header=None):
        if which not in WHICH:
            raise ValueError(f"which must be one of {WHICH}, got {which!r}.")
        self.path = os.fspath(path)
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.which, self.bits = which, bits
        self.overwrite = overwrite
        self.header = fits.Header() if header is None else header.copy()
        self.n_events = 0
        self._ext = 0
        self._txn = None
        self._part = None

    def __enter__(self):
        self._txn = atomic_write(self.path, overwrite=self.overwrite)
        self._part = self._txn.__enter__()
        primary = fits.PrimaryHDU(header=self.header)
        set_card(primary.header, "MASKWHCH", self.which,
                 "mask marks the 3x3 pixels of these events")
        bits = "ALL" if self.bits is None else ",".join(
            str(b) for b in np.atleast_1d(self.bits))
        set_card(primary.header, "MASKBITS", bits[:68], "STATUS bits counted as rejection")
        primary.header["MASKLAY"] = ("MASK extensions", "one uint8 image per chunk; FRAME0")
        fits.HDUList([primary]).writeto(self._part, overwrite=True)
        return self

    def add(self, first_frame, n_frames, events):
        """Append the mask of the ``n_frames`` frames from ``first_frame`` on.

        Parameters
        ----------
        first_frame, n_frames : int
            Frames of this chunk (0-based over the whole input).
        events : `~astropy.table.Table`
            Events found in these frames (``FRAME`` over the whole input,
            ``RAWX``, ``RAWY``, ``STATUS``).
        """
        chosen = select_events(events, self.which, self.bits)
        frame = np.asarray(events["FRAME"])[chosen] - int(first_frame)
        mask = event_pixel_mask((int(n_frames),) + self.frame_shape, frame,
                                np.asarray(events["RAWX"])[chosen],
                                np.asarray(events["RAWY"])[chosen])
        self._ext += 1
        hdu = fits.CompImageHDU(mask.view(np.uint8), name="MASK", compression_type="RICE_1",
                                tile_shape=(1,) + self.frame_shape)
        hdu.header["EXTVER"] = (self._ext, "chunk number")
        hdu.header["FRAME0"] = (int(first_frame), "0-based index of the first frame")
        hdu.header["NMASKEV"] = (int(chosen.sum()), "number of masked events")
        hdu.header["HDUCLAS2"] = ("MASK", "1 = masked pixel")
        self.n_events += int(chosen.sum())
        with fits.open(self._part, mode="append") as hdul:
            hdul.append(hdu)

    def __exit__(self, exc_type, exc, tb):
        return self._txn.__exit__(exc_type, exc, tb)


def read_mask(path):
    """The whole mask of a mask file.

    Parameters
    ----------
    path : path-like
        A file written by :class:`MaskWriter`.

    Returns
    -------
    mask : bool ndarray, shape (n_frames, rows, columns)
        True = masked pixel.

    Raises
    ------
    ValueError
        The file has no ``MASK`` extension.
    """
    parts = []
    with fits.open(os.fspath(path)) as hdul:
        for hdu in hdul[1:]:
            if hdu.name == "MASK" and hdu.data is not None:
                parts.append((int(hdu.header.get("FRAME0", 0)), hdu.data != 0))
    if not parts:
        raise ValueError(f"{os.fspath(path)} has no MASK extension.")
    parts.sort(key=lambda p: p[0])
    return np.concatenate([p[1] for p in parts])
