"""Laplacian (L.A.Cosmic) cosmic-ray baseline through ``astroscrappy``.

The classical optical cosmic-ray detector of van Dokkum (2001, PASP 113,
1420), as implemented by McCully et al. (astroscrappy), is run frame by frame
on the detector images.  Its pixel mask is the classical comparator of the
machine-learning filter: events whose 3x3 window touches a masked pixel get
``STATUS`` bit 3 (``LACOSMIC``).

Units
-----
``astroscrappy.detect_cosmics`` works in "counts" with a gain in
electron/count and a read noise in electrons; its noise model is
``sqrt(counts * gain + readnoise**2) / gain``.  Frames are converted as
follows before the call (and the cleaned image converted back):

* energy frames (eV, keV, and every frame inside the pipeline, which works in
  eV) are divided by the mean pair-creation energy ``w`` of the detector
  model (default 3.65 eV/electron) so that astroscrappy sees electrons with
  ``gain = 1``; the read noise is the detector model's ``readout_noise`` in
  electrons (7 e- for the WFI preset).  The Poisson term of the noise model
  is then the shot noise of the collected charge (an over-estimate by
  ``1/F`` ~ 8 of the Fano-limited charge noise of X-ray events; the read
  noise dominates empty pixels, which is what matters for the detection
  threshold);
* ``electron`` frames are passed unchanged with ``gain = 1``;
* ``adu`` frames are passed unchanged with astroscrappy's gain in
  electron/adu: the gain (``gain`` argument, else the header ``GAIN``
  keyword, else the detector model's), which in xcrfilter is always an
  energy per adu (`xcrfilter.units`), divided by the pair energy.

``satlevel`` is in astroscrappy's unit, electrons; a `~astropy.units.Quantity`
in eV, electron or adu is converted.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable

from ..contract import Card, Count, Filter, Param
from ..events import find_events, set_status_bit
from ..io.frames import FrameCube, as_energy_cube
from .lacosmic_units import (counts_setup, frames_with_unit, integer_at_least, positive_number,
                             saturation_electrons)

__all__ = ["lacosmic_filter", "lacosmic_mask", "cosmic_ray_pixels", "LACOSMIC_BIT",
           "LACOSMIC_DEFAULTS", "mask_to_events", "pipeline_step", "FILTER"]

#: Header keywords holding counts (summed by the pipeline over chunks of frames).
COUNTS = (Count("LACNCRPX", "pixels in the L.A.Cosmic CR mask"),
          Count("LACNEVT", "events flagged STATUS bit 3 (LACOSMIC)"))

#: STATUS bit set by this filter.
LACOSMIC_BIT = 3
#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {"LACOSMIC": (LACOSMIC_BIT, "3x3 touches the Laplacian (L.A.Cosmic) mask")}

#: astroscrappy keyword defaults used by :func:`lacosmic_filter` (same as
#: ``astroscrappy.detect_cosmics`` except ``satlevel``, which defaults to the
#: header ``SATURATE`` keyword or infinity).
LACOSMIC_DEFAULTS = dict(sigclip=4.5, sigfrac=0.3, objlim=5.0, pssl=0.0, niter=4,
                         sepmed=True, cleantype="meanmask", fsmode="median",
                         psfmodel="gauss", psffwhm=2.5, psfsize=7, psfk=None,
                         psfbeta=4.765, verbose=False)

_CLEANTYPES = ("median", "medmask", "meanmask", "idw")
_FSMODES = ("median", "convolve")
_PSFMODELS = ("gauss", "gaussx", "gaussy", "moffat")

# --------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------


def mask_to_events(events, crmask, bit=LACOSMIC_BIT):
    """Set a ``STATUS`` bit on events whose 3x3 window touches a masked pixel.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with integer columns ``FRAME``, ``RAWX``, ``RAWY`` and ``STATUS``.
    crmask : bool ndarray, shape (n_frames, ny, nx) or (ny, nx)
        Pixel mask (True = cosmic-ray pixel).
    bit : int
        STATUS bit to set.  Default 3 (``LACOSMIC``).

    Returns
    -------
    table : `~astropy.table.QTable`
        A copy of ``events`` with the bit cleared, then set where touched;
        the input is not modified.
    touched : bool ndarray, shape (n_events,)
        Which events touch the mask.
    """
    crmask = np.asarray(crmask, bool)
    if crmask.ndim == 2:
        crmask = crmask[None]
    out = QTable(events, copy=True)
    if len(out) == 0:
        return out, np.zeros(0, bool)
    # 3x3 dilation inside each frame (the structure does not link frames).
    from scipy import ndimage
    grown = ndimage.binary_dilation(crmask, structure=np.ones((1, 3, 3), bool))
    f = np.asarray(out["FRAME"], dtype=np.intp)
    y = np.asarray(out["RAWY"], dtype=np.intp)
    x = np.asarray(out["RAWX"], dtype=np.intp)
    if (f.min() < 0 or f.max() >= grown.shape[0] or y.min() < 0 or y.max() >= grown.shape[1]
            or x.min() < 0 or x.max() >= grown.shape[2]):
        raise ValueError("events: FRAME/RAWY/RAWX outside the mask of shape "
                         f"{crmask.shape}.")
    touched = grown[f, y, x]
    set_status_bit(out, bit, touched)
    return out, touched


# --------------------------------------------------------------------------
# the filter
# --------------------------------------------------------------------------
def lacosmic_mask(frames, *, sigclip=4.5, sigfrac=0.3, objlim=5.0,
                  gain=None, readnoise=None, satlevel=None, pssl=0.0, niter=4,
                  sepmed=True, cleantype="meanmask", fsmode="median", psfmodel="gauss",
                  psffwhm=2.5, psfsize=7, psfk=None, psfbeta=4.765, verbose=False,
                  inbkg=None, invar=None, detector=None, unit=None,
                  return_cleaned=False):
    """Detect cosmic-ray pixels with L.A.Cosmic (astroscrappy), frame by frame.

    Follows ``ccdproc.cosmicray_lacosmic``: a new `~astropy.nddata.CCDData`
    is returned, the input is never modified, the output mask is the input
    bad-pixel mask OR the cosmic-ray mask, and every parameter is logged in
    the header.

    Parameters
    ----------
    frames : `~astropy.nddata.CCDData`, `~astropy.units.Quantity`, FrameCube, str or ndarray
        One frame (ny, nx) or a cube (n_frames, ny, nx) with a unit of energy
        (eV, keV), ``electron`` or ``adu``; a FITS path (unit from ``BUNIT``);
        an ``xcrfilter.io.frames.FrameCube`` (eV); or a plain ndarray with ``unit=``.
        Frames must be at least 5 x 5 pixels.
    sigclip, sigfrac, objlim, pssl, niter, sepmed, cleantype, fsmode, psfmodel, psffwhm, \
    psfsize, psfk, psfbeta, verbose, inbkg, invar
        Passed unchanged to ``astroscrappy.detect_cosmics`` (same names and
        defaults; see its documentation).  ``pssl`` is added to the counts
        before detection and removed from the cleaned image (as ccdproc does).
        ``inbkg``/``invar`` must have the frames' shape and be in counts
        (counts squared) as defined in the module notes.
    gain : `~astropy.units.Quantity` [eV / adu or electron / adu], optional
        Gain for ``adu`` frames (`xcrfilter.units.as_gain`; a bare number is
        refused as ambiguous).  Default: header ``GAIN`` (eV/adu, or the unit
        in brackets at the start of its comment, e.g. ``[electron/adu]``),
        else the detector model's gain.  Energy and electron frames use gain
        1 after conversion to electrons.
    readnoise : `~astropy.units.Quantity` or float, optional
        Read noise rms in electrons (float) or a Quantity in electron or eV.
        Default: the detector model's ``readout_noise`` for energy frames, the
        header ``RDNOISE`` for electron/adu frames, else the detector model.
    satlevel : `~astropy.units.Quantity` or float, optional
        Saturation level, electrons (float) or a Quantity in eV, electron or
        adu.  Default: header ``SATURATE`` (in the frames' unit), else no
        saturation (infinity).
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Source of the pair energy and read noise.  Default WFI preset.
    unit : `~astropy.units.Unit` or str, optional
        Unit of a plain ndarray (or to override a CCDData's unit).
    return_cleaned : bool, optional
        If True the output ``data`` is astroscrappy's cleaned image (converted
        back to the input unit); otherwise the input data.  Default False.

    Returns
    -------
    ccd : `~astropy.nddata.CCDData`
        Same shape and unit as the input; ``mask`` = input mask | CR mask;
        header cards ``LAC*`` record every parameter, ``LACNCRPX`` the number
        of CR pixels, plus a HISTORY line.  The events flagged by this mask
        come from :func:`lacosmic_filter`.

    Raises
    ------
    TypeError
        Unknown frame type, plain ndarray without ``unit``.
    ValueError
        Wrong dimensionality, frames smaller than 5 x 5, no gain for adu
        frames, invalid astroscrappy option, events outside the frames.
    astropy.units.UnitConversionError
        Frames not in energy, electron or adu.

    References
    ----------
    van Dokkum P. G., 2001, PASP 113, 1420; McCully C. et al., astroscrappy
    (Zenodo 1482019).
    """
    det = _detect(frames, sigclip=sigclip, sigfrac=sigfrac, objlim=objlim, gain=gain,
                  readnoise=readnoise, satlevel=satlevel, pssl=pssl, niter=niter, sepmed=sepmed,
                  cleantype=cleantype, fsmode=fsmode, psfmodel=psfmodel, psffwhm=psffwhm,
                  psfsize=psfsize, psfk=psfk, psfbeta=psfbeta, verbose=verbose, inbkg=inbkg,
                  invar=invar, detector=detector, unit=unit, return_cleaned=return_cleaned)
    out_data = det.cleaned if return_cleaned else det.cube.astype(np.float32, copy=True)
    out_mask = det.crmask | det.bad
    if det.was_2d:
        out_data, out_mask = out_data[0], out_mask[0]
    meta = det.header.copy() if isinstance(det.header, fits.Header) else fits.Header()
    _write_cards(meta, det.params, det.n_cr, det.version)
    from astropy.nddata import CCDData
    return CCDData(out_data, unit=det.unit, mask=out_mask, meta=meta)


def _detect(frames, *, sigclip, sigfrac, objlim, gain, readnoise, satlevel, pssl, niter,
            sepmed, cleantype, fsmode, psfmodel, psffwhm, psfsize, psfk, psfbeta, verbose,
            inbkg, invar, detector, unit, return_cleaned=False):
    """Run astroscrappy on every frame; returns a namespace (crmask, bad, cube, ...)."""
    import types

    import astroscrappy

    data, in_unit, in_mask, header, was_2d, _ = frames_with_unit(frames, unit)
    if data.ndim not in (2, 3):
        raise ValueError(f"frames must be 2-D (ny, nx) or 3-D (n_frames, ny, nx), got "
                         f"shape {data.shape}.")
    cube = data[None] if data.ndim == 2 else data
    if cube.shape[0] == 0 or min(cube.shape[1:]) < 5:
        raise ValueError(f"frames must hold >= 1 frame of >= 5 x 5 pixels, got {data.shape}.")
    if cleantype not in _CLEANTYPES:
        raise ValueError(f"cleantype must be one of {_CLEANTYPES}, got {cleantype!r}.")
    if fsmode not in _FSMODES:
        raise ValueError(f"fsmode must be one of {_FSMODES}, got {fsmode!r}.")
    if psfmodel not in _PSFMODELS:
        raise ValueError(f"psfmodel must be one of {_PSFMODELS}, got {psfmodel!r}.")
    for name, value in (("sigclip", sigclip), ("sigfrac", sigfrac), ("objlim", objlim),
                        ("psffwhm", psffwhm), ("psfbeta", psfbeta)):
        positive_number(name, value)
    positive_number("pssl", pssl, allow_zero=True, sign_free=True)
    niter = integer_at_least("niter", niter, 1)
    psfsize = integer_at_least("psfsize", psfsize, 3)
    if psfsize % 2 == 0:
        raise ValueError(f"psfsize must be an odd number of pixels >= 3, got {psfsize}.")

    scale, g, rn, count_unit, pair = counts_setup(in_unit, header, gain, readnoise, detector)
    sat = saturation_electrons(satlevel, header, in_unit, scale, g, pair)
    if np.isnan(sat) or sat <= 0:
        raise ValueError(f"satlevel must be positive (electron, or a Quantity in eV, electron "
                         f"or adu), got {satlevel!r}; omit it for no saturation.")

    bad = np.zeros(cube.shape, bool) if in_mask is None else \
        np.broadcast_to(np.asarray(in_mask, bool).reshape(
            in_mask.shape if in_mask.ndim == 3 else (1,) + in_mask.shape), cube.shape)
    finite = np.isfinite(cube)
    bad = bad | ~finite

    def _per_frame(arr, name):
        if arr is None:
            return [None] * cube.shape[0]
        arr = np.asarray(arr, dtype=np.float32)
        if arr.shape == cube.shape[1:]:
            return [arr] * cube.shape[0]
        if arr.shape == cube.shape:
            return list(arr)
        raise ValueError(f"{name} must have shape {cube.shape[1:]} or {cube.shape}, "
                         f"got {arr.shape}.")

    bkgs, vars_ = _per_frame(inbkg, "inbkg"), _per_frame(invar, "invar")
    crmask = np.zeros(cube.shape, bool)
    cleaned = np.empty(cube.shape, np.float32) if return_cleaned else None
    sat_arg = sat if np.isfinite(sat) else np.inf
    for i in range(cube.shape[0]):
        counts = np.where(finite[i], cube[i], 0.0)
        peak = float(np.abs(counts).max())
        if max(peak, peak * scale + abs(pssl)) > np.finfo(np.float32).max:
            # finite values beyond float32 (astroscrappy's counts, the output image)
            raise ValueError(f"frames: pixel(s) out of range in frame {i}: {peak:.3g} "
                             f"{in_unit} exceeds the largest float32 value, "
                             f"{float(np.finfo(np.float32).max):.3g}.")
        counts = counts * scale + pssl
        m, c = astroscrappy.detect_cosmics(
            counts.astype(np.float32), inmask=bad[i] if bad[i].any() else None,
            inbkg=bkgs[i], invar=vars_[i], sigclip=sigclip, sigfrac=sigfrac, objlim=objlim,
            gain=g, readnoise=rn, satlevel=sat_arg, niter=int(niter), sepmed=sepmed,
            cleantype=cleantype, fsmode=fsmode, psfmodel=psfmodel, psffwhm=psffwhm,
            psfsize=int(psfsize), psfk=psfk, psfbeta=psfbeta, verbose=verbose)
        crmask[i] = m
        if return_cleaned:
            cleaned[i] = (c - pssl) / scale

    params = dict(sigclip=float(sigclip), sigfrac=float(sigfrac), objlim=float(objlim),
                  gain=float(g), readnoise=float(rn),
                  satlevel=float(sat) if np.isfinite(sat) else -1.0, pssl=float(pssl),
                  niter=int(niter), sepmed=bool(sepmed), cleantype=cleantype, fsmode=fsmode,
                  psfmodel=psfmodel, psffwhm=float(psffwhm), psfsize=int(psfsize),
                  psfk=psfk is not None, psfbeta=float(psfbeta), inbkg=inbkg is not None,
                  invar=invar is not None, count_unit=count_unit, pair_energy=pair)
    return types.SimpleNamespace(crmask=crmask, bad=bad, cube=cube, cleaned=cleaned,
                                 was_2d=was_2d, header=header, unit=in_unit, params=params,
                                 n_cr=int(crmask.sum()), version=astroscrappy.__version__)


def lacosmic_filter(frames, events=None, *, event_threshold=260 * u.eV,
                    split_threshold=80 * u.eV, mip_threshold=10 * u.keV, **options):
    """Flag events whose 3x3 window touches an L.A.Cosmic cosmic-ray pixel.

    Parameters
    ----------
    frames : `~astropy.nddata.CCDData`, `~astropy.units.Quantity`, FrameCube, str or ndarray
        Frames as for :func:`lacosmic_mask`.
    events : `~astropy.table.Table`, optional
        Events (``FRAME``, ``RAWX``, ``RAWY``, ``STATUS``) of the same
        frames.  Default: found in ``frames`` with
        `xcrfilter.events.find_events` and the thresholds below (frames in
        an energy unit, or adu with a gain, see `xcrfilter.io.frames.as_energy_cube`).
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity` [energy]
        Event finding when ``events`` is None (defaults 260 eV, 80 eV,
        10 keV).
    **options
        Keyword arguments of :func:`lacosmic_mask` (``sigclip``, ``gain``,
        ``readnoise``, ``satlevel``, ``detector``, ...).

    Returns
    -------
    `~astropy.table.QTable`
        A new table: the input columns and ``STATUS`` with bit 3 cleared and
        then set on events touching the mask (a re-run replaces it); the
        ``LAC*`` cards in ``meta``, ``LACNEVT`` (events flagged) and a
        HISTORY line.  The input is not modified.

    Raises
    ------
    TypeError, ValueError
        As :func:`lacosmic_mask`; also missing event columns and events
        outside the frames.
    """
    options.pop("return_cleaned", None)
    if events is None:
        if not isinstance(frames, FrameCube):
            frames = as_energy_cube(frames, gain=options.get("gain"),
                                    detector=options.get("detector"), name="frames")
        events = find_events(frames, event_threshold, split_threshold, mip_threshold)
    _check_events(events)
    det = _detect(frames, **{**_DETECT_DEFAULTS, **options})
    new_events, touched = mask_to_events(events, det.crmask)
    _write_cards(new_events.meta, det.params, det.n_cr, det.version,
                 n_events=int(touched.sum()))
    return new_events


def cosmic_ray_pixels(frames, **options):
    """Cosmic-ray pixels only (no input bad pixels), for pixel-wise evaluation.

    Parameters
    ----------
    frames
        As for :func:`lacosmic_mask`.
    **options
        Keyword arguments of :func:`lacosmic_mask`.

    Returns
    -------
    bool ndarray, shape (n_frames, ny, nx)
        True on the pixels astroscrappy marks as cosmic rays.
    """
    options.pop("return_cleaned", None)
    return _detect(frames, **{**_DETECT_DEFAULTS, **options}).crmask


def _check_events(events):
    from astropy.table import Table
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table/QTable, got {type(events).__name__}")
    missing = [c for c in ("FRAME", "RAWX", "RAWY", "STATUS") if c not in events.colnames]
    if missing:
        raise ValueError(f"events lack column(s) {missing} needed by the L.A.Cosmic filter")


_DETECT_DEFAULTS = dict(LACOSMIC_DEFAULTS, gain=None, readnoise=None, satlevel=None,
                        inbkg=None, invar=None, detector=None, unit=None)


def _write_cards(meta, params, n_cr, version, n_events=None):
    cards = [
        ("LACCUNIT", params["count_unit"], "unit of the counts given to astroscrappy"),
        ("LACPAIR", params["pair_energy"], "[eV/electron] pair energy for eV->electron"),
        ("LACVERS", str(version), "astroscrappy version")]
    counts = {"LACNCRPX": n_cr}
    text = ("lacosmic_filter: astroscrappy.detect_cosmics(" + ", ".join(
        f"{k}={params[k]}" for k in ("sigclip", "sigfrac", "objlim", "gain", "readnoise",
                                     "satlevel", "niter", "sepmed", "cleantype", "fsmode"))
            + f") -> {n_cr} CR pixels")
    if n_events is not None:
        counts["LACNEVT"] = n_events
        text += f", {n_events} events flagged (STATUS bit {LACOSMIC_BIT})"
    FILTER.record(meta, params, counts, cards, text)


# --------------------------------------------------------------------------
# the declaration (xcrfilter.registry)
# --------------------------------------------------------------------------
def pipeline_step(cube, events, *, detector=None, **options):
    """Pipeline step ``lacosmic``: STATUS bit 3 from the L.A.Cosmic mask.

    Parameters
    ----------
    cube : ``xcrfilter.io.frames.FrameCube``
        Frames in eV (n_frames, ny, nx) with their bad-pixel mask.
    events : `~astropy.table.QTable`
        Events of ``cube``; not modified.
    detector : `~xcrfilter.detector.DetectorModel`, optional
        Pair energy and read noise (default WFI preset).
    **options
        The parameters of :data:`FILTER` (keywords of :func:`lacosmic_mask`);
        the registry rejects any other.

    Returns
    -------
    `~astropy.table.QTable`
        New events table with bit 3 set and the ``LAC*`` cards in ``meta``.
    """
    return lacosmic_filter(cube, events, detector=detector, **options)


_D = LACOSMIC_DEFAULTS

#: The filter's declaration (`xcrfilter.registry`): the astroscrappy keywords.
FILTER = Filter(
    name="lacosmic", step=pipeline_step, status=STATUS, shared=("detector",),
    counts=COUNTS, pixel_mask=cosmic_ray_pixels,
    params=(
        Param("sigclip", _D["sigclip"], "Laplacian-to-noise limit for cosmic-ray pixels",
              type=float, metavar="S",
              card=Card("LACSIGCL", "L.A.Cosmic Laplacian-to-noise limit")),
        Param("sigfrac", _D["sigfrac"], "fraction of sigclip for the neighbours of cosmic-ray "
              "pixels", type=float, metavar="F",
              card=Card("LACSIGFR", "L.A.Cosmic neighbour fraction of sigclip")),
        Param("objlim", _D["objlim"], "minimum contrast of Laplacian to fine-structure image",
              type=float, metavar="C",
              card=Card("LACOBJLM", "L.A.Cosmic Laplacian / fine-structure contrast")),
        Param("niter", _D["niter"], "number of detection iterations", type=int, metavar="N",
              card=Card("LACNITER", "L.A.Cosmic iterations")),
        Param("readnoise", None, "read noise (default: the detector model's)", "electron",
              type=float, metavar="RN",
              card=Card("LACRDNS", "read noise passed to astroscrappy")),
        Param("satlevel", None, "saturation level (default: no saturation)", "electron",
              type=float, metavar="LEVEL",
              card=Card("LACSATLV", "saturation level (-1 = none)")),
        Param("cleantype", _D["cleantype"], "how masked pixels are replaced in the cleaned "
              "image", choices=_CLEANTYPES,
              card=Card("LACCLEAN", "astroscrappy clean algorithm")),
        Param("fsmode", _D["fsmode"], "fine-structure image: 3x3 and 7x7 medians, or a PSF "
              "convolution", choices=_FSMODES,
              card=Card("LACFSMOD", "fine-structure image mode")),
        Param("psfmodel", _D["psfmodel"], "PSF model of --lacosmic-fsmode convolve",
              choices=_PSFMODELS,
              card=Card("LACPSFMD", "PSF model for fsmode=convolve")),
        Param("psffwhm", _D["psffwhm"], "PSF full width at half maximum (fsmode convolve)",
              "pixel", type=float, metavar="FWHM",
              card=Card("LACPSFFW", "PSF FWHM for fsmode=convolve")),
        Param("psfsize", _D["psfsize"], "PSF kernel size, odd (fsmode convolve)", "pixel",
              type=int, metavar="N",
              card=Card("LACPSFSZ", "PSF kernel size for fsmode=convolve")),
        Param("psfbeta", _D["psfbeta"], "Moffat beta of --lacosmic-psfmodel moffat",
              type=float, metavar="BETA",
              card=Card("LACPSFBT", "Moffat beta for psfmodel=moffat")),
        Param("sepmed", True, "use the full (not separable) median filter", negate=True,
              card=Card("LACSEPMD", "separable median filter used")),
        Param("gain", None, "gain of adu frames", "electron/adu", cli=False,
              card=Card("LACGAIN", "gain passed to astroscrappy", "electron/count")),
        Param("pssl", _D["pssl"], "previously subtracted sky level", "count", cli=False,
              card=Card("LACPSSL", "previously subtracted sky level")),
        Param("psfk", None, "user PSF kernel (ndarray)", cli=False,
              card=Card("LACPSFK", "user PSF kernel given")),
        Param("inbkg", None, "background image (ndarray)", cli=False,
              card=Card("LACINBKG", "background image given")),
        Param("invar", None, "variance image (ndarray)", cli=False,
              card=Card("LACINVAR", "variance image given")),
        Param("unit", None, "unit of plain-array frames", cli=False),
    ),
)
