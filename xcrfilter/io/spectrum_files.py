"""OGIP spectral files: type I PHA spectra, a diagonal-Gaussian RMF and an ARF.

Formats:

* OGIP/92-007 (Arnaud, George & Tennant, "The OGIP Spectral File
  Format"): the ``SPECTRUM`` extension, ``CHANNEL``/``COUNTS``, the
  mandatory keywords ``EXPOSURE``, ``AREASCAL``, ``BACKSCAL``, ``CORRSCAL``,
  ``CORRFILE``, ``RESPFILE``, ``ANCRFILE``, ``POISSERR``,
  ``CHANTYPE``, ``DETCHANS``, ``HDUCLASn``.  ``BACKSCAL`` and ``QUALITY``
  are written as columns (all 1.0 and 0), which the standard allows and
  gammapy's OGIP reader needs; an ``EBOUNDS`` extension is added for the
  same reader, and ``BACKFILE`` is left out (there is no background file;
  gammapy 2.1 would open ``'NONE'`` as a file name).
* CAL/GEN/92-002 (George et al., "The Calibration Requirements for
  Spectral Analysis"): the ``MATRIX`` (``HDUCLAS3 = 'REDIST'``) and
  ``EBOUNDS`` extensions of the RMF, ``F_CHAN``/``N_CHAN``/``MATRIX`` as
  variable-length arrays, and the ``SPECRESP`` extension of the ARF.

Every HDU carries ``CHECKSUM``/``DATASUM``; files are written atomically.
"""
from __future__ import annotations

import os

import astropy.units as u
import numpy as np
from astropy.io import fits

from ..meta import card_value

__all__ = ["spectrum_hdulist", "response_hdulist", "arf_hdulist", "write_hdulist",
           "line_sigma", "true_energy_grid", "regions_of", "write_regions", "require_regions"]

#: Observation keywords copied from the event file to every product.
_COPIED = ("TELESCOP", "INSTRUME", "DETNAM", "FILTER", "OBJECT", "OBS_ID", "DATE-OBS",
           "DATE-END", "TSTART", "TSTOP", "TIMESYS", "MJDREF", "MJDREFI", "MJDREFF",
           "TIMEUNIT", "TIMEREF")
#: Width of the true-energy bins of the RMF and ARF.
TRUE_ENERGY_STEP = 20 * u.eV
#: Lowest true energy of the RMF and ARF.
TRUE_ENERGY_MIN = 100 * u.eV
#: Lower edge written for a channel starting at 0 eV (``EBOUNDS``).
EBOUNDS_FLOOR = 1 * u.eV
#: The Gaussian of the RMF is cut at this many sigma.
N_SIGMA = 5.0


def _obs_cards(header, meta):
    for key in _COPIED:
        value = card_value(meta, key)
        if value is not None:
            header[key] = value
    for key, default in (("TELESCOP", "UNKNOWN"), ("INSTRUME", "UNKNOWN"),
                         ("FILTER", "NONE")):
        if key not in header:
            header[key] = (default, "not in the event file")


def _ogip(header, extname, *classes, version):
    header["EXTNAME"] = extname
    header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    for i, value in enumerate(classes, start=1):
        header[f"HDUCLAS{i}"] = value
    header["HDUVERS"] = version


