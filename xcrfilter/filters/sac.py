"""Self-anti-coincidence (SAC) filter: reject events near a particle track.

A cosmic-ray primary that crosses the sensor leaves a track (a large or very
energetic island of active pixels); the secondary photons and electrons it
makes in the surrounding material land, in the same frame, within tens of
pixels of it and look like X-rays to the very-faint-mode filter.  SAC, the
classical context-aware method of the WFI background teams (Miller et al.
2022, JATIS 8, 018001), rejects every event whose centre is
within a radius ``R`` (pixels) of any track pixel of the same frame.

Definitions used here
---------------------
* active pixel: energy >= the split threshold (80 eV by default, the event
  finder's ``SPLTHR``);
* island: a connected set of active pixels inside one frame (8-connectivity;
  the labelling structure never links two frames);
* track: an island whose summed energy is >= ``track_energy`` (the MIP
  threshold, 10 keV by default) or whose size is >= ``track_size`` pixels
  (10 by default: larger than any 3x3 X-ray island);
* an event is rejected (``STATUS`` bit 4) when the Euclidean distance from
  its central pixel (RAWX, RAWY) to the nearest track pixel is <= ``R``.
  Events that are part of a track themselves (distance 0) are rejected too.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable, Table

from ..meta import CARD_COMMENTS, card_comment, card_value, set_card
from ..cli.argtypes import parse_energy
from ..events import find_events, set_status_bit
from ..contract import Calibration, Card, Count, Filter, Param
from ..units import as_energy, energy_values

__all__ = ["sac_filter", "track_mask", "find_tracks", "track_distance", "SAC_BIT", "SAC_DEFAULTS",
           "pipeline_step", "FILTER"]

#: Calibration of the radius on the observation (`xcrfilter.calibrate`): the
#: score column, the option it sets, -1 because events at small distances
#: are rejected, the keywords of the radius and of the count, and no use of
#: the event's own pixels (only where the tracks of its frame lie).
CALIBRATION = Calibration("SAC_DIST", "radius", -1, card="SACRAD", count_card="SACNEVT",
                          prefix="SAC", uses_shape=False)

#: Header keywords holding counts (summed by the pipeline over chunks of frames).
COUNTS = (Count("SACNTRK", "particle tracks found"),
          Count("SACNEVT", "events flagged STATUS bit 4 (SAC)"))

#: STATUS bit set by this filter.
SAC_BIT = 4
#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {"SAC": (SAC_BIT, "inside a self-anti-coincidence zone")}

#: Default parameters.  The radius, 22 pixels, is the largest that loses at
#: most 1.7 % of the X-ray events on the validation frames of every physics
#: preset of `xcrfilter.simulate.PRESETS` and of randomised physics
#: (``scripts/generalisation.py defaults``, ``docs/generalisation.rst``);
#: the binding preset is twice the paper's CR rate.
SAC_DEFAULTS = dict(radius=22.0, split_threshold=80 * u.eV, track_energy=10 * u.keV,
                    track_size=10)


def _radius(radius):
    if isinstance(radius, u.Quantity):
        if radius.unit not in (u.pix, u.dimensionless_unscaled):
            raise u.UnitConversionError(f"radius must be in pixels, got {radius}.")
        radius = radius.value
    radius = float(radius)
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and >= 0 pixels, got {radius}.")
    return radius


def _cube_ev(frames, gain=None, detector=None):
    """(data eV float32 3-D, was_2d) from a FrameCube or anything as_energy_cube reads."""
    if hasattr(frames, "_fields") and "data" in frames._fields:
        data = np.asarray(frames.data, dtype=np.float32)
        was_2d = bool(getattr(frames, "was_2d", False))
    else:
        from ..io.frames import as_energy_cube
        cube = as_energy_cube(frames, gain=gain, detector=detector)
        data, was_2d = cube.data, cube.was_2d
    if data.ndim == 2:
        data, was_2d = data[None], True
    if data.ndim != 3:
        raise ValueError(f"frames must be 2-D or 3-D, got shape {data.shape}.")
    return data, was_2d


def find_tracks(frames, *, split_threshold=80 * u.eV, track_energy=10 * u.keV,
                track_size=10, gain=None, detector=None):
    """Pixel mask of particle tracks in each frame.

    Parameters
    ----------
    frames : FrameCube, `~astropy.units.Quantity`, `~astropy.nddata.CCDData` or path
        Frames (n_frames, ny, nx) or (ny, nx), read with
        ``xcrfilter.io.frames.as_energy_cube`` (eV).
    split_threshold : `~astropy.units.Quantity` [energy]
        Active-pixel threshold.  Default 80 eV.
    track_energy : `~astropy.units.Quantity` [energy]
        Islands with summed energy >= this are tracks (MIP threshold).
        Default 10 keV.
    track_size : int
        Islands with >= this many active pixels are tracks.  Default 10.

    Returns
    -------
    mask : bool ndarray, shape (n_frames, ny, nx)
        True on track pixels.
    n_tracks : int ndarray, shape (n_frames,)
        Number of tracks per frame.
    """
    data, _ = _cube_ev(frames, gain=gain, detector=detector)
    split = as_energy(split_threshold, "split_threshold")
    emin = as_energy(track_energy, "track_energy")
    size_min = int(track_size)
    if size_min < 1:
        raise ValueError(f"track_size must be >= 1 pixel, got {track_size}.")
    from ..context import label_islands
    idx, lab, n = label_islands(data, split)  # active pixels only, islands within a frame
    energy = np.bincount(lab, weights=data.ravel()[idx].astype(np.float64), minlength=n + 1)
    size = np.bincount(lab, minlength=n + 1)
    is_track = (energy >= emin) | (size >= size_min)
    is_track[0] = False
    mask = np.zeros(data.shape, bool)
    mask.ravel()[idx[is_track[lab]]] = True
    # frame of every island, from the flat index of its pixels
    frame_of = np.zeros(n + 1, np.intp)
    frame_of[lab] = idx // (data.shape[1] * data.shape[2])
    n_tracks = np.bincount(frame_of[1:][is_track[1:]], minlength=data.shape[0])
    return mask, n_tracks


def track_distance(track_mask, frame, rawy, rawx):
    """Distance (pixels) from event centres to the nearest track pixel of their frame.

    Parameters
    ----------
    track_mask : bool ndarray, shape (n_frames, ny, nx)
    frame, rawy, rawx : int ndarray, shape (n_events,)

    Returns
    -------
    float ndarray, shape (n_events,)
        Euclidean distance; ``inf`` where the frame has no track.
    """
    frame = np.asarray(frame, np.intp)
    rawy = np.asarray(rawy, np.intp)
    rawx = np.asarray(rawx, np.intp)
    dist = np.full(frame.shape, np.inf)
    tf, ty, tx = np.nonzero(track_mask)
    if frame.size == 0 or tf.size == 0:
        return dist
    # Nearest track pixel with a k-d tree; frames are separated by a gap far
    # larger than any frame so that a track never reaches into another frame.
    gap = 4.0 * (track_mask.shape[1] + track_mask.shape[2])
    from scipy.spatial import cKDTree
    tree = cKDTree(np.column_stack([tf * gap, ty, tx]).astype(float))
    d, _ = tree.query(np.column_stack([frame * gap, rawy, rawx]).astype(float),
                      distance_upper_bound=gap / 2)
    has = np.isfinite(d)
    dist[has] = d[has]
    return dist


def track_mask(frames, *, split_threshold=80 * u.eV, track_energy=10 * u.keV, track_size=10,
               gain=None, detector=None):
    """Particle-track pixel mask of the frames, as a `~astropy.nddata.CCDData`.

    Parameters
    ----------
    frames : FrameCube, `~astropy.units.Quantity`, `~astropy.nddata.CCDData` or path
        Frames (n_frames, ny, nx) or (ny, nx) in an energy unit (anything
        ``xcrfilter.io.frames.as_energy_cube`` reads).
    split_threshold, track_energy : `~astropy.units.Quantity` [energy]
        Active-pixel threshold (default 80 eV) and minimum island energy of a
        track (default 10 keV).
    track_size : int
        Minimum island size of a track [pixel].  Default 10.
    gain, detector : optional
        Passed to ``xcrfilter.io.frames.as_energy_cube``.

    Returns
    -------
    `~astropy.nddata.CCDData`
        The frames in eV, same shape as the input; ``mask`` is True on track
        pixels; header cards ``SACSPLIT``, ``SACTRKE`` [eV], ``SACTRKN``
        [pixel] and ``SACNTRK`` (tracks found).

    Raises
    ------
    TypeError, ValueError
        Thresholds that are not positive energies, ``track_size < 1``, bad
        frames.
    """
    data, was_2d = _cube_ev(frames, gain=gain, detector=detector)
    mask, n_tracks = find_tracks(_Cube(data), split_threshold=split_threshold,
                                 track_energy=track_energy, track_size=track_size)
    params = dict(radius=float("nan"), split=as_energy(split_threshold, "split_threshold"),
                  emin=as_energy(track_energy, "track_energy"), size=int(track_size),
                  ntrack=int(n_tracks.sum()))
    meta = {}
    _write_cards(meta, params)
    header = fits.Header()
    for key, value in meta.items():
        if key not in ("HISTORY", "SACRAD", CARD_COMMENTS):  # no radius for a pixel mask
            set_card(header, key, value, card_comment(meta, key))
    from astropy.nddata import CCDData
    return CCDData(data[0] if was_2d else data, unit=u.eV, mask=mask[0] if was_2d else mask,
                   meta=header)


def sac_filter(frames, events=None, *, radius=SAC_DEFAULTS["radius"], split_threshold=None,
               track_energy=None, track_size=10, event_threshold=260 * u.eV,
               mip_threshold=10 * u.keV, gain=None, detector=None):
    """Self-anti-coincidence: flag events within ``radius`` of a particle track.

    Parameters
    ----------
    frames : FrameCube, Quantity, CCDData, path, `~astropy.table.Table` or None
        Frames (n_frames, ny, nx) or (ny, nx) in an energy unit (anything
        ``xcrfilter.io.frames.as_energy_cube`` reads).  Without frames (None, or an
        events table given here: events-only mode), the tracks are the
        central pixels of the events with ``ENERGY >= track_energy``.
    events : `~astropy.table.Table`, optional
        Events (``FRAME``, ``RAWX``, ``RAWY``, ``STATUS``) of the frames.
        Default: found in ``frames`` with `xcrfilter.events.find_events`.
    radius : float or `~astropy.units.Quantity` [pix]
        Rejection radius ``R`` in pixels (distance <= R is rejected).
        Default 22, chosen on validation frames (see `SAC_DEFAULTS`).
    split_threshold : `~astropy.units.Quantity` [energy], optional
        Active-pixel threshold.  Default: the events' ``SPLTHR`` keyword, else
        80 eV.
    track_energy : `~astropy.units.Quantity` [energy], optional
        Minimum island energy of a track.  Default: the events' ``MIPTHR``
        keyword, else ``mip_threshold``.
    track_size : int
        Minimum island size (pixels) of a track.  Default 10.
    event_threshold, mip_threshold : `~astropy.units.Quantity` [energy]
        Event finding when ``events`` is None (defaults 260 eV, 10 keV).
    gain, detector : optional
        Passed to ``xcrfilter.io.frames.as_energy_cube``.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns, ``STATUS`` with bit 4 cleared and
        then set on rejected events (a re-run replaces it), a float32 column
        ``SAC_DIST`` (pixels to the nearest track, inf if none), header cards
        ``SACRAD``, ``SACSPLIT``, ``SACTRKE``, ``SACTRKN``, ``SACNTRK``,
        ``SACMODE``, ``SACNEVT`` and a HISTORY line.  The input is not
        modified.  The track pixels themselves come from :func:`track_mask`.

    Raises
    ------
    TypeError
        Energy thresholds that are not Quantities.
    ValueError
        Negative radius, track_size < 1, missing columns, events outside the
        frames.
    """
    radius = _radius(radius)
    if frames is None and events is not None:
        frames, events = events, None
    if isinstance(frames, Table):
        if events is not None:
            raise TypeError("sac_filter: give the frames and their events, or an events "
                            "table alone, not two tables")
        return _sac_events_only(frames, radius=radius, track_energy=track_energy,
                                default_mip=mip_threshold)
    if events is not None:
        _check_columns(events, ("FRAME", "RAWX", "RAWY", "STATUS"))
    meta_src = events.meta if events is not None else {}
    if split_threshold is None:
        split_threshold = card_value(meta_src, "SPLTHR", None)
        split_threshold = 80 * u.eV if split_threshold is None else split_threshold * u.eV
    if track_energy is None:
        track_energy = card_value(meta_src, "MIPTHR", None)
        track_energy = mip_threshold if track_energy is None else track_energy * u.eV
    data, _ = _cube_ev(frames, gain=gain, detector=detector)
    if events is None:
        from ..io.frames import FrameCube
        events = find_events(frames if isinstance(frames, FrameCube) else _FrameData(data),
                             event_threshold, split_threshold, mip_threshold)
    mask, n_tracks = find_tracks(_Cube(data), split_threshold=split_threshold,
                                 track_energy=track_energy, track_size=track_size)
    params = dict(radius=radius, split=as_energy(split_threshold, "split_threshold"),
                  emin=as_energy(track_energy, "track_energy"), size=int(track_size),
                  ntrack=int(n_tracks.sum()))
    return _flag(events, mask, radius, params)


def _check_columns(events, names):
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table/QTable, got {type(events).__name__}")
    missing = [c for c in names if c not in events.colnames]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by the SAC filter")


def _FrameData(data):
    from ..io.frames import FrameCube
    return FrameCube(data, None, fits.Header(), [], False)


class _Cube:
    """Minimal FrameCube stand-in for already-converted eV data."""
    _fields = ("data", "mask")

    def __init__(self, data):
        self.data = data
        self.mask = None
        self.was_2d = False


def _flag(events, mask, radius, params):
    out = QTable(events, copy=True)
    n = len(out)
    if n:
        f = np.asarray(out["FRAME"], np.intp)
        y = np.asarray(out["RAWY"], np.intp)
        x = np.asarray(out["RAWX"], np.intp)
        if (f.min() < 0 or f.max() >= mask.shape[0] or y.min() < 0 or y.max() >= mask.shape[1]
                or x.min() < 0 or x.max() >= mask.shape[2]):
            raise ValueError(f"events: FRAME/RAWY/RAWX outside the frames {mask.shape}.")
        dist = track_distance(mask, f, y, x)
    else:
        dist = np.zeros(0)
    hit = dist <= radius
    set_status_bit(out, SAC_BIT, hit)
    out["SAC_DIST"] = dist.astype(np.float32)
    _write_cards(out.meta, params, n_events=int(hit.sum()))
    return out


def _sac_events_only(events, *, radius, track_energy, default_mip=10 * u.keV):
    _check_columns(events, ("FRAME", "RAWX", "RAWY", "ENERGY", "STATUS"))
    if track_energy is None:
        track_energy = card_value(events.meta, "MIPTHR", None)
        track_energy = default_mip if track_energy is None else track_energy * u.eV
    emin = as_energy(track_energy, "track_energy")
    energy = energy_values(events["ENERGY"])
    if not np.all(np.isfinite(energy)):
        raise ValueError("events: ENERGY holds NaN or infinite values; the SAC filter never "
                         "guesses a missing energy")
    out = QTable(events, copy=True)
    f = np.asarray(out["FRAME"], np.int64)
    y = np.asarray(out["RAWY"], np.float64)
    x = np.asarray(out["RAWX"], np.float64)
    is_track = energy >= emin
    dist = np.full(len(out), np.inf)
    for fr in np.unique(f[is_track]):
        sel = f == fr
        t = is_track & sel
        d = np.hypot(y[sel][:, None] - y[t][None, :], x[sel][:, None] - x[t][None, :])
        dist[sel] = d.min(axis=1)
    hit = dist <= radius
    set_status_bit(out, SAC_BIT, hit)
    out["SAC_DIST"] = dist.astype(np.float32)
    params = dict(radius=radius, split=float("nan"), emin=emin, size=0,
                  ntrack=int(is_track.sum()))
    _write_cards(out.meta, params, n_events=int(hit.sum()), events_only=True)
    return out


def _write_cards(meta, params, n_events=None, events_only=False):
    used = dict(radius=float(params["radius"]), track_energy=float(params["emin"]))
    if not events_only:
        used.update(track_size=int(params["size"]), split_threshold=float(params["split"]))
    counts = {"SACNTRK": int(params["ntrack"])}
    history = None
    if n_events is not None:
        counts["SACNEVT"] = n_events
        history = (f"sac_filter: radius={params['radius']} pix, "
                   f"track_energy={params['emin']} eV, track_size={params['size']} pix, "
                   f"split={params['split']} eV -> {params['ntrack']} tracks, "
                   f"{n_events} events flagged (STATUS bit {SAC_BIT})")
    FILTER.record(meta, used, counts,
                  [("SACMODE", "events" if events_only else "frames", "SAC track source")],
                  history)


# --------------------------------------------------------------------------
# the declaration (xcrfilter.registry)
# --------------------------------------------------------------------------
def pipeline_step(cube, events, *, radius=SAC_DEFAULTS["radius"], track_energy=None,
                  track_size=SAC_DEFAULTS["track_size"], split_threshold=None,
                  mip_threshold=None):
    """Pipeline step ``sac``: STATUS bit 4 near particle tracks (see :func:`sac_filter`).

    The pipeline's ``split_threshold`` defines active pixels and its
    ``mip_threshold`` is the default ``track_energy``.  Returns a new events
    table; ``events`` is not modified.
    """
    if track_energy is None:
        track_energy = mip_threshold
    return sac_filter(cube, events, radius=radius, track_energy=track_energy,
                      track_size=track_size, split_threshold=split_threshold)


#: The filter's declaration (`xcrfilter.registry`).
FILTER = Filter(
    name="sac", step=pipeline_step, status=STATUS,
    shared=("split_threshold", "mip_threshold"),
    params=(
        Param("radius", SAC_DEFAULTS["radius"], "rejection radius around tracks", "pixel",
              type=float, metavar="R", card=Card("SACRAD", "SAC rejection radius")),
        Param("track_energy", None, "minimum summed energy of a track (default: "
              "--mip-threshold)", "eV", type=parse_energy, metavar="E",
              card=Card("SACTRKE", "SAC min track energy")),
        Param("track_size", SAC_DEFAULTS["track_size"], "minimum track size", "pixel",
              type=int, metavar="N", card=Card("SACTRKN", "SAC min track size")),
    ),
    shared_cards={"split_threshold": Card("SACSPLIT", "SAC active-pixel threshold")},
    calibration=CALIBRATION,
    counts=COUNTS,
)
