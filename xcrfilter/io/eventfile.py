"""OGIP event files: :func:`write_events`, :func:`read_events`, :func:`read_gti`.

Event files hold ``EVENTS`` and ``GTI`` binary table extensions following
OGIP/93-003 as :mod:`xcrfilter.io.ogip` states the conventions (``TIME``,
``TUNITn``, ``TLMINn``/``TLMAXn``, ``HDUCLASS`` keywords, checksums); the
header keeps every threshold and choice of the filters as keyword/comment
pairs plus HISTORY lines.  Written atomically (`xcrfilter.io.outputs`).
"""
from __future__ import annotations

import os
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.utils.exceptions import AstropyUserWarning

from .headers import (add_text_lines, apply_meta, check_output_path, creator_cards, header_to_meta,
                      input_file_cards, is_path, write_hdul)
from ..registry import status_bits

__all__ = ["write_events", "read_events", "read_gti"]


def write_events(events, path, *, overwrite=False, input_files=None, history=None, gti=None):
    """Write an event table as an OGIP event file (EVENTS and GTI extensions).

    The file holds a primary HDU without data, a binary table extension
    ``EXTNAME = 'EVENTS'`` (``HDUCLASS = 'OGIP'``, ``HDUCLAS1 = 'EVENTS'``,
    ``HDUCLAS2 = 'ALL'`` since filters never drop rows) and, when the
    observation time is known, a ``GTI`` extension (``HDUCLAS1 = 'GTI'``),
    following OGIP/93-003 (see :mod:`xcrfilter.io.ogip` for the conventions):

    * ``TUNITn`` for every column with a unit; energy columns (``ENERGY``,
      ``PHAS``, ...) are written in eV, integer ``PHA`` and ``PI`` columns
      get ``TUNITn = 'chan'``;
    * ``TLMINn``/``TLMAXn`` on every integer column
      (:func:`xcrfilter.io.ogip.column_limits`);
    * ``PHAS`` with ``TDIMn = '(5,5)'``;
    * ``STATUSn`` keywords naming every STATUS bit and its meaning
      (:func:`xcrfilter.io.ogip.status_bit_cards`);
    * a ``TIME`` column (``TSTART + FRAME * TIMEDEL``) when the table has
      none but ``meta`` has ``TSTART`` and ``TIMEDEL``;
    * the observation and time keywords (``TELESCOP``, ``INSTRUME``,
      ``DETNAM``, ``OBJECT``, ``DATE-OBS``, ``TIMESYS``, ``MJDREF``,
      ``TSTART``, ...) in every HDU;
    * ``CHECKSUM``/``DATASUM`` in every HDU.

    Parameters
    ----------
    events : `~astropy.table.Table` or `~astropy.table.QTable`
        One row per event (columns as in ``xcrfilter.events.find_events``).
        ``events.meta`` keywords are written to the ``EVENTS`` header: plain
        values with their comments in ``meta["CARD_COMMENTS"]`` (as
        :func:`xcrfilter.meta.set_card` records them), or ``(value,
        comment)`` tuples (scalar Quantities are written as their value with
        ``[unit]`` prepended to the comment); ``HISTORY``
        and ``COMMENT`` are lists of str; ``GTI`` may hold a table of good
        time intervals (``START``, ``STOP``, as :func:`xcrfilter.io.ogip.add_time`
        makes).  ``FRMCOLS``/``FRMROWS`` give the frame shape for
        ``TLMIN``/``TLMAX``.
    path : str or path-like
        Output file.
    overwrite : bool, optional
        Replace an existing file.  Default False.
    input_files : list of str, optional
        Input frame files, written as ``INFILE01`` ... ``INFILE99`` (later
        ones as COMMENT lines; same keywords as ``find_events`` sets) and
        ``NINFILES``.
    history : str or list of str, optional
        Extra HISTORY lines appended after those of ``events.meta``.
    gti : `~astropy.table.Table`, optional
        Good time intervals (``START``, ``STOP`` in s); default
        ``events.meta['GTI']``, else one interval ``TSTART`` .. ``TSTOP``
        when both keywords are in ``meta``, else no GTI extension.

    Raises
    ------
    TypeError
        If ``events`` is not a Table or a meta value is not representable.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Notes
    -----
    ``CREATOR`` (``xcrfilter <version>``) and ``DATE`` (UTC) are set in every
    header.  HISTORY/COMMENT text longer than 72 characters is split over
    several cards, every chunk but the last ending with ``&``;
    :func:`read_events` joins them again.  The input table is not modified.
    """
    from . import ogip

    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table or QTable, got "
                        f"{type(events).__name__}.")
    path = check_output_path(path, overwrite)
    table = Table(events, copy=True)
    meta = dict(events.meta)
    meta_gti = meta.pop("GTI", None)
    gti = meta_gti if gti is None else gti
    table.meta = {}
    for name in table.colnames:
        col = table[name]
        if col.unit is not None and col.unit != u.eV and u.Unit(col.unit).is_equivalent(u.eV):
            table[name] = Table.Column(col.quantity.to_value(u.eV).astype(col.dtype),
                                       name=name, unit=u.eV, description=col.description)
    _complete_time(table, meta)
    if "STATUS" in table.colnames:
        ogip.status_bit_cards(meta, status_bits())
    if "PHAS" in table.colnames and np.shape(table["PHAS"])[1:] == (25,):
        table["PHAS"] = table["PHAS"].reshape(len(table), 5, 5)
    for name in ("PHA", "PI"):
        if name in table.colnames and table[name].unit is None \
                and table[name].dtype.kind in "iu":
            table[name].unit = u.chan
    hdu = fits.table_to_hdu(table)
    header = hdu.header
    header["EXTNAME"] = ("EVENTS", "name of this binary table extension")
    header["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    header["HDUCLAS1"] = ("EVENTS", "extension contains events")
    header["HDUCLAS2"] = ("ALL", "all events; STATUS bits mark rejections")
    creator_cards(header)
    apply_meta(header, {k: v for k, v in meta.items() if str(k).upper() not in
                        ("HISTORY", "COMMENT")},
               skip=("EXTNAME", "HDUCLASS", "HDUCLAS1", "HDUCLAS2", "CREATOR", "DATE"))
    if input_files:
        input_file_cards(header, input_files)
    ogip.apply_column_keywords(header, table, meta)
    if "COMMENT" in meta:
        apply_meta(header, {"COMMENT": meta["COMMENT"]})
    lines = list(meta.get("HISTORY", []))
    if isinstance(lines, str):
        lines = [lines]
    if history:
        lines += [history] if isinstance(history, str) else list(history)
    add_text_lines(header, "HISTORY", lines)

    shared = fits.Header()
    for key in ogip.OBSERVATION_KEYWORDS + ogip.TIME_KEYWORDS + _TIME_CARDS:
        if key in header:
            shared[key] = (header[key], header.comments[key])
    primary = fits.PrimaryHDU()
    primary.header.extend(shared, end=True)
    creator_cards(primary.header)
    hdus = [primary, hdu]
    if gti is None and "TSTART" in header and "TSTOP" in header:
        gti = ogip.gti_table([float(header["TSTART"])], [float(header["TSTOP"])])
    if gti is not None:
        ghdu = ogip.gti_hdu(gti, shared)
        creator_cards(ghdu.header)
        hdus.append(ghdu)
    write_hdul(fits.HDUList(hdus), path, overwrite, checksum=True)


#: Time keywords of the EVENTS header copied to the primary and GTI headers.
_TIME_CARDS = ("TIMEUNIT", "TSTART", "TSTOP", "TELAPSE", "ONTIME", "LIVETIME", "EXPOSURE",
               "DEADC", "TIMEDEL", "TIMEPIXR")


def _complete_time(table, meta):
    """Add ``TIME = TSTART + FRAME * TIMEDEL`` [s] when missing and both keywords exist."""
    from ..meta import card_value
    tstart, dt = card_value(meta, "TSTART"), card_value(meta, "TIMEDEL")
    if "TIME" in table.colnames or "FRAME" not in table.colnames \
            or tstart is None or dt is None:
        return
    frames = np.asarray(table["FRAME"], dtype=np.float64)
    table["TIME"] = Table.Column(float(tstart) + frames * float(dt), unit=u.s)


def read_gti(path):
    """Good time intervals of an event file (the ``GTI`` or ``STDGTI`` extension).

    Returns
    -------
    `~astropy.table.QTable` or None
        ``START`` and ``STOP`` in s (OGIP/93-003 Sec. 6.3); None when the
        file has no GTI extension.
    """
    from .ogip import gti_table
    with fits.open(os.fspath(path), mode="readonly", memmap=False) as hdul:
        for hdu in hdul[1:]:
            if hdu.name in ("GTI", "STDGTI") or \
                    str(hdu.header.get("HDUCLAS1", "")).upper() == "GTI":
                return gti_table(np.array(hdu.data["START"], dtype=np.float64),
                                 np.array(hdu.data["STOP"], dtype=np.float64))
    return None


def _find_events_hdu(hdul, where):
    if "EVENTS" in hdul:
        return hdul["EVENTS"]
    for hdu in hdul:
        if isinstance(hdu, fits.BinTableHDU) and \
                str(hdu.header.get("HDUCLAS1", "")).upper() == "EVENTS":
            return hdu
    raise ValueError(f"path: {where!r} has no EVENTS binary table extension "
                     f"(EXTNAME = 'EVENTS' or HDUCLAS1 = 'EVENTS').")


def _fits_size_is_odd(where):
    """True when an uncompressed file is not a whole number of FITS blocks."""
    with open(where, "rb") as fh:
        gzipped = fh.read(2) == b"\x1f\x8b"
    return not gzipped and os.path.getsize(where) % 2880 != 0


def _check_complete(hdul, index, where):
    """OSError naming ``where`` if the data of HDU ``index`` runs past the end of the file."""
    info = hdul.fileinfo(index)
    if getattr(info["file"], "compression", None):  # gzip: sizes are not comparable
        return
    have = os.path.getsize(where) - info["datLoc"]
    if have < hdul[index].size:
        raise OSError(f"the file is truncated: the events table needs {hdul[index].size} "
                      f"bytes, the file holds {max(have, 0)}")


def read_events(path):
    """Read an event file written by :func:`write_events` (or any OGIP event file).

    Parameters
    ----------
    path : str or path-like
        FITS file with an ``EVENTS`` binary table extension.

    Returns
    -------
    `~astropy.table.QTable`
        Columns with their units (``TUNITn``) as Quantities, native byte
        order (integer ``PHA``/``PI`` columns in ``chan`` as plain integers;
        a 5x5 ``PHAS`` as shape (n, 25), row-major, centre at index 12);
        ``meta`` holds every non-structural keyword of the ``EVENTS`` header
        as a plain value, as astropy reads a table (``meta["EVTTHR"] * u.eV``
        works), their comments in ``meta["CARD_COMMENTS"]``
        (:func:`xcrfilter.meta.card_comment`), and ``HISTORY`` /
        ``COMMENT`` as lists of str.  Column
        keywords (``TTYPEn``, ``TUNITn``, ``TLMINn``, ...) are not copied to
        ``meta``: :func:`write_events` regenerates them.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file has no ``EVENTS`` extension, or is a directory, a device
        or a FIFO.
    OSError
        If the file is not FITS, or is truncated.
    """
    if not is_path(path):
        raise TypeError(f"path must be a file path (str or pathlib.Path), got "
                        f"{type(path).__name__}.")
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"path: event file {where!r} does not exist.")
    from .outputs import check_inputs
    try:
        check_inputs([where])  # a directory, device or FIFO: refused before reading
    except ValueError as exc:
        raise ValueError(f"path: event {exc}") from None
    with warnings.catch_warnings():
        # astropy only warns about a truncated file: the checks below raise instead
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            with fits.open(where, mode="readonly", memmap=False) as hdul:
                hdu = _find_events_hdu(hdul, where)
                _check_complete(hdul, hdul.index_of(hdu), where)
                header = hdu.header.copy()
                raw = Table.read(hdu, unit_parse_strict="silent")
        except ValueError as exc:
            if "has no EVENTS" in str(exc) and _fits_size_is_odd(where):
                raise OSError(f"path: event file {where!r} is truncated or corrupt (its size, "
                              f"{os.path.getsize(where)} bytes, is not a whole number of "
                              "2880-byte FITS blocks).") from None
            raise
        except OSError as exc:
            raise OSError(f"path: event file {where!r} is not a readable FITS file "
                          f"({exc}).") from None
    table = QTable()
    for i, name in enumerate(raw.colnames, start=1):
        data = np.array(raw[name])
        if data.dtype.byteorder not in ("=", "|"):
            data = data.astype(data.dtype.newbyteorder("="))
        unit = raw[name].unit
        if name.upper() == "PHAS" and data.shape[1:] == (5, 5):
            data = data.reshape(len(data), 25)
        if unit == u.chan and data.dtype.kind in "iu":
            table[name] = data
        elif unit is not None and not isinstance(unit, u.UnrecognizedUnit):
            table[name] = u.Quantity(data, unit, copy=False)
        else:
            table[name] = data
    table.meta = header_to_meta(header)
    return table
