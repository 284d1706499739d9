"""Frames of one or many FITS files, read chunk by chunk.

:class:`FrameStream` never holds more than one chunk of frames: each chunk is
read from disk with a section read (:attr:`astropy.io.fits.ImageHDU.section`,
no memory map), converted to eV and masked on its own, so that memory is
bounded by the chunk size, not by the size of the files.  Several files are
one observation: frames are numbered continuously across them, in the order
given, and :meth:`FrameStream.file_index` tells which file a frame came from.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from .frames import FrameCube, check_shape, default_detector, image_hdu, hdu_to_energy
from .headers import clean_header

__all__ = ["FrameStream", "frames_per_chunk"]

#: Default bound on the pixels of one chunk (200 frames of 512 x 512: 210 MB of
#: float32 energies and 52 MB of mask).
DEFAULT_CHUNK_PIXELS = 200 * 512 * 512


def frames_per_chunk(frame_shape, chunk_frames=200, chunk_pixels=DEFAULT_CHUNK_PIXELS):
    """Frames per chunk: at most ``chunk_frames`` and at most ``chunk_pixels`` pixels.

    Parameters
    ----------
    frame_shape : tuple of int
        (rows, columns) of one frame [pixel].
    chunk_frames : int, optional
        Largest number of frames per chunk.  Default 200.
    chunk_pixels : int or None, optional
        Largest number of pixels per chunk; None: no bound.  Default
        ``DEFAULT_CHUNK_PIXELS`` (200 frames of 512 x 512).

    Returns
    -------
    int
        At least 1.
    """
    n = int(chunk_frames)
    if chunk_pixels is not None:
        n = min(n, int(chunk_pixels) // max(1, int(np.prod(frame_shape))))
    return max(1, n)


class _Source:
    """One input file: where its image (and mask) HDU is, and its frames."""

    def __init__(self, path, index, name):
        self.path = os.fspath(path)
        self.where = f"{name}[{index}] ({self.path})" if index is not None \
            else f"{name} ({self.path})"
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{name}: FITS file {self.path!r} does not exist.")
        try:
            with fits.open(self.path, mode="readonly", memmap=False) as hdul:
                self.hdu_index = _image_hdu_header(hdul, self.path, name)
                hdu = hdul[self.hdu_index]
                self.header = hdu.header.copy()
                self.primary = hdul[0].header.copy()
                self.mask_index = None
                for ext in ("MASK", "DQ"):
                    if ext in hdul and hdul[ext].header.get("NAXIS", 0) in (2, 3):
                        self.mask_index = hdul.index_of(ext)
                        break
                for i in (self.hdu_index, self.mask_index):
                    _check_complete(hdul, i)
        except OSError as exc:
            raise OSError(f"{name}: cannot read {self.path!r} as a FITS file "
                          f"({exc}).") from None
        shape = tuple(hdu_shape(self.header))
        check_shape(shape, self.where)
        self.was_2d = len(shape) == 2
        self.shape = (1,) + shape if self.was_2d else shape
        self.raw = _raw_layout(self.path, self.header, hdul.fileinfo(self.hdu_index))
        self.n_frames = self.shape[0]
        out = clean_header(self.primary) if self.hdu_index != 0 else fits.Header()
        for card in clean_header(self.header).cards:
            out.append(card, end=True)
        self.out_header = out

    def read(self, start, stop, *, gain, detector):
        """Frames ``start:stop`` of this file, in eV, with their mask."""
        with fits.open(self.path, mode="readonly", memmap=False) as hdul:
            if self.raw is not None and not self.was_2d:
                values = _mapped_section(self.path, *self.raw, self.shape[1:], start, stop)
            else:
                values = _section(hdul[self.hdu_index], start, stop, self.was_2d)
            mask = None
            if self.mask_index is not None:
                mhdu = hdul[self.mask_index]
                if mhdu.header.get("NAXIS") == 3:
                    mask = _section(mhdu, start, stop, False) != 0
                else:
                    # one 2-D mask shared by every frame
                    mask = np.broadcast_to(np.asarray(mhdu.data) != 0, values.shape)
        data, bad, _ = hdu_to_energy(values, self.header, self.primary, mask=mask, gain=gain,
                                     detector=detector, where=self.where)
        return data, bad


def hdu_shape(header):
    """numpy shape of the image of ``header`` (``ZNAXISn`` for compressed images)."""
    key = "ZNAXIS" if header.get("ZIMAGE") else "NAXIS"
    return tuple(int(header[f"{key}{i}"]) for i in range(int(header[key]), 0, -1))


def _check_complete(hdul, index):
    """OSError if the data of HDU ``index`` runs past the end of the file (truncated)."""
    if index is None or isinstance(hdul[index], fits.CompImageHDU):
        return
    info = hdul.fileinfo(index)
    if getattr(info["file"], "compression", None):  # a gzip file: sizes are not comparable
        return
    have = os.path.getsize(info["filename"]) - info["datLoc"]
    if have < hdul[index].size:
        raise OSError(f"the file is truncated: the data of HDU {index} needs "
                      f"{hdul[index].size} bytes, the file holds {max(have, 0)}")


#: BITPIX -> numpy type of the bytes of a FITS image
_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
#: frames converted per mapping of the file by `_mapped_section` (public: the tests
#: build files that span several mappings)
MAPPED_FRAMES = 8


def _raw_layout(path, header, info):
    """``(data offset, dtype)`` when the image is stored as plain values, else None.

    Plain: an uncompressed file (it starts with ``SIMPLE``) holding all the
    data, not a tile-compressed HDU, no ``BSCALE``/``BZERO`` scaling.
    """
    dtype = _BITPIX.get(header.get("BITPIX"))
    if (dtype is None or header.get("ZIMAGE") or header.get("BSCALE", 1) != 1
            or header.get("BZERO", 0) != 0):
        return None
    dtype = np.dtype(dtype)
    size = dtype.itemsize * int(np.prod(hdu_shape(header)))
    with open(path, "rb") as fh:
        if fh.read(6) != b"SIMPLE" or os.fstat(fh.fileno()).st_size < info["datLoc"] + size:
            return None
    return int(info["datLoc"]), dtype


def _mapped_section(path, offset, dtype, frame_shape, start, stop):
    """Frames ``start:stop`` of a plain image, in native byte order (a new array).

    The file is memory-mapped a few frames at a time and each piece converted
    into the output: one pass over the data (a section read and a byte swap
    are two) and never more than a few frames of the file mapped.
    """
    import mmap
    frame = int(np.prod(frame_shape))
    out = np.empty((stop - start,) + tuple(frame_shape), dtype.newbyteorder("="))
    with open(path, "rb") as fh:
        for a in range(0, stop - start, MAPPED_FRAMES):
            n = min(MAPPED_FRAMES, stop - start - a)
            first = offset + (start + a) * frame * dtype.itemsize
            base = first - first % mmap.ALLOCATIONGRANULARITY
            view = mmap.mmap(fh.fileno(), first + n * frame * dtype.itemsize - base,
                             access=mmap.ACCESS_READ, offset=base)
            try:
                out[a:a + n] = np.frombuffer(view, dtype, n * frame,
                                             first - base).reshape(out[a:a + n].shape)
            finally:
                view.close()
    return out


def _image_hdu_header(hdul, where, name):
    """Index of the first image HDU, found from headers only (no data read)."""
    for i, hdu in enumerate(hdul):
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) \
                and hdu.name not in ("MASK", "DQ", "UNCERT", "ERR") \
                and len(hdu_shape(hdu.header)) in (2, 3):
            return i
    return image_hdu(hdul, where, name)  # raises the usual message


def _section(hdu, start, stop, was_2d):
    """Frames ``start:stop`` read from the file (a new array, native byte order)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        if was_2d:
            values = np.asarray(hdu.section[:, :])[np.newaxis]
        else:
            values = np.asarray(hdu.section[start:stop])
    if not values.dtype.isnative and values.flags.writeable and values.flags.c_contiguous:
        # the section is our own copy of the file's big-endian bytes: swap in place
        # (no second copy of the chunk)
        values = values.byteswap(inplace=True).view(values.dtype.newbyteorder())
    return values


