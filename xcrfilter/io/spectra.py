"""Spectra and background levels of the events a filter combination accepts.

The numbers an astronomer takes from a filtered observation:

* :func:`pi_spectrum`: counts per ``PI`` channel of the events accepted by
  a combination of filters (their ``STATUS`` bits 0);
* :func:`background_levels`: the residual background in
  counts s\\ :sup:`-1` keV\\ :sup:`-1` cm\\ :sup:`-2` in energy bands, with
  Poisson 68.27 % intervals (:func:`astropy.stats.poisson_conf_interval`),
  split into X-ray and cosmic-ray parts when the events carry ``TRUTH``.

Exposure, frame shape and pixel size come from the event file header
(:func:`exposure_of`, :func:`detector_area`) or are given.  The OGIP files
are written by :mod:`xcrfilter.io.spectrum_files`.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.stats import poisson_conf_interval
from astropy.table import QTable

from ..meta import card_value

__all__ = ["LEVEL_UNIT", "DEFAULT_BANDS", "parse_combination", "accepted", "pi_channel_grid",
           "pi_spectrum", "exposure_of", "pixel_size_of", "detector_area", "check_band",
           "band_channels", "background_levels", "default_combinations", "format_levels",
           "level_lines"]

#: Unit of a background level.
LEVEL_UNIT = u.ct / (u.s * u.keV * u.cm ** 2)
#: Bands of :func:`background_levels` by default: the 2-7 keV band quoted for
#: detector particle backgrounds and the 0.3-10 keV scored band.
DEFAULT_BANDS = ((2 * u.keV, 7 * u.keV), (0.3 * u.keV, 10 * u.keV))
#: Combination names that are not filter names.
_ALL, _NONE = "all", "none"


def _filters_run(meta):
    ran = card_value(meta, "FILTERS")
    return [s.strip() for s in str(ran).split(",") if s.strip()] if ran else []


def parse_combination(text, meta):
    """The ``STATUS`` mask of a filter combination such as ``vfaint+sac``.

    Parameters
    ----------
    text : str
        Filter names joined by ``+``; ``all`` (every ``STATUS`` bit: the
        events every filter that ran accepts, ``STATUS = 0``) or ``none``
        (every event: the spectrum before filtering).
    meta : dict
        Event file header (``FILTERS`` names the filters that ran).

    Returns
    -------
    int
        Bit mask; an event is accepted when ``STATUS & mask == 0``.

    Raises
    ------
    ValueError
        An unknown filter, or one that did not run on these events.
    """
    from ..registry import METHOD_BITS
    name = str(text).strip().lower()
    if name == _ALL:
        return -1
    if name == _NONE:
        return 0
    ran = _filters_run(meta)
    mask = 0
    for part in name.split("+"):
        part = part.strip()
        if part not in METHOD_BITS:
            raise ValueError(f"--combination {text}: unknown filter {part!r}; filters are "
                             f"{', '.join(METHOD_BITS)}, joined by '+', or all or none.")
        if ran and part not in ran:
            raise ValueError(f"--combination {text}: filter {part!r} did not run on these "
                             f"events (FILTERS = {','.join(ran)}).")
        mask |= int(METHOD_BITS[part])
    return mask


def default_combinations(meta):
    """``none``, each filter that ran, and ``all``: the spectrum before and after each."""
    ran = _filters_run(meta)
    return [_NONE] + ran + ([_ALL] if len(ran) > 1 else [])


def accepted(events, mask):
    """Boolean array: the events whose ``STATUS`` bits of ``mask`` are 0."""
    status = np.asarray(events["STATUS"], dtype=np.int64)
    return (status & mask) == 0


def pi_channel_grid(meta, n_channels=None):
    """(first channel, number of channels, channel width) of the ``PI`` column.

    The legal range is ``TLMIN``/``TLMAX`` of ``PI`` (carried as
    ``PI_TLMIN``/``PI_TLMAX`` in ``meta`` by :func:`read_pi_limits`), else
    0 .. 4095; the width is the ``PIWIDTH`` keyword (eV) when present, else
    :data:`xcrfilter.io.ogip.PI_CHANNEL_WIDTH`.
    """
    from .ogip import PI_CHANNEL_WIDTH, PI_CHANNELS
    lo = card_value(meta, "PI_TLMIN")
    hi = card_value(meta, "PI_TLMAX")
    lo = 0 if lo is None else int(lo)
    hi = PI_CHANNELS - 1 if hi is None else int(hi)
    width = card_value(meta, "PIWIDTH")
    width = PI_CHANNEL_WIDTH if width is None else float(width) * u.eV
    return lo, hi - lo + 1, width.to(u.eV)


def pi_spectrum(events, mask, meta=None):
    """Counts per ``PI`` channel of the events accepted by ``mask``.

    Returns
    -------
    channels : ndarray of int32
        The channels of the event file, ``TLMIN`` .. ``TLMAX`` of ``PI``.
    counts : ndarray of int32
    """
    first, n, _ = pi_channel_grid(events.meta if meta is None else meta)
    pi = np.asarray(events["PI"], dtype=np.int64)[accepted(events, mask)]
    if len(pi) and (pi.min() < first or pi.max() >= first + n):
        raise ValueError(f"PI values {pi.min()} .. {pi.max()} outside the legal range "
                         f"{first} .. {first + n - 1} (TLMIN/TLMAX).")
    counts = np.bincount(pi - first, minlength=n).astype(np.int32)
    return np.arange(first, first + n, dtype=np.int32), counts


def exposure_of(meta, *, exposure=None, frame_time=None):
    """Exposure time: given, else ``EXPOSURE``/``LIVETIME``/``ONTIME``, else frames x time.

    ``frame_time`` (or the header's frame time, :data:`xcrfilter.io.ogip.FRAME_TIME_KEYWORDS`)
    times ``NFRAMES`` is used when given, and when the header has no
    exposure keyword.

    Returns
    -------
    `~astropy.units.Quantity` [s]
    """
    if exposure is not None:
        return u.Quantity(exposure, u.s)
    if frame_time is None:
        for key in ("EXPOSURE", "LIVETIME", "ONTIME"):
            value = card_value(meta, key)
            if value is not None:
                return float(value) * u.s
        for key in ("TIMEDEL", "FRAMTIME", "TEXPFRAM"):
            if card_value(meta, key) is not None:
                frame_time = float(card_value(meta, key)) * u.s
                break
    nframes = card_value(meta, "NFRAMES")
    if frame_time is None or nframes is None:
        raise ValueError("no exposure: the event file has no EXPOSURE, LIVETIME or ONTIME "
                         "keyword and no NFRAMES with a frame time; give --exposure or "
                         "--frame-time.")
    return (int(nframes) * u.Quantity(frame_time, u.s)).to(u.s)


def pixel_size_of(meta, pixel_size=None):
    """Pixel pitch: given, else ``PIXSIZE`` (um), else the WFI model's (130 um).

    Returns
    -------
    (`~astropy.units.Quantity` [um], str)
        The size and where it came from.
    """
    if pixel_size is not None:
        return u.Quantity(pixel_size, u.um), "given"
    value = card_value(meta, "PIXSIZE")
    if value is not None:
        return float(value) * u.um, "PIXSIZE keyword"
    from ..detector import DetectorModel
    return DetectorModel.wfi().pixel_size, "WFI detector model (no PIXSIZE keyword)"


def detector_area(meta, pixel_size):
    """``NCHIPS x FRMROWS x FRMCOLS x pixel_size**2``: the area the frames cover, in cm2.

    ``NCHIPS`` (the chips of a Geant4 pixel table, each ``FRMROWS x FRMCOLS``)
    is 1 when absent.
    """
    rows, cols = card_value(meta, "FRMROWS"), card_value(meta, "FRMCOLS")
    if rows is None or cols is None:
        raise ValueError("the event file has no FRMROWS/FRMCOLS (frame shape) keywords; "
                         "give the detector area with --area.")
    chips = int(card_value(meta, "NCHIPS", 1) or 1)
    return (chips * int(rows) * int(cols) * u.Quantity(pixel_size, u.um) ** 2).to(u.cm ** 2)


def check_band(low, high):
    """(low, high) in keV, refused unless ``0 <= low < high``."""
    low, high = u.Quantity(low).to(u.keV), u.Quantity(high).to(u.keV)
    if not 0 <= low.value < high.value:
        raise ValueError(f"--band {low} {high}: the lower edge must be >= 0 and below the "
                         "upper one.")
    return low, high


def band_channels(band, meta):
    """The ``PI`` channels wholly inside ``band``, and the band they cover.

    Channel ``c`` holds ``c x w <= E < (c + 1) x w``: the channels are
    ``ceil(low / w)`` .. ``floor(high / w) - 1``.

    Returns
    -------
    (int, int, Quantity, Quantity)
        First and last channel (inclusive), and the energies they cover.
    """
    first, n, width = pi_channel_grid(meta)
    w = width.to_value(u.eV)
    lo = max(int(np.ceil(band[0].to_value(u.eV) / w - 1e-9)), first)
    hi = min(int(np.floor(band[1].to_value(u.eV) / w + 1e-9)) - 1, first + n - 2)
    if hi < lo:
        raise ValueError(f"band {band[0]}-{band[1]} holds no whole PI channel of {width}.")
    return lo, hi, (lo * width).to(u.keV), ((hi + 1) * width).to(u.keV)


def _poisson(n):
    lo, hi = poisson_conf_interval(np.asarray(n, dtype=float),
                                   interval="frequentist-confidence")
    return lo, hi


def background_levels(events, combinations, bands=DEFAULT_BANDS, *, exposure, area):
    """Residual background level per filter combination and band.

    ``LEVEL = N / (exposure x band width x area)`` in counts s-1 keV-1 cm-2,
    ``N`` the accepted events with ``PI`` in the band's channels
    (:func:`band_channels`); ``LEVEL_LO``/``LEVEL_HI`` the Poisson 68.27 %
    interval of ``N`` (frequentist, :func:`astropy.stats.poisson_conf_interval`)
    scaled the same way.  With a ``TRUTH`` column (1 X-ray, 2 cosmic ray,
    as ``xcrfilter compare`` and pixel-table inputs write it) the counts and
    levels are also split into ``_XRAY`` and ``_CR`` parts.

    Parameters
    ----------
    events : `~astropy.table.Table`
        ``PI`` and ``STATUS`` columns; ``meta`` the event file header.
    combinations : list of str
        Filter combinations (:func:`parse_combination`).
    bands : sequence of (Quantity, Quantity)
    exposure : `~astropy.units.Quantity` [time]
    area : `~astropy.units.Quantity` [area]

    Returns
    -------
    `~astropy.table.QTable`
        One row per combination and band.
    """
    meta = events.meta
    exposure = u.Quantity(exposure, u.s)
    area = u.Quantity(area).to(u.cm ** 2)
    pi = np.asarray(events["PI"], dtype=np.int64)
    truth = np.asarray(events["TRUTH"]) if "TRUTH" in events.colnames else None
    rows = []
    for name in combinations:
        ok = accepted(events, parse_combination(name, meta))
        for band in bands:
            c0, c1, e0, e1 = band_channels(band, meta)
            inband = ok & (pi >= c0) & (pi <= c1)
            scale = 1.0 / (exposure * (e1 - e0) * area)
            n = int(np.count_nonzero(inband))
            lo, hi = _poisson(n)
            kev = [float(u.Quantity(b).to_value(u.keV)) for b in band]
            row = dict(COMBINATION=name, BAND=f"{kev[0]:g}-{kev[1]:g} keV",
                       E_MIN=e0, E_MAX=e1, COUNTS=n, LEVEL=(n * u.ct * scale).to(LEVEL_UNIT),
                       LEVEL_LO=(lo * u.ct * scale).to(LEVEL_UNIT),
                       LEVEL_HI=(hi * u.ct * scale).to(LEVEL_UNIT))
            if truth is not None:
                for part, label in (("XRAY", 1), ("CR", 2)):
                    k = int(np.count_nonzero(inband & (truth == label)))
                    row[f"COUNTS_{part}"] = k
                    row[f"LEVEL_{part}"] = (k * u.ct * scale).to(LEVEL_UNIT)
            rows.append(row)
    table = QTable(rows=rows) if rows else QTable()
    table.meta.update(EXPOSURE=exposure, AREA=area, INTERVAL="Poisson 68.27 % "
                      "(frequentist-confidence)")
    return table


def format_levels(table):
    """The level table as text lines for the terminal."""
    parts = "COUNTS_XRAY" in table.colnames
    head = (f"{'combination':16s} {'band':>12s} {'counts':>7s} "
            f"{'level [ct/s/keV/cm2]':>22s} {'68% interval':>23s}")
    if parts:
        head += f" {'X-ray':>10s} {'CR':>10s}"
    lines = [head]
    for row in table:
        text = (f"{row['COMBINATION']:16s} {row['BAND']:>12s} {row['COUNTS']:7d} "
                f"{row['LEVEL'].value:22.4g} "
                f"[{row['LEVEL_LO'].value:10.4g}, {row['LEVEL_HI'].value:10.4g}]")
        if parts:
            text += f" {row['LEVEL_XRAY'].value:10.4g} {row['LEVEL_CR'].value:10.4g}"
        lines.append(text)
    return lines


def level_lines(events, truth=None):
    """The default level table as text, for the summaries of ``filter`` and ``compare``.

    Combinations :func:`default_combinations`, bands :data:`DEFAULT_BANDS`,
    exposure and area from the header (:func:`exposure_of`,
    :func:`detector_area`); ``truth`` (1 X-ray, 2 CR per event) splits the
    levels.  Returns ``[]`` when the header gives no exposure or frame shape.
    """
    meta = events.meta
    if "PI" not in events.colnames or "STATUS" not in events.colnames:
        return []
    try:
        exposure = exposure_of(meta)
        pixel, origin = pixel_size_of(meta)
        area = detector_area(meta, pixel)
        table = QTable(events[["PI", "STATUS"]], copy=False)
        table.meta = meta
        if truth is not None:
            table["TRUTH"] = np.asarray(truth)
        levels = background_levels(table, default_combinations(meta), exposure=exposure,
                                   area=area)
    except ValueError:  # no exposure, no frame shape, a filter without STATUS bits
        return []
    return ([f"background levels: exposure {exposure:.6g}, area {area:.4g} "
             f"(pixel {pixel:g}, {origin})"] + format_levels(levels))
