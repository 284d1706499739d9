"""FITS output of simulated observations, streamed chunk by chunk.

File layout (readable by ds9, astropy and `xcrfilter.io.frames.as_energy_cube`, which
takes the first image HDU and therefore ignores the truth):

* primary HDU: frames cube float32 ``(n_frames, ny, nx)``, ``BUNIT = 'eV'``
  (or ``'adu'`` with ``GAIN`` when a gain is given), a header with the
  detector model, every `SimulationParameters` field, the spectrum and seed;
* ``TRUTH``: uint8 label cube of the same shape (0 none, 1 X-ray, 2 CR);
* ``SOURCES``: binary table, one row per simulated source (global FRAME).

The two cubes are written in place while chunks arrive (the file is laid
out with its final sizes first), so memory stays at one chunk.
"""
from __future__ import annotations

import io
import os

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, vstack

from .core import BLOCK_FRAMES, FrameSimulator, iter_frames
from ..io.outputs import check_regular_target

__all__ = ["write_simulation", "read_truth", "simulation_header"]

_BLOCK = 2880


def _pad(n):
    return (-n) % _BLOCK


def simulation_header(sim, n_frames, seed, chunk_size=None):
    """Header cards describing a simulation (detector, parameters, seed)."""
    h = fits.Header()
    for key, val, com in sim.detector.to_header_cards():
        h[key] = (val, com)
    h["SIMULATE"] = (True, "frames made by xcrfilter.simulate")
    h["SIMSEED"] = (int(seed), "random seed of the simulation")
    h["SIMBLOCK"] = (BLOCK_FRAMES, "frames per random-number block")
    h["NFRAMES"] = (int(n_frames), "number of frames")
    h["XSPECTRM"] = (sim.spectrum.describe()[:68], "X-ray spectrum")
    h["CLDSIGMX"] = (round(sim.sigma_max, 4), "[um] charge cloud rms, full drift")
    for key, val, com in sim.params.to_header_cards():
        h[key] = (val, com)
    try:
        from .. import __version__ as ver
    except Exception:  # pragma: no cover
        ver = "unknown"
    h["CREATOR"] = (f"xcrfilter {ver}"[:68], "software")
    h["COMMENT"] = "TRUTH extension: 0 none, 1 X-ray, 2 CR (largest noise-free deposit)."
    h["COMMENT"] = "SOURCES extension: one row per simulated X-ray / particle / secondary."
    return h


