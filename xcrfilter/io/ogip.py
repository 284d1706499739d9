"""OGIP / HEASARC conventions of the event files: channels, keywords, HDU classes.

The time conventions (OGIP/93-003: ``TIME``, time keywords, GTI) are in
:mod:`xcrfilter.io.timing`.  Sources of the conventions used here:

* OGIP/93-001 (George & Angelini, units in OGIP FITS files): ``TUNITn``
  strings (``eV``, ``s``, ``chan``).
* The HEASARC ``HDUCLASn`` classification: ``HDUCLASS = 'OGIP'``,
  ``HDUCLAS1 = 'EVENTS'`` or ``'GTI'``.
* The FITS checksum convention (FITS Standard 4.0, Appendix J):
  ``CHECKSUM``/``DATASUM`` in every HDU (written by :func:`xcrfilter.io.eventfile.write_events`).
* ``PHA`` and ``PI`` as OGIP spectral files use them (OGIP/92-007): ``PHA`` the
  uncalibrated summed pulse height in detector channels, ``PI`` the
  gain-corrected channel; here ``PI`` channels are :data:`PI_CHANNEL_WIDTH`
  (5 eV) wide, channels 0 .. ``PI_CHANNELS - 1``.
"""
from __future__ import annotations

import re

import astropy.units as u
import numpy as np
from astropy.io import fits

from ..meta import card_value, set_card

__all__ = ["PI_CHANNEL_WIDTH", "PI_CHANNELS", "OBSERVATION_KEYWORDS", "TIME_KEYWORDS",
           "FRAME_TIME_KEYWORDS", "observation_cards",
           "pi_channels", "pha_channels", "status_bit_cards", "column_limits",
           "apply_column_keywords", "set_hduclass"]

#: Width of one ``PI`` channel (channel ``c`` holds ``c * 5 eV <= E < (c + 1) * 5 eV``).
PI_CHANNEL_WIDTH = 5 * u.eV
#: Number of ``PI`` channels (0 .. 4095, up to 20.48 keV; higher energies are
#: put in the top channel, the overflow channel).
PI_CHANNELS = 4096

#: Keywords of the observation copied from the input header to every HDU.
OBSERVATION_KEYWORDS = ("TELESCOP", "INSTRUME", "DETNAM", "FILTER", "DATAMODE", "OBJECT",
                        "OBS_ID", "OBSERVER", "RA_NOM", "DEC_NOM", "EQUINOX", "RADESYS",
                        "DATE-OBS", "DATE-END")
#: Time-definition keywords (OGIP/93-003 Sec. 4.2) copied from the input header.
TIME_KEYWORDS = ("TIMESYS", "MJDREF", "MJDREFI", "MJDREFF", "TIMEREF", "TASSIGN",
                 "CLOCKAPP", "TIMEZERO")
#: Keywords giving the frame time, in order of precedence: ``TIMEDEL``
#: (OGIP/93-003), ``FRAMTIME`` (Suzaku XIS, this package's simulator) and
#: ``TEXPFRAM`` (the Athena WFI Geant4 background team's frame files).
FRAME_TIME_KEYWORDS = ("TIMEDEL", "FRAMTIME", "TEXPFRAM")


def observation_cards(header):
    """``meta``-style cards of the observation and time keywords of ``header``.

    Returns
    -------
    dict
        Keyword to ``(value, comment)`` for each of :data:`OBSERVATION_KEYWORDS`
        and :data:`TIME_KEYWORDS` present in ``header`` (``TSTART`` is
        handled by :func:`add_time`).
    """
    out = {}
    if header is None:
        return out
    for key in OBSERVATION_KEYWORDS + TIME_KEYWORDS:
        if key in header:
            comment = header.comments[key] if isinstance(header, fits.Header) else ""
            out[key] = (header[key], comment) if comment else header[key]
    return out


def pi_channels(energy):
    """``PI`` channel of each energy: ``floor(E / 5 eV)``, clipped to 0 .. 4095.

    Parameters
    ----------
    energy : `~astropy.units.Quantity` [energy], shape (n,)

    Returns
    -------
    ndarray of int16, shape (n,)

    Raises
    ------
    ValueError
        If an energy is NaN.
    """
    e = np.asarray(energy.to_value(u.eV), dtype=np.float64)
    if np.isnan(e).any():
        raise ValueError(f"energy: {int(np.isnan(e).sum())} NaN values; PI needs finite "
                         "energies.")
    chan = np.floor(e / PI_CHANNEL_WIDTH.to_value(u.eV))
    return np.clip(chan, 0, PI_CHANNELS - 1).astype(np.int16)


def pha_channels(energy, channel_width):
    """``PHA``: summed pulse height in detector channels, ``round(E / width)``.

    Parameters
    ----------
    energy : `~astropy.units.Quantity` [energy], shape (n,)
        Summed event energy (the same sum as ``ENERGY``).
    channel_width : `~astropy.units.Quantity` [energy / adu] or [energy]
        Energy of one channel: the gain (eV/adu) for frames in adu, 1 eV for
        frames already in energy units.

    Returns
    -------
    ndarray of int32, shape (n,), values >= 0
    """
    width = channel_width
    if width.unit.is_equivalent(u.eV / u.adu):
        width = width * u.adu
    w = float(width.to_value(u.eV))
    e = np.asarray(energy.to_value(u.eV), dtype=np.float64)
    return np.clip(np.rint(e / w), 0, np.iinfo(np.int32).max).astype(np.int32)


