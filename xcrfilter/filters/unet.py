"""U-Net segmentation filter (``unet``): a per-pixel cosmic-ray probability map.

A U-Net with focal loss (`xcrfilter.ml.unet`; seed ``004``, and the
authors' earlier segmentation model of seed ``001`` Sec. 2, its ref. 13)
assigns every pixel the probabilities of noise, X-ray and cosmic ray.  It
has two faces:

* :func:`unet_mask` -- a `~astropy.nddata.CCDData` whose ``mask`` marks the
  cosmic-ray pixels (CR probability ``>= mask_threshold``) ORed with the
  input mask, and whose ``flags`` hold the CR probability of every pixel
  (written as a FITS extension with ``ccd.write(path, hdu_flags="PROB_UNET")``);
* :func:`unet_filter` and the pipeline method ``unet`` -- every event is
  scored with the largest CR probability in the ``window x window`` pixels
  around its central pixel (``PROB_UNET``), and ``STATUS`` bit 10 is set
  where ``PROB_UNET >= threshold``.  Events outside the 0.3-10 keV band are
  scored too.

Only ``core x core`` tiles holding a pixel at or above ``seed_level`` (the
event threshold) are evaluated (`xcrfilter.ml.unet_model.UnetModel.probability_maps`):
an event always lies in one, and pixels of other tiles get probability 0.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from ..contract import Calibration, Card, Count, Filter, Param
from ..events import event_positions
from ..meta import log_to_metadata
from ..units import as_energy, as_probability
from .probability import cube_and_events, flag_probability, get_model, model_and_threshold

__all__ = ["unet_mask", "unet_filter", "event_scores", "UNET_BIT", "pipeline_step",
           "is_available", "FILTER"]

#: STATUS bit set by this filter.
UNET_BIT = 10
#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {"UNET": (UNET_BIT, "U-Net filter: PROB_UNET >= threshold")}

#: Calibration of the threshold on the observation (`xcrfilter.calibrate`):
#: the score looks at the event's own pixels, so events are pasted into
#: other frames.
CALIBRATION = Calibration("PROB_UNET", "threshold", +1, card="UNTTHR", count_card="UNTNREJ",
                          prefix="UNT", uses_shape=True)

#: Header keywords holding counts (summed by the pipeline over chunks of frames).
COUNTS = (Count("UNTNSCO", "events scored by the U-Net filter"),
          Count("UNTNREJ", f"events rejected by unet (bit {UNET_BIT})"))
_WINDOWS = (1, 3, 5)


def is_available():
    """True when the shipped U-Net model is installed."""
    from ..ml.unet_model import NETWORK_FILE, default_unet_dir
    return (default_unet_dir() / NETWORK_FILE).is_file()


def _get_model(model):
    from ..ml.unet_model import UnetModel, load_unet_model
    return get_model(model, load_unet_model, UnetModel)


def _check_window(window):
    if isinstance(window, bool) or window not in _WINDOWS:
        raise ValueError(f"window must be one of {_WINDOWS} (pixels), got {window!r}")
    return int(window)


def event_scores(p_cr, events, window=3):
    """``PROB_UNET`` of events: the largest CR probability around the central pixel.

    Parameters
    ----------
    p_cr : float ndarray (n_frames, rows, cols)
        CR probability map.
    events : `~astropy.table.Table`
        Integer columns ``FRAME``, ``RAWX``, ``RAWY`` (0-based).
    window : int, optional
        Side of the square window (1, 3 or 5 pixels; default 3), clipped at
        the frame edges.

    Returns
    -------
    float32 ndarray (n_events,)

    Raises
    ------
    ValueError
        A bad window, events outside the map.
    """
    w = _check_window(window)
    p = np.asarray(p_cr, np.float32)
    if p.ndim == 2:
        p = p[None]
    if len(events) == 0:
        return np.zeros(0, np.float32)
    f, y, x = event_positions(events, p.shape, "the probability maps")
    _, ny, nx = p.shape
    h = w // 2
    out = np.zeros(len(f), np.float32)
    for dy in range(-h, h + 1):
        for dx in range(-h, h + 1):
            out = np.maximum(out, p[f, np.clip(y + dy, 0, ny - 1), np.clip(x + dx, 0, nx - 1)])
    return out


def _apply(data_ev, events, model, threshold, window, seed_ev):
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table/QTable, got {type(events).__name__}")
    missing = [c for c in ("FRAME", "RAWX", "RAWY", "STATUS") if c not in events.colnames]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by the unet filter")
    out = QTable(events, copy=True)
    prob = np.zeros(len(out), np.float32)
    if len(out):
        frames = np.unique(np.asarray(out["FRAME"], np.int64))
        if frames[0] < 0 or frames[-1] >= data_ev.shape[0]:
            raise ValueError(f"events: FRAME values outside the {data_ev.shape[0]} frames given")
        # only the tiles under the events' windows go through the network: the
        # map there equals the whole-frame map of unet_mask
        sub = Table({"FRAME": np.searchsorted(frames, np.asarray(out["FRAME"], np.int64)),
                     "RAWX": out["RAWX"], "RAWY": out["RAWY"]})
        _, p_cr = model.probability_maps(
            data_ev[frames], seed_level=seed_ev,
            points=(sub["FRAME"], np.asarray(sub["RAWY"]), np.asarray(sub["RAWX"])),
            halo=window // 2)
        prob = event_scores(p_cr, sub, window)
    n_scored, n_rej = flag_probability(out, prob, threshold, UNET_BIT, "PROB_UNET",
                                       f"U-Net CR probability, max over {window}x{window} px")
    cards = model.header_cards() + [
        ("UNTSEED", float(seed_ev), "[eV] U-Net tiles evaluated from this level")]
    FILTER.record(out.meta, {"threshold": float(threshold), "window": int(window)},
                  {"UNTNSCO": n_scored, "UNTNREJ": n_rej}, cards,
                  f"unet_filter: model {model.name} sha256 {model.sha256[:16]}, "
                  f"threshold {threshold:.4f}, window {window}: "
                  f"{n_rej} of {n_scored} events rejected")
    return out


def unet_filter(frames, events=None, *, threshold=None, window=3, model=None,
                event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                mip_threshold=10 * u.keV, gain=None, detector=None):
    """Score every event with the U-Net's CR-probability map.

    Parameters
    ----------
    frames : CCDData, NDData, Quantity, FITS path(s) or FrameCube
        One frame (ny, nx) or a cube (n_frames, ny, nx) in an energy unit.
    events : `~astropy.table.Table`, optional
        Events of ``frames`` (FRAME, RAWX, RAWY, STATUS); default: found
        here with `xcrfilter.events.find_events` and the thresholds below.
    threshold : float, optional
        Probability in [0, 1]; ``STATUS`` bit 10 where ``PROB_UNET >=
        threshold``.  Default: the model's (chosen on validation frames for
        1.8 % lost X-ray events, see its model card).
    window : int, optional
        ``PROB_UNET`` is the largest CR probability in the ``window x
        window`` pixels centred on the event (1, 3 or 5; default 3).
    model : None, path-like or `xcrfilter.ml.unet_model.UnetModel`, optional
        Default: the model shipped in ``xcrfilter/data/unet_model``.
    event_threshold : `~astropy.units.Quantity`
        Event finding (260 eV) and the seed level of the evaluated tiles.
    split_threshold, mip_threshold : `~astropy.units.Quantity`
        Event finding (80 eV, 10 keV), used when ``events`` is None.
    gain, detector : optional
        Passed to `xcrfilter.io.frames.as_energy_cube`.

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns, ``PROB_UNET`` (float32) and
        ``STATUS`` with bit 10 cleared and set; header cards ``UNTMODEL``,
        ``UNTSHA``, ``UNTTHR``, ``UNTWIN``, ``UNTSEED`` [eV], ``UNTNSCO``,
        ``UNTNREJ`` and a HISTORY line.  The input is not modified.

    Raises
    ------
    TypeError
        Bad frames, events or model types.
    ValueError
        Threshold outside [0, 1], a window other than 1, 3, 5, missing
        columns, events that do not fit the frames.
    xcrfilter.ml.checksums.ModelFileError
        Missing, corrupt or foreign model files.
    """
    cube, events = cube_and_events(
        frames, events, "unet_filter", "the network looks at the pixels around every event",
        event_threshold=event_threshold, split_threshold=split_threshold,
        mip_threshold=mip_threshold, gain=gain, detector=detector)
    model, thr = model_and_threshold(model, threshold, _get_model)
    return _apply(_clean(cube), events, model, thr, _check_window(window),
                  as_energy(event_threshold, "event_threshold"))


def _clean(cube):
    """The cube's energies [eV] with masked and non-finite pixels set to 0 eV."""
    data = np.array(cube.data, np.float32)
    bad = ~np.isfinite(data)
    if getattr(cube, "mask", None) is not None:
        bad |= np.asarray(cube.mask, bool)
    data[bad] = 0.0
    return data


