"""OGIP / HEASARC conventions of the event files: time, GTI, channels, keywords.

Sources of the conventions used here:

* OGIP/93-003 (Angelini, Pence & Tennant, "The Proposed Timing FITS File
  Format for High Energy Astrophysics Data"): the ``TIME`` column, the time
  keywords ``TIMESYS``, ``MJDREF`` (or ``MJDREFI`` + ``MJDREFF``),
  ``TIMEUNIT``, ``TIMEREF``, ``TSTART``/``TSTOP``, ``TIMEDEL``,
  ``TIMEPIXR``, the exposure keywords ``ONTIME``, ``LIVETIME``,
  ``EXPOSURE``, ``DEADC`` and the ``GTI`` extension (``START``/``STOP``).
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

Frames are time-stamped at their start: ``TIME = TSTART + FRAME * TIMEDEL``
with ``TIMEPIXR = 0`` (OGIP/93-003 Sec. 4.3), unless the input lists the
start time of every frame.
"""
from __future__ import annotations

import re
import warnings

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table
from astropy.utils.exceptions import AstropyUserWarning

from ..meta import add_history, card_value, set_card

__all__ = ["PI_CHANNEL_WIDTH", "PI_CHANNELS", "OBSERVATION_KEYWORDS", "TIME_KEYWORDS",
           "FRAME_TIME_KEYWORDS", "frame_time_from_header", "observation_cards",
           "pi_channels", "pha_channels", "add_time", "gti_table", "status_bit_cards",
           "column_limits", "read_frame_times"]

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

_TIME_UNITS = {"s": u.s, "d": u.day, "ms": u.ms}


def _header_get(header, key):
    if header is None:
        return None
    if isinstance(header, fits.Header):
        return header.get(key)
    return card_value(header, key)


def _time_unit(header):
    text = _header_get(header, "TIMEUNIT")
    if text is None:
        return u.s
    unit = _TIME_UNITS.get(str(text).strip().lower())
    if unit is None:
        raise ValueError(f"TIMEUNIT = {text!r} is not one of 's', 'd', 'ms' (OGIP/93-003).")
    return unit


def frame_time_from_header(header, frame_time=None):
    """Frame time: ``frame_time`` if given, else the first of :data:`FRAME_TIME_KEYWORDS`.

    Parameters
    ----------
    header : `~astropy.io.fits.Header` or dict or None
        Input header (``TIMEUNIT`` gives the unit of ``TIMEDEL``, default s;
        ``FRAMTIME`` and ``TEXPFRAM`` are in s).
    frame_time : `~astropy.units.Quantity` [time], optional
        Overrides the header (the ``--frame-time`` option).

    Returns
    -------
    `~astropy.units.Quantity` [s] or None
        None when neither the argument nor a keyword gives it.

    Raises
    ------
    TypeError, astropy.units.UnitConversionError
        If ``frame_time`` is not a time Quantity.
    ValueError
        If the frame time is not finite and positive.
    """
    if frame_time is not None:
        if not isinstance(frame_time, u.Quantity):
            raise TypeError(f"frame_time must be a Quantity in time units (e.g. 5 * u.ms), "
                            f"got {frame_time!r}.")
        value = frame_time.to(u.s)
        where = "frame_time"
    else:
        value = None
        for key in FRAME_TIME_KEYWORDS:
            raw = _header_get(header, key)
            if raw is not None:
                unit = _time_unit(header) if key == "TIMEDEL" else u.s
                value = (float(raw) * unit).to(u.s)
                where = f"keyword {key}"
                break
        if value is None:
            return None
    if not (np.isfinite(value.value) and value.value > 0):
        raise ValueError(f"{where}: the frame time must be finite and positive, got {value}.")
    return value


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


def read_frame_times(path, n_frames):
    """Start time of every frame from a table extension of a frame file.

    A binary table extension (``EXTNAME`` ``FRAMES`` or ``TIMES``, else the
    first binary table) with a ``TIME`` column of ``n_frames`` rows, or with
    ``FRAME`` and ``TIME`` columns, supplies per-frame times.

    Returns
    -------
    `~astropy.units.Quantity` [s], shape (n_frames,), or None
    """
    with fits.open(path, mode="readonly", memmap=False) as hdul:
        tables = [h for h in hdul[1:] if isinstance(h, fits.BinTableHDU)]
        tables.sort(key=lambda h: h.name not in ("FRAMES", "TIMES"))
        for hdu in tables:
            names = [n.upper() for n in hdu.columns.names]
            if "TIME" not in names:
                continue
            t = np.asarray(hdu.data["TIME"], dtype=np.float64)
            unit = _time_unit(hdu.header)
            if "FRAME" in names:
                f = np.asarray(hdu.data["FRAME"], dtype=np.int64)
                if len(f) != n_frames or set(f.tolist()) != set(range(n_frames)):
                    continue
                times = np.empty(n_frames)
                times[f] = t
                return times * unit
            if len(t) == n_frames:
                return t * unit
    return None


