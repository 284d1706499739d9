"""Image cubes written a chunk of frames at a time, without re-reading.

:class:`CubeWriter` appends each chunk of every image extension to a raw
side file (``NAME.part.<EXTNAME>``, big-endian float32, as FITS stores it);
:meth:`CubeWriter.close` then writes the FITS file once, header by header,
copying the raw data in blocks, to ``NAME.part`` renamed to ``NAME``.  The
cost is linear in the size of the output and the memory is one chunk; a run
killed before ``close`` leaves only ``.part`` files.
"""
from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np
from astropy.io import fits

from .outputs import PART_SUFFIX, atomic_write

__all__ = ["CubeWriter"]

_BLOCK = 2880


class CubeWriter:
    """Float32 image extensions of shape (n_frames, rows, columns), grown by chunks.

    Parameters
    ----------
    path : path-like
        Output FITS file.
    primary : `~astropy.io.fits.Header`
        Primary header (no data).
    extensions : dict of str to `~astropy.io.fits.Header`
        ``EXTNAME`` to the extra cards of that image extension, in file order.
    overwrite : bool, optional
        Replace an existing ``path`` when closing.  Default False.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    """

    def __init__(self, path, primary, extensions, *, overwrite=False):
        self.path = os.fspath(path)
        if os.path.exists(self.path) and not overwrite:
            raise FileExistsError(f"{self.path} already exists; pass overwrite=True to "
                                  "replace it.")
        self.overwrite = overwrite
        self.primary = primary.copy()
        self.extensions = {name: hdr.copy() for name, hdr in extensions.items()}
        self.frames = {name: 0 for name in extensions}
        self.shape = None
        self._raw = {name: f"{self.path}{PART_SUFFIX}.{name}" for name in extensions}
        for raw in self._raw.values():
            open(raw, "wb").close()

    def append(self, name, data):
        """Append frames ``data`` (shape (n, rows, columns)) to extension ``name``.

        Raises
        ------
        ValueError
            The frame shape differs from that of earlier chunks.
        """
        data = np.asarray(data, dtype=">f4")
        if self.shape is None:
            self.shape = data.shape[1:]
        elif data.shape[1:] != self.shape:
            raise ValueError(f"{name}: frames of shape {data.shape[1:]} after frames of "
                             f"shape {self.shape}.")
        with open(self._raw[name], "ab") as fh:
            fh.write(np.ascontiguousarray(data).tobytes())
        self.frames[name] += data.shape[0]

    def close(self):
        """Write the FITS file (atomically) and remove the side files."""
        with atomic_write(self.path, overwrite=self.overwrite) as part:
            with open(part, "wb") as out:
                out.write(fits.PrimaryHDU(header=self.primary).header.tostring().encode())
                for name, extra in self.extensions.items():
                    ny, nx = self.shape or (0, 0)
                    hdu = fits.ImageHDU(name=name)
                    hdu.header["BITPIX"] = -32
                    hdu.header["NAXIS"] = 3
                    hdu.header.insert("NAXIS", ("NAXIS1", nx), after=True)
                    hdu.header.insert("NAXIS1", ("NAXIS2", ny), after=True)
                    hdu.header.insert("NAXIS2", ("NAXIS3", self.frames[name]), after=True)
                    hdu.header.extend(extra, update=True)
                    out.write(hdu.header.tostring().encode())
                    with open(self._raw[name], "rb") as raw:
                        shutil.copyfileobj(raw, out, 16 * 2 ** 20)
                    size = 4 * nx * ny * self.frames[name]
                    out.write(b"\0" * (-size % _BLOCK))
        self.abort()

    def abort(self):
        """Remove the side files (the output is not written)."""
        for raw in self._raw.values():
            with contextlib.suppress(OSError):
                os.remove(raw)