def unet_mask(ccd, *, threshold=None, model=None, seed_level=260 * u.eV, gain=None,
              detector=None):
    """Cosmic-ray pixel mask and CR-probability map of frames (ccdproc style).

    Parameters
    ----------
    ccd : `~astropy.nddata.CCDData`, NDData, Quantity, FITS path(s) or FrameCube
        One frame (ny, nx) or a cube (n_frames, ny, nx) in an energy,
        electron or adu unit (`xcrfilter.io.frames.as_energy_cube`); masked and
        non-finite pixels are read as 0 eV and stay masked.
    threshold : float, optional
        CR-probability threshold of the mask in [0, 1]; default the model's
        ``mask_threshold`` (chosen to keep >= 99 % of the X-ray pixels of
        validation frames, see the model card).
    model : None, path-like or `xcrfilter.ml.unet_model.UnetModel`, optional
        Default: the shipped model.
    seed_level : `~astropy.units.Quantity`, optional
        Tiles without a pixel at or above it (default 260 eV, the event
        threshold) are not evaluated and get probability 0.
    gain, detector : optional
        Passed to `xcrfilter.io.frames.as_energy_cube`.

    Returns
    -------
    `~astropy.nddata.CCDData`
        Same shape as the input, data in eV (a copy), ``mask`` = input mask
        OR (CR probability ``>= threshold``), ``flags`` = CR probability
        (float32, write it with ``ccd.write(path, hdu_flags="PROB_UNET")``);
        header cards ``UNTMODEL``, ``UNTSHA``, ``UNTMTHR``, ``UNTNCRPX`` and
        a HISTORY line.  The input is never modified.

    Raises
    ------
    TypeError
        Unknown frame or model types.
    ValueError
        Wrong dimensionality, a threshold outside [0, 1], frames smaller
        than 5 x 5 pixels.
    astropy.units.UnitConversionError
        Frames not in an energy, electron or adu unit.
    xcrfilter.ml.checksums.ModelFileError
        Missing, corrupt or foreign model files.
    """
    from astropy.io import fits
    from astropy.nddata import CCDData

    from ..io.frames import as_energy_cube
    cube = as_energy_cube(ccd, gain=gain, detector=detector, name="ccd")
    if min(cube.data.shape[1:]) < 5:
        raise ValueError(f"ccd: frames must be at least 5 x 5 pixels, got {cube.data.shape}")
    model = _get_model(model)
    thr = as_probability(threshold, model.mask_threshold)
    seed = as_energy(seed_level, "seed_level")
    data = _clean(cube)
    _, p_cr = model.probability_maps(data, seed_level=seed)
    cr = p_cr >= thr
    mask = cr.copy()
    if getattr(cube, "mask", None) is not None:
        mask |= np.asarray(cube.mask, bool)
    mask |= ~np.isfinite(np.asarray(cube.data))
    header = fits.Header()
    log_to_metadata(header, model.header_cards() + [
        ("UNTMTHR", float(thr), "U-Net mask CR-probability threshold"),
        ("UNTSEED", float(seed), "[eV] U-Net tiles evaluated from this level"),
        ("UNTNCRPX", int(cr.sum()), "pixels marked as cosmic ray by the U-Net")],
        f"unet_mask: model {model.name} sha256 {model.sha256[:16]}, threshold {thr:.4f}: "
        f"{int(cr.sum())} CR pixels")
    out = np.array(cube.data, np.float32)
    if cube.was_2d:
        out, mask, p_cr = out[0], mask[0], p_cr[0]
    return CCDData(out, unit=u.eV, mask=mask, flags=p_cr.astype(np.float32), meta=header)