def _merge_intervals(start, stop, tol):
    order = np.argsort(start)
    start, stop = start[order], stop[order]
    out_start, out_stop = [start[0]], [stop[0]]
    for a, b in zip(start[1:], stop[1:]):
        if a <= out_stop[-1] + tol:
            out_stop[-1] = max(out_stop[-1], b)
        else:
            out_start.append(a)
            out_stop.append(b)
    return np.array(out_start), np.array(out_stop)


def gti_table(start, stop):
    """A GTI table (OGIP/93-003 Sec. 6.3): ``START``, ``STOP`` float64 in s."""
    gti = QTable()
    gti["START"] = np.asarray(u.Quantity(start, u.s).value, dtype=np.float64) * u.s
    gti["STOP"] = np.asarray(u.Quantity(stop, u.s).value, dtype=np.float64) * u.s
    return gti


def _mjdref_days(meta):
    ref = card_value(meta, "MJDREF")
    if ref is not None:
        return float(ref)
    refi, reff = card_value(meta, "MJDREFI"), card_value(meta, "MJDREFF")
    if refi is not None:
        return float(refi) + float(reff or 0.0)
    return None


def add_time(events, header=None, *, frame_time=None, frame_times=None, n_frames=None,
             warn=True):
    """Add the ``TIME`` column, time and exposure keywords and a GTI to an event table.

    Follows OGIP/93-003: ``TIME`` (float64, s) is the start of the event's
    frame, ``TSTART + FRAME * TIMEDEL`` (``TIMEPIXR = 0``), or the frame's
    own start time when ``frame_times`` lists it.  ``TSTART`` comes from the
    header (in ``TIMEUNIT``), else from ``frame_times[0]``, else 0 s.
    ``TSTOP`` is the end of the last frame.  The good time intervals are the
    frames (merged where contiguous); ``ONTIME`` is their sum, and with no
    dead time modelled ``LIVETIME = EXPOSURE = ONTIME`` and ``DEADC = 1``.
    When the header has no ``MJDREF``/``MJDREFI`` but has ``DATE-OBS``,
    ``MJDREFI``/``MJDREFF`` are set to ``DATE-OBS`` (read in ``TIMESYS``,
    default UTC, converted to TT) and ``TSTART`` to 0 s; when it has
    ``MJDREF`` but no ``DATE-OBS``, ``DATE-OBS``/``DATE-END`` are derived.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Event table with an integer ``FRAME`` column (0-based frame index);
        modified in place: ``TIME`` is added (or replaced), ``meta`` gains the
        keywords above plus the observation keywords of ``header``
        (:func:`observation_cards`) and ``meta['GTI']`` (a `~astropy.table.QTable`
        with ``START``, ``STOP`` in s).
    header : `~astropy.io.fits.Header`, optional
        Header of the input frames.
    frame_time : `~astropy.units.Quantity` [time], optional
        Overrides the header frame time (:func:`frame_time_from_header`).
    frame_times : `~astropy.units.Quantity` [time], shape (n_frames,), optional
        Start time of every frame (e.g. from :func:`read_frame_times`).
    n_frames : int, optional
        Number of frames observed (default: ``meta['NFRAMES']``, else the
        largest ``FRAME`` + 1).
    warn : bool, optional
        Warn when no frame time is known.  Default True.

    Returns
    -------
    bool
        True when times were added; False (with a warning, table untouched
        except for the observation keywords) when no frame time is known.

    Raises
    ------
    ValueError
        If ``frame_times`` has the wrong length or ``FRAME`` is out of range.
    """
    meta = events.meta
    for key, value in observation_cards(header).items():
        if key not in meta:
            value, comment = value if isinstance(value, tuple) else (value, "")
            set_card(meta, key, value, comment)
    dt = frame_time_from_header(header, frame_time)
    if dt is None:
        if not warn:
            return False
        warnings.warn("no frame time (TIMEDEL, FRAMTIME or TEXPFRAM keyword, or "
                      "--frame-time): the event file has no TIME column and no GTI.",
                      AstropyUserWarning, stacklevel=2)
        return False
    frames = np.asarray(events["FRAME"], dtype=np.int64)
    if n_frames is None:
        n_frames = card_value(meta, "NFRAMES")
    if n_frames is None:
        n_frames = int(frames.max()) + 1 if len(frames) else 0
    n_frames = int(n_frames)
    if len(frames) and (frames.min() < 0 or frames.max() >= n_frames):
        raise ValueError(f"FRAME values {frames.min()} .. {frames.max()} are outside "
                         f"0 .. {n_frames - 1} (n_frames = {n_frames}).")
    unit = _time_unit(header)
    dts = dt.to_value(u.s)
    tstart_kw = _header_get(header, "TSTART")
    if frame_times is not None:
        ft = u.Quantity(frame_times, u.s).to_value(u.s).astype(np.float64)
        if ft.shape != (n_frames,):
            raise ValueError(f"frame_times has shape {ft.shape}; expected ({n_frames},), "
                             f"one start time per frame.")
        starts = ft
        tstart = float(ft.min()) if n_frames else 0.0
    else:
        tstart = 0.0 if tstart_kw is None else float((float(tstart_kw) * unit).to_value(u.s))
        starts = tstart + np.arange(n_frames, dtype=np.float64) * dts
    if _mjdref_days(meta) is None and card_value(meta, "DATE-OBS") is not None:
        # DATE-OBS is the start of the observation, TSTART its time from MJDREF
        from astropy.time import Time
        scale = str(card_value(meta, "TIMESYS") or "UTC").strip().lower()
        scale = {"tdt": "tt", "et": "tt"}.get(scale, scale)
        mjd = Time(str(card_value(meta, "DATE-OBS")), scale=scale).tt.mjd - tstart / 86400.0
        set_card(meta, "MJDREFI", int(np.floor(mjd)), "[d] MJD reference day (integer part)")
        set_card(meta, "MJDREFF", float(mjd - np.floor(mjd)), "[d] MJD reference (fraction)")
        set_card(meta, "TIMESYS", "TT", "time system of TIME and MJDREF")
        add_history(meta, "MJDREFI/MJDREFF from DATE-OBS: TIME = TSTART is at DATE-OBS")
    events["TIME"] = (starts[frames] if len(frames) else np.zeros(0)) * u.s
    if n_frames:
        gstart, gstop = _merge_intervals(starts, starts + dts, tol=1e-6 * dts)
    else:
        gstart = gstop = np.zeros(0)
    tstop = float(gstop.max()) if n_frames else tstart
    ontime = float(np.sum(gstop - gstart))
    set_card(meta, "TIMEUNIT", "s", "unit of TIME, TSTART, TSTOP, GTI")
    if card_value(meta, "TIMESYS") is None and _mjdref_days(meta) is not None:
        set_card(meta, "TIMESYS", "TT", "time system (OGIP/93-003 default)")
    set_card(meta, "TIMEREF", card_value(meta, "TIMEREF") or "LOCAL",
             "times are at the detector")
    set_card(meta, "TSTART", tstart, "[s] start of the first frame")
    set_card(meta, "TSTOP", tstop, "[s] end of the last frame")
    set_card(meta, "TIMEDEL", dts, "[s] frame time (integration of one frame)")
    set_card(meta, "TIMEPIXR", 0.0, "TIME is the start of the frame")
    set_card(meta, "ONTIME", ontime, "[s] sum of the good time intervals")
    set_card(meta, "LIVETIME", ontime, "[s] ONTIME x DEADC")
    set_card(meta, "EXPOSURE", ontime, "[s] exposure (LIVETIME)")
    set_card(meta, "DEADC", 1.0, "dead-time correction (none modelled)")
    ref = _mjdref_days(meta)
    if ref is None:
        add_history(meta, "TIME is in s from the first frame: the input has no MJDREF, "
                          "MJDREFI or DATE-OBS keyword")
    elif card_value(meta, "DATE-OBS") is None:
        from astropy.time import Time
        scale = str(card_value(meta, "TIMESYS") or "TT").strip().lower()
        t0 = Time(ref, tstart / 86400.0, format="mjd", scale=scale)
        t1 = Time(ref, tstop / 86400.0, format="mjd", scale=scale)
        set_card(meta, "DATE-OBS", t0.isot, "start of the observation (TIMESYS)")
        set_card(meta, "DATE-END", t1.isot, "end of the observation (TIMESYS)")
    meta["GTI"] = gti_table(gstart, gstop)
    return True


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


def gti_hdu(gti, cards):
    """The ``GTI`` binary table extension (``HDUCLAS1 = 'GTI'``, ``HDUCLAS2 = 'STANDARD'``).

    Parameters
    ----------
    gti : `~astropy.table.Table`
        ``START`` and ``STOP`` columns (Quantity in time units or s).
    cards : `~astropy.io.fits.Header`
        Observation and time keywords copied to the GTI header.
    """
    table = Table()
    for name in ("START", "STOP"):
        col = gti[name]
        values = col.to_value(u.s) if isinstance(col, u.Quantity) else np.asarray(col)
        table[name] = Table.Column(np.asarray(values, dtype=np.float64), unit=u.s)
    hdu = fits.table_to_hdu(table)
    h = hdu.header
    h["EXTNAME"] = ("GTI", "good time intervals")
    h["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
    h["HDUCLAS1"] = ("GTI", "extension contains good time intervals")
    h["HDUCLAS2"] = ("STANDARD", "standard good time intervals")
    for card in cards.cards:
        if card.keyword not in h:
            h.append(card, end=True)
    return hdu