def status_bit_cards(meta, bits):
    """Record the meaning of every STATUS bit in ``meta`` (keywords ``STATUSn``).

    Parameters
    ----------
    meta : dict
        ``Table.meta`` of the events.
    bits : dict
        ``{NAME: (bit, meaning, owner)}``, e.g.
        :func:`xcrfilter.registry.status_bits`: keyword ``STATUSn`` holds
        the bit's name, its comment the meaning.
    """
    for name, (bit, doc, _) in bits.items():
        set_card(meta, f"STATUS{bit}", name, doc[:47])


def _status_max(values, meta):
    """Largest legal STATUS: every bit named by a ``STATUSn`` card of ``meta`` set."""
    declared = [int(k[6:]) for k in meta if re.fullmatch(r"STATUS\d+", str(k).upper())]
    top = (1 << (max(declared) + 1)) - 1 if declared else 0
    return max(top, int(values.max()) if len(values) else 0)


def column_limits(table, meta):
    """``TLMIN``/``TLMAX`` (legal range, OGIP/93-003) of every integer column.

    Known columns get their defined range: ``RAWX`` 0 .. ``FRMCOLS`` - 1,
    ``RAWY`` 0 .. ``FRMROWS`` - 1, ``FRAME`` 0 .. ``NFRAMES`` - 1, ``GRADE``
    0 .. 7, ``PATTERN`` 0 .. 13, ``PI`` 0 .. 4095, ``STATUS`` 0 .. 2**(highest
    registered bit + 1) - 1.  Every range is widened to include the data;
    other integer columns get the range of their data (0 .. 0 when empty).

    Returns
    -------
    dict
        Column name to (tlmin, tlmax) Python ints.
    """
    limits = {}
    fixed = {"GRADE": (0, 7), "PATTERN": (0, 13), "PI": (0, PI_CHANNELS - 1)}
    sizes = {"RAWX": card_value(meta, "FRMCOLS"), "RAWY": card_value(meta, "FRMROWS"),
             "FRAME": card_value(meta, "NFRAMES")}
    for name in table.colnames:
        col = np.asarray(table[name])
        if col.dtype.kind not in "iu" or col.ndim != 1:
            continue
        lo = int(col.min()) if len(col) else 0
        hi = int(col.max()) if len(col) else 0
        key = name.upper()
        if key in fixed:
            a, b = fixed[key]
            lo, hi = min(a, lo), max(b, hi)
        elif key == "STATUS":
            lo, hi = min(0, lo), _status_max(col, meta)
        elif key == "PHA":
            mip = card_value(meta, "MIPTHR")
            width = card_value(meta, "PHAWIDTH")
            lo = min(0, lo)
            if mip is not None and width:
                hi = max(hi, int(np.ceil(float(mip) / float(width))))
        elif sizes.get(key) is not None:
            lo, hi = min(0, lo), max(int(sizes[key]) - 1, hi)
        limits[name] = (lo, hi)
    return limits


def apply_column_keywords(header, table, meta):
    """Write ``TLMINn``/``TLMAXn``, ``TUNITn = 'chan'`` (PHA, PI) and the PHAS ``TDIMn``.

    ``PHAS`` (25 values per event, row-major, centre at index 12) gets
    ``TDIMn = '(5,5)'``: FITS lists the fastest axis first, so the first
    axis is RAWX and the second RAWY.
    """
    names = [c.upper() for c in table.colnames]
    for name, (lo, hi) in column_limits(table, meta).items():
        idx = names.index(name.upper()) + 1
        after = f"TUNIT{idx}" if f"TUNIT{idx}" in header else f"TFORM{idx}"
        header.set(f"TLMIN{idx}", lo, f"minimum legal value of {name}", after=after)
        header.set(f"TLMAX{idx}", hi, f"maximum legal value of {name}", after=f"TLMIN{idx}")
    for name in ("PHA", "PI"):
        if name in names:
            idx = names.index(name) + 1
            kind = np.asarray(table[table.colnames[idx - 1]]).dtype.kind
            if f"TUNIT{idx}" not in header and kind in "iu":
                header.set(f"TUNIT{idx}", "chan", "detector channel (OGIP/93-001)",
                           after=f"TFORM{idx}")
    if "PHAS" in names:
        idx = names.index("PHAS") + 1
        if np.shape(table[table.colnames[idx - 1]])[1:] in ((25,), (5, 5)):
            header.set(f"TDIM{idx}", "(5,5)", "5x5 island, RAWX fastest",
                       after=f"TFORM{idx}")


def set_hduclass(header, extname, *classes, version=None):
    """Set ``EXTNAME``, ``HDUCLASS = 'OGIP'``, ``HDUCLAS1``... (and ``HDUVERS``) in ``header``.

    The HEASARC classification of an extension, in one place for every
    writer (event files, GTI, spectra and responses).  ``extname`` and each
    of ``classes`` are a value or a ``(value, comment)`` pair.
    """
    header["EXTNAME"] = extname
    header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    for i, value in enumerate(classes, start=1):
        header[f"HDUCLAS{i}"] = value
    if version is not None:
        header["HDUVERS"] = version