# -- the declaration (xcrfilter.registry) -------------------------------------

def pipeline_step(cube, events, *, threshold=None, window=3, model=None,
                  event_threshold=260 * u.eV):
    """Pipeline step ``unet``: ``PROB_UNET`` and STATUS bit 10 (see :func:`unet_filter`)."""
    model, thr = model_and_threshold(model, threshold, _get_model)
    return _apply(_clean(cube), events, model, thr, _check_window(window),
                  as_energy(event_threshold, "event_threshold"))


#: The filter's declaration (`xcrfilter.registry`).
FILTER = Filter(
    name="unet", step=pipeline_step, status=STATUS, shared=("event_threshold",),
    card_prefix="UNT",
    params=(
        Param("threshold", None, "U-Net CR-probability threshold in [0, 1] (default: the "
              "model's)", type=float, metavar="P",
              card=Card("UNTTHR", "U-Net filter PROB_UNET threshold")),
        Param("window", 3, "PROB_UNET = largest CR probability in this window around the "
              "event", "pixel", type=int, choices=_WINDOWS,
              card=Card("UNTWIN", "U-Net event window side")),
        Param("model", None, "U-Net model directory (default: the shipped model)",
              metavar="DIR"),
    ),
    calibration=CALIBRATION,
    counts=COUNTS,
    is_available=is_available, model_param="model",
)