class FrameStream:
    """Frames of FITS files as one observation, read a chunk at a time.

    Parameters
    ----------
    paths : path-like or list of path-like
        FITS files; each holds a 2-D frame or a 3-D cube (frames, rows,
        columns) with ``BUNIT`` (eV, keV, electron or adu), as
        :func:`xcrfilter.io.frames.as_energy_cube` reads them (``MASK``/``DQ``
        extension, ``GAIN``, ``ADUOFFS``).  Frame shapes must match.
    gain : `~astropy.units.Quantity` [eV / adu], optional
        Gain for frames in adu (overrides ``GAIN``).
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Pair energy for frames in electron.  Default WFI.
    chunk_frames : int, optional
        Largest number of frames per chunk.  Default 200.
    chunk_pixels : int or None, optional
        Largest number of pixels per chunk (bounds memory for large
        frames).  Default ``DEFAULT_CHUNK_PIXELS``.
    name : str, optional
        Name of the input in error messages.

    Attributes
    ----------
    n_frames : int
        Frames of all files together.
    frame_shape : tuple of int
        (rows, columns) [pixel].
    header : `~astropy.io.fits.Header`
        Header of the first file (structural keywords removed); every chunk
        carries this same object.
    filenames : list of str
    offsets : ndarray of int, shape (n_files + 1,)
        First frame of each file (and the total).

    Raises
    ------
    FileNotFoundError, OSError
        A file is missing or not FITS.
    ValueError
        No files, no image, frame shapes that differ, frames smaller than 5 x 5.
    """

    def __init__(self, paths, *, gain=None, detector=None, chunk_frames=200,
                 chunk_pixels=DEFAULT_CHUNK_PIXELS, name="frames"):
        single = isinstance(paths, (str, os.PathLike))
        paths = [paths] if single else list(paths)
        if not paths:
            raise ValueError(f"{name} is an empty list; expected at least one FITS file path.")
        if int(chunk_frames) < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}.")
        self.sources = [_Source(p, None if single else i, name) for i, p in enumerate(paths)]
        shape = self.sources[0].shape[1:]
        for s in self.sources[1:]:
            if s.shape[1:] != shape:
                raise ValueError(f"{name}: frames of {s.path} are {s.shape[1:]} pixels, those "
                                 f"of {self.sources[0].path} {shape}; all files must have the "
                                 f"same frame shape.")
        self.frame_shape = shape
        self.filenames = [s.path for s in self.sources]
        self.offsets = np.cumsum([0] + [s.n_frames for s in self.sources])
        self.n_frames = int(self.offsets[-1])
        self.header = self.sources[0].out_header
        self.was_2d = single and self.sources[0].was_2d
        self.gain = gain
        self.detector = default_detector(detector)
        self.chunk = frames_per_chunk(shape, chunk_frames, chunk_pixels)

    def __len__(self):
        return self.n_frames

    def ranges(self):
        """``(start, stop)`` of every chunk; chunks never span two files."""
        out = []
        for k, s in enumerate(self.sources):
            first = int(self.offsets[k])
            for a in range(0, s.n_frames, self.chunk):
                out.append((first + a, first + min(s.n_frames, a + self.chunk)))
        return out

    def read(self, start, stop):
        """Frames ``start:stop`` (within one file) as a `~xcrfilter.io.frames.FrameCube` [eV]."""
        k = int(np.searchsorted(self.offsets, start, side="right") - 1)
        first = int(self.offsets[k])
        if stop > self.offsets[k + 1] or start < 0:
            raise ValueError(f"frames {start}:{stop} are not within one input file.")
        data, bad = self.sources[k].read(start - first, stop - first, gain=self.gain,
                                         detector=self.detector)
        return FrameCube(data, bad, self.header, self.filenames, False)

    def __iter__(self):
        for start, stop in self.ranges():
            yield self.read(start, stop)

    def file_index(self, frame):
        """0-based index of the file holding each global ``frame`` number."""
        return np.searchsorted(self.offsets, np.asarray(frame), side="right") - 1