def write_simulation(path, n_frames, *, seed=None, detector=None, params=None, spectrum=None,
                     shape=None, chunk_size=64, gain=None, offset=0.0, overwrite=False,
                     progress=False, physics=None):
    """Simulate ``n_frames`` frames and stream them with their truth to FITS.

    Parameters
    ----------
    path : str or path-like
        Output file.
    n_frames : int
        Number of frames (>= 1).
    seed : int, optional
        Random seed (recorded as ``SIMSEED``); ``None`` draws one.
    detector, params, spectrum, shape
        See `xcrfilter.simulate.FrameSimulator`.
    chunk_size : int
        Frames simulated and written at a time.
    gain : `~astropy.units.Quantity` [eV/adu], optional
        Write the frames in ADU (``E / gain + offset``), ``BUNIT='adu'`` and
        ``GAIN``.
    offset : float
        Constant added to every pixel in ADU (only with ``gain``), recorded
        as ``ADUOFFS``; a reader must subtract it before converting to
        energy (`xcrfilter.io.frames.as_energy_cube` does not, so keep 0 for files
        that the package itself will filter).
    overwrite : bool
        Replace an existing file.
    progress : bool
        Show a tqdm progress bar.
    physics : `~xcrfilter.simulate.RandomPhysicsSimulator`, optional
        Randomised physics per block (see `xcrfilter.simulate.iter_frames`);
        its ranges are recorded in the header.

    Returns
    -------
    dict
        Summary: ``n_frames``, ``n_sources``, ``seed``, ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    path = os.fspath(path)
    check_regular_target(path, "path")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists (use overwrite=True / --overwrite)")
    sim = FrameSimulator(detector, params, spectrum, shape)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2 ** 63))
    ny, nx = sim.shape
    scale = 1.0
    g = None
    if gain is not None:
        if not isinstance(gain, u.Quantity):
            raise TypeError("gain must be a Quantity in eV/adu")
        g = gain.to_value(u.eV / u.adu) if gain.unit.is_equivalent(u.eV / u.adu) \
            else gain.to_value(u.eV)
        if not g > 0:
            raise ValueError(f"gain must be positive, got {gain}")
        scale = 1.0 / g

    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = -32
    hdr["NAXIS"] = 3
    hdr["NAXIS1"] = nx
    hdr["NAXIS2"] = ny
    hdr["NAXIS3"] = n_frames
    hdr["EXTEND"] = True
    hdr["BUNIT"] = ("adu" if gain is not None else "eV", "pixel values")
    if gain is not None:
        hdr["GAIN"] = (float(g), "[eV/adu] gain")
        hdr["ADUOFFS"] = (float(offset), "[adu] offset added to every pixel")
    elif offset:
        raise ValueError("offset needs a gain (frames in eV carry no offset)")
    hdr.extend(simulation_header(sim, n_frames, seed, chunk_size), end=True)
    if physics is not None:
        for key, val, com in physics.ranges.to_header_cards():
            hdr[key] = (val, com)
        hdr["COMMENT"] = ("RANDPHYS: every block of SIMBLOCK frames drew its own parameters "
                          "from the RNDPARnn ranges; the other cards give the base set.")
    thdr = fits.Header()
    thdr["XTENSION"] = "IMAGE"
    thdr["BITPIX"] = 8
    thdr["NAXIS"] = 3
    thdr["NAXIS1"] = nx
    thdr["NAXIS2"] = ny
    thdr["NAXIS3"] = n_frames
    thdr["PCOUNT"] = 0
    thdr["GCOUNT"] = 1
    thdr["EXTNAME"] = ("TRUTH", "per-pixel source label")
    thdr["LABEL0"] = ("none", "label value 0")
    thdr["LABEL1"] = ("X-ray", "label value 1")
    thdr["LABEL2"] = ("CR", "label value 2 (cosmic-ray shower)")
    thdr["LABTHRES"] = (float(sim.params.label_threshold), "[eV] min deposit to be labelled")

    hbytes = hdr.tostring().encode("ascii")
    tbytes = thdr.tostring().encode("ascii")
    npix = ny * nx
    d0 = len(hbytes)
    dsize = n_frames * npix * 4
    t0 = d0 + dsize + _pad(dsize)
    td0 = t0 + len(tbytes)
    tsize = n_frames * npix
    end = td0 + tsize + _pad(tsize)
    sources = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_frames, unit="frame", desc="simulate")
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as fh:
            fh.write(hbytes)
            fh.truncate(end)
            fh.seek(t0)
            fh.write(tbytes)
            for ch in iter_frames(n_frames, seed=seed, chunk_size=chunk_size, simulator=sim,
                                  physics=physics):
                n = ch.frames.shape[0]
                data = ch.frames if gain is None else \
                    ch.frames * np.float32(scale) + np.float32(offset)
                fh.seek(d0 + ch.first_frame * npix * 4)
                fh.write(data.astype(">f4", copy=False).view(np.uint8).reshape(-1))
                fh.seek(td0 + ch.first_frame * npix)
                fh.write(np.ascontiguousarray(ch.labels).reshape(-1))
                sources.append(ch.sources)
                if bar is not None:
                    bar.update(n)
            src = vstack(sources) if len(sources) > 1 else sources[0]
            bhdu = fits.BinTableHDU(src, name="SOURCES")
            bhdu.header["COMMENT"] = "KIND: xray, primary, secondary_track, photon, electron"
            bhdu.header["COMMENT"] = "X, Y: pixel coordinates (pixel centres at integers)"
            bhdu.header["COMMENT"] = "PARENT: ID of the shower primary (-1 for X-rays)"
            buf = io.BytesIO()
            fits.HDUList([fits.PrimaryHDU(), bhdu]).writeto(buf)
            raw = buf.getvalue()
            # skip the dummy primary HDU (header only, one or more 2880 blocks)
            first = fits.PrimaryHDU().header.tostring().encode("ascii")
            fh.seek(end)
            fh.write(raw[len(first):])
        check_regular_target(path, "path")
        os.replace(tmp, path)
    finally:
        if bar is not None:
            bar.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"path": path, "n_frames": n_frames, "n_sources": len(src), "seed": int(seed)}


def read_truth(path, *, memmap=False):
    """Read the truth of a simulated observation.

    Parameters
    ----------
    path : str or path-like
        File written by `write_simulation`.
    memmap : bool
        Memory-map the label cube instead of reading it.

    Returns
    -------
    labels : uint8 ndarray (n_frames, ny, nx)
    sources : `~astropy.table.QTable`

    Raises
    ------
    KeyError
        If the file has no ``TRUTH`` or ``SOURCES`` extension.
    """
    with fits.open(path, memmap=memmap) as hdul:
        names = [h.name for h in hdul]
        if "TRUTH" not in names or "SOURCES" not in names:
            raise KeyError(f"{path} has no TRUTH/SOURCES extensions (not a simulation?)")
        labels = np.asarray(hdul["TRUTH"].data, dtype=np.uint8)
        if not memmap:
            labels = labels.copy()
    sources = QTable.read(path, hdu="SOURCES")
    for c in ("KIND", "SPECIES"):
        if sources[c].dtype.kind == "S":
            sources[c] = np.char.decode(sources[c]).astype("U15")
    return labels, sources