def _ebounds_hdu(first, n, width, meta):
    chan = np.arange(first, first + n, dtype=np.int32)
    w = width.to_value(u.keV)
    e_min = chan * w
    # channel 0 starts at EBOUNDS_FLOOR, not 0: clients with logarithmic energy axes
    # (gammapy) refuse 0; no event is ever in it (below every event threshold)
    e_min[e_min <= 0] = EBOUNDS_FLOOR.to_value(u.keV)
    cols = [fits.Column("CHANNEL", "J", array=chan),
            fits.Column("E_MIN", "E", unit="keV", array=e_min.astype(np.float32)),
            fits.Column("E_MAX", "E", unit="keV", array=((chan + 1) * w).astype(np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols)
    h = hdu.header
    _ogip(h, "EBOUNDS", "RESPONSE", "EBOUNDS", version="1.2.0")
    h["TLMIN1"], h["TLMAX1"] = first, first + n - 1
    h["CHANTYPE"] = ("PI", "channels are PI (gain-corrected)")
    h["DETCHANS"] = (n, "number of channels")
    _obs_cards(h, meta)
    return hdu


def _primary(meta):
    from .headers import creator_cards
    hdu = fits.PrimaryHDU()
    _obs_cards(hdu.header, meta)
    creator_cards(hdu.header)
    return hdu


def spectrum_hdulist(channels, counts, *, exposure, width, meta, combination, mask,
                     respfile="NONE", ancrfile="NONE", area=None, gti=None):
    """A type I PHA file (OGIP/92-007): ``SPECTRUM``, ``EBOUNDS`` and ``GTI``.

    Parameters
    ----------
    channels, counts : ndarray of int
        ``PI`` channels (those of the event file) and accepted counts.
    exposure : `~astropy.units.Quantity` [time]
    width : `~astropy.units.Quantity` [energy]
        ``PI`` channel width.
    meta : dict
        Event file header (observation keywords are copied).
    combination : str
        Filter combination; written as ``FILTCOMB`` with its ``STATUS`` mask
        ``STATMASK``.
    respfile, ancrfile : str
        Names of the RMF and ARF (``'NONE'``).
    area : `~astropy.units.Quantity` [area], optional
        Detector area (``DETAREA``).
    gti : `~astropy.table.Table`, optional
        Good time intervals of the event file; written as a ``GTI``
        extension when the file has a time reference (``MJDREF`` or
        ``MJDREFI``).
    """
    from .ogip import gti_hdu
    n = len(channels)
    cols = [fits.Column("CHANNEL", "J", array=np.asarray(channels, np.int32)),
            fits.Column("COUNTS", "J", unit="count", array=np.asarray(counts, np.int32)),
            fits.Column("QUALITY", "I", array=np.zeros(n, np.int16)),
            fits.Column("BACKSCAL", "E", array=np.ones(n, np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols)
    h = hdu.header
    _ogip(h, "SPECTRUM", "SPECTRUM", "TOTAL", "COUNT", "TYPE:I", version="1.2.1")
    h["TLMIN1"], h["TLMAX1"] = int(channels[0]), int(channels[-1])
    _obs_cards(h, meta)
    h["EXPOSURE"] = (float(u.Quantity(exposure, u.s).value), "[s] exposure time")
    h["AREASCAL"] = (1.0, "area scaling factor")
    # no BACKFILE card: gammapy (2.1) opens BACKFILE = 'NONE' as a file name; XSPEC and
    # Sherpa take a missing BACKFILE as none
    h["CORRFILE"] = ("NONE", "no correction file")
    h["CORRSCAL"] = (1.0, "correction scaling factor")
    h["RESPFILE"] = (respfile, "redistribution matrix (RMF)")
    h["ANCRFILE"] = (ancrfile, "ancillary response (ARF)")
    h["POISSERR"] = (True, "Poisson errors apply")
    h["SYS_ERR"] = (0.0, "no systematic error")
    h["GROUPING"] = (0, "no grouping")
    h["CHANTYPE"] = ("PI", "channels are PI (gain-corrected)")
    h["DETCHANS"] = (n, "number of channels")
    h["PIWIDTH"] = (float(width.to_value(u.eV)), "[eV] width of one PI channel")
    h["FILTCOMB"] = (combination[:68], "xcrfilter filters whose accepted events")
    h["STATMASK"] = (int(mask), "STATUS bits required 0 (-1: all bits)")
    if area is not None:
        h["DETAREA"] = (float(u.Quantity(area, u.cm ** 2).value), "[cm2] detector area")
    hdus = [_primary(meta), hdu, _ebounds_hdu(int(channels[0]), n, width, meta)]
    if gti is not None and (card_value(meta, "MJDREF") is not None
                            or card_value(meta, "MJDREFI") is not None):
        # a GTI without a time reference (MJDREF) is not read by gammapy: left out
        shared = fits.Header()
        _obs_cards(shared, meta)
        hdus.append(gti_hdu(gti, shared))
    return fits.HDUList(hdus)


def line_sigma(energy, *, fano, pair_energy, read_noise):
    """rms of a line at ``energy``: ``sqrt(F E w + (sigma_read w)^2)`` (single-pixel)."""
    e = u.Quantity(energy, u.eV).value
    w = u.Quantity(pair_energy, u.eV / u.electron).value
    rn = u.Quantity(read_noise, u.electron).value
    return np.sqrt(fano * e * w + (rn * w) ** 2) * u.eV


def true_energy_grid(first, n, width):
    """True-energy bin edges of the RMF and ARF: 20 eV steps up to the top PI channel."""
    top = ((first + n) * width).to_value(u.eV)
    step = TRUE_ENERGY_STEP.to_value(u.eV)
    return np.arange(TRUE_ENERGY_MIN.to_value(u.eV), top + step / 2, step) * u.eV


def response_hdulist(first, n, width, *, fano, pair_energy, read_noise, meta):
    """A diagonal-Gaussian RMF (CAL/GEN/92-002): ``MATRIX`` and ``EBOUNDS``.

    A photon of true energy ``E`` lands in ``PI`` channel ``c`` with the
    probability of a Gaussian of mean ``E`` and rms :func:`line_sigma`
    (Fano and read noise of the detector model) over the channel's energy
    range, cut at :data:`N_SIGMA` and renormalised; energies above the top
    channel's lower edge go to the top (overflow) channel.
    """
    from scipy.special import erf
    edges = true_energy_grid(first, n, width).to_value(u.eV)
    w = width.to_value(u.eV)
    chan_lo = np.arange(first, first + n) * w
    f_chan, n_chan, matrix = [], [], []
    for e_lo, e_hi in zip(edges[:-1], edges[1:]):
        e = 0.5 * (e_lo + e_hi)
        s = line_sigma(e * u.eV, fano=fano, pair_energy=pair_energy,
                       read_noise=read_noise).value
        c0 = max(int(np.floor((e - N_SIGMA * s) / w)) - first, 0)
        c1 = min(int(np.floor((e + N_SIGMA * s) / w)) - first, n - 1)
        lo = chan_lo[c0:c1 + 1]
        cdf = 0.5 * (1 + erf((np.append(lo, lo[-1] + w) - e) / (np.sqrt(2) * s)))
        p = np.diff(cdf)
        if c1 == n - 1:
            p[-1] += 1 - cdf[-1]
        p = p / p.sum()
        f_chan.append(np.array([c0 + first], np.int32))
        n_chan.append(np.array([c1 - c0 + 1], np.int32))
        matrix.append(p.astype(np.float32))
    kev = edges / 1e3
    cols = [fits.Column("ENERG_LO", "E", unit="keV", array=kev[:-1].astype(np.float32)),
            fits.Column("ENERG_HI", "E", unit="keV", array=kev[1:].astype(np.float32)),
            fits.Column("N_GRP", "I", array=np.ones(len(kev) - 1, np.int16)),
            fits.Column("F_CHAN", "PJ()", array=np.array(f_chan, dtype=object)),
            fits.Column("N_CHAN", "PJ()", array=np.array(n_chan, dtype=object)),
            fits.Column("MATRIX", "PE()", array=np.array(matrix, dtype=object))]
    hdu = fits.BinTableHDU.from_columns(cols)
    h = hdu.header
    _ogip(h, "MATRIX", "RESPONSE", "RSP_MATRIX", "REDIST", version="1.3.0")
    h["TLMIN4"], h["TLMAX4"] = first, first + n - 1
    h["CHANTYPE"] = ("PI", "channels are PI (gain-corrected)")
    h["DETCHANS"] = (n, "number of channels")
    h["LO_THRES"] = (0.0, "matrix elements below it are not stored")
    h["FANO"] = (float(fano), "Fano factor of the Gaussian")
    h["RDNOISE"] = (float(u.Quantity(read_noise, u.electron).value),
                    "[electron] read noise rms of the Gaussian")
    h["PAIRENER"] = (float(u.Quantity(pair_energy, u.eV / u.electron).value),
                     "[eV/electron] pair creation energy")
    _obs_cards(h, meta)
    return fits.HDUList([_primary(meta), hdu, _ebounds_hdu(first, n, width, meta)])


def arf_hdulist(first, n, width, *, area, meta):
    """An ARF (CAL/GEN/92-002 ``SPECRESP``) flat at the detector's geometric ``area``.

    No mirror, filter or quantum efficiency: the ARF makes a fitted
    normalisation a level per cm2 of detector, as
    :func:`xcrfilter.io.spectra.background_levels` quotes it.
    """
    kev = true_energy_grid(first, n, width).to_value(u.keV)
    a = float(u.Quantity(area, u.cm ** 2).value)
    cols = [fits.Column("ENERG_LO", "E", unit="keV", array=kev[:-1].astype(np.float32)),
            fits.Column("ENERG_HI", "E", unit="keV", array=kev[1:].astype(np.float32)),
            fits.Column("SPECRESP", "E", unit="cm**2",
                        array=np.full(len(kev) - 1, a, np.float32))]
    hdu = fits.BinTableHDU.from_columns(cols)
    _ogip(hdu.header, "SPECRESP", "RESPONSE", "SPECRESP", version="1.1.0")
    _obs_cards(hdu.header, meta)
    hdu.header["DETAREA"] = (a, "[cm2] geometric detector area (flat)")
    return fits.HDUList([_primary(meta), hdu])


def write_hdulist(hdul, path, *, overwrite=False, history=()):
    """Write ``hdul`` atomically with ``CREATOR``, ``DATE``, HISTORY and checksums."""
    from .headers import creator_cards, write_hdul
    for hdu in hdul[1:]:
        creator_cards(hdu.header)
        for line in history:
            hdu.header.add_history(line)
    write_hdul(hdul, os.fspath(path), overwrite, checksum=True)


def require_regions():
    """The ``regions`` package (an optional dependency), or an ImportError saying so."""
    try:
        import regions
    except ImportError:
        raise ImportError("--regions needs the regions package: pip install regions") from None
    return regions


def regions_of(events, ok):
    """ds9 regions of the events: accepted green circles, rejected red crosses.

    Image coordinates are 1-based: ``RAWX`` 0 is x = 1.  Needs the optional
    ``regions`` package.
    """
    require_regions()
    from regions import CirclePixelRegion, PixCoord, PointPixelRegion, RegionVisual, Regions
    x = np.asarray(events["RAWX"], dtype=float) + 1
    y = np.asarray(events["RAWY"], dtype=float) + 1
    out = []
    for xi, yi, good in zip(x, y, ok):
        if good:
            out.append(CirclePixelRegion(PixCoord(xi, yi), radius=1.5,
                                         meta={"tag": ["accepted"]},
                                         visual=RegionVisual(color="green")))
        else:
            out.append(PointPixelRegion(PixCoord(xi, yi), meta={"tag": ["rejected"]},
                                        visual=RegionVisual(color="red", marker="x")))
    return Regions(out)


def write_regions(events, ok, path, *, overwrite=False):
    """Write :func:`regions_of` as a ds9 region file (image coordinates), atomically."""
    from .outputs import atomic_write
    regs = regions_of(events, ok)
    with atomic_write(os.fspath(path), overwrite=overwrite) as part:
        regs.write(part, format="ds9", overwrite=True)
