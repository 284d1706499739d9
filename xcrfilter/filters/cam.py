"""CAM-based machine-learning cosmic-ray filter (seed paper Sec. 3.2-3.3, 4).

Every event with reconstructed energy in the scored band (0.3-10 keV by
default, the band the method was trained and evaluated on) gets

1. the 64 x 64 window of the frame centred on it, scaled with the model's
   stored log-energy statistics and classified by the DenseNet frame
   classifier (probabilities of EMPTY, XRAY, CR, MIX and the class activation
   maps, Eq. 1);
2. the ten features of Sec. 4.2 (energy, P(XRAY), P(CR), CAM statistics in
   the 5 x 5 window at the event centre, f1-f4 of Eq. 9);
3. the balanced random forest's CR probability ``PROB_CR``.

``STATUS`` bit 5 is set where ``PROB_CR >= threshold``.  Events outside the
scored band get ``PROB_CR = NaN`` and bit 5 is *not* set for them: the model
says nothing about them (the paper scores only 0.3-10 keV events); the
very-faint-mode filter's ENERGY bit (bit 2) rejects events above the MIP
threshold, so run ``vfaint`` as well (``--method cam,vfaint``) for a complete
selection.  Nothing is dropped.

With the shipped ``context`` model the filter runs as a *cascade*
(`xcrfilter.ml.cascade`, on by default, ``cascade=False`` or ``--cam-cascade
off`` for the full evaluation): the context features are computed first and
the ``morph`` forest scores every in-band event from them (``PROB_MORPH``);
events with ``PROB_MORPH`` below the cascade band are accepted and events at
or above it rejected without the network, and get ``PROB_CR = PROB_MORPH``;
only the events in the band go through steps 1-3.  The band holds the
threshold, so bit 5 is ``PROB_CR >= threshold`` for every event either way;
the ``CAM_NET`` column says which events the network scored and the header
card ``CAMNNET`` how many.  The band was chosen on validation frames of every
simulator preset so that at most 0.5 % of the verdicts at the default
threshold differ from the full evaluation (``docs/cam.rst``).

Only the neighbourhoods of candidate events go through the network, in
batches, with a network compiled once per process (the model is cached), so
empty sky costs nothing.  CAM maps of whole frames (optional output) are
computed seam-free with :meth:`xcrfilter.ml.cam.CamNetwork.frame_maps`.
"""
from __future__ import annotations

import os

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from ..cli.argtypes import parse_energy
from ..meta import log_to_metadata
from ..io.products import CamMapWriter, write_cam_maps
from ..contract import Calibration, Card, Count, Filter, Param
from ..units import DEFAULT_BAND, as_band, energy_values
from .probability import (cube_and_events, flag_probability, get_model, model_and_threshold,
                          record_split_threshold)

__all__ = ["cam_filter", "cam_maps", "CAM_BIT", "DEFAULT_BAND", "pipeline_step", "FILTER"]

#: Calibration of the threshold on the observation (`xcrfilter.calibrate`):
#: the score column, the option it sets, +1 because high probabilities are
#: rejected, the keywords of the threshold and of the count; the network
#: looks at the event's own pixels.
CALIBRATION = Calibration("PROB_CR", "threshold", +1, card="CAMTHR", count_card="CAMNREJ",
                          prefix="CAM", uses_shape=True)

#: Header keywords holding counts (summed by the pipeline over chunks of frames).
COUNTS = (Count("CAMNSCO", "events scored by the CAM filter"),
          Count("CAMNREJ", "events rejected by the CAM filter (bit 5)"),
          Count("CAMNNET", "events scored by the CAM network"))

#: STATUS bit set by this filter.
CAM_BIT = 5
#: STATUS bits of this filter, NAME -> (bit, meaning) (`xcrfilter.registry`).
STATUS = {"CAM": (CAM_BIT, "CAM filter: PROB_CR >= threshold")}


#: Cascade by default (``cascade=None``, no ``--cam-cascade``): the morph
#: forest decides the events it is sure of (`xcrfilter.ml.cascade`), for
#: models with a cascade band; the others get the full evaluation.
DEFAULT_CASCADE = True


def is_available():
    """True when the shipped pretrained model is installed.

    ``xcrfilter filter --method all`` and ``xcrfilter demo`` include the CAM
    filter only then; ``--method cam`` with ``--cam-model DIR`` works either way.
    """
    from ..ml.model import default_model_dir
    from ..ml.model_files import NETWORK_FILE
    return (default_model_dir() / NETWORK_FILE).is_file()


def _get_model(model):
    from ..ml.model import CamModel, load_model
    return get_model(model, load_model, CamModel)


def _check_band(band):
    return as_band(band)


def score_events(cube_data, events, cam, band_ev, cascade=None, threshold=None):
    """PROB_CR (NaN outside the band) of ``events`` found in ``cube_data`` [eV].

    With a ``cascade`` (`xcrfilter.ml.cascade.Cascade`) and the
    ``threshold`` it is used at, only the events in its band go through the
    network; the others get ``PROB_CR = PROB_MORPH``.

    Returns
    -------
    prob : float32 ndarray (n,)
    network : bool ndarray (n,)
        True for the events the network and the CAM forest scored.
    """
    n = len(events)
    prob = np.full(n, np.nan, np.float32)
    network = np.zeros(n, bool)
    if n == 0:
        return prob, network
    e = energy_values(events["ENERGY"])
    inb = (e >= band_ev[0]) & (e < band_ev[1])
    if inb.any():
        f = np.asarray(events["FRAME"])[inb]
        y = np.asarray(events["RAWY"])[inb]
        x = np.asarray(events["RAWX"])[inb]
        nf = cube_data.shape[0]
        if f.min() < 0 or f.max() >= nf:
            raise ValueError(f"events: FRAME values outside the {nf} frames given")
        ctx = sub = None
        if cam.context_names or cascade is not None:
            from ..context import context_features
            sub = events[inb]
            ctx = context_features(cube_data, sub, **cam.context_kw)
        p = np.empty(len(f), np.float32)
        use = np.ones(len(f), bool)
        if cascade is not None:
            pm = np.asarray(cascade.prob_morph(sub, ctx), np.float32)
            use, _ = cascade.split(pm, threshold)
            p[~use] = pm[~use]
        if use.any():
            X, _ = cam.features(cube_data, f[use], y[use], x[use], e[inb][use])
            if cam.context_names:
                from ..context import feature_matrix
                X = np.hstack([X, feature_matrix(sub, ctx, cam.context_names)[use]])
            p[use] = cam.predict_proba(X).astype(np.float32)
        prob[inb] = p
        network[inb] = use
    return prob, network


def _cascade(cam, cascade):
    """The `~xcrfilter.ml.cascade.Cascade` to use, or None (full evaluation)."""
    if cascade is None:
        return cam.cascade if DEFAULT_CASCADE else None
    if isinstance(cascade, str):
        if cascade not in ("on", "off"):
            raise ValueError(f"cascade must be True/False, 'on' or 'off', got {cascade!r}")
        cascade = cascade == "on"
    if not isinstance(cascade, (bool, np.bool_)):
        raise TypeError(f"cascade must be True/False, 'on' or 'off', got "
                        f"{type(cascade).__name__}")
    if not cascade:
        return None
    if cam.cascade is None:
        raise ValueError(f"cascade: CAM model {cam.name!r} has no cascade band (only the "
                         "shipped 'context' model has one); use cascade off")
    return cam.cascade


def cam_maps(frames, model=None, classes=("XRAY", "CR"), tile=512, margin=48):
    """Upsampled class activation maps of whole frames.

    Parameters
    ----------
    frames : frames accepted by :func:`xcrfilter.io.frames.as_energy_cube`
        One frame or a cube.
    model : None, path or CamModel, optional
        Default: the shipped model.
    classes : sequence of str, optional
        Classes to return (``EMPTY``, ``XRAY``, ``CR``, ``MIX``).
    tile, margin : int, optional
        Processing tile and discarded margin (see
        :meth:`xcrfilter.ml.cam.CamNetwork.frame_maps`).

    Returns
    -------
    dict of str to ndarray, shape (n_frames, rows, cols), float32
    """
    from ..io.frames import FrameCube, as_energy_cube
    from ..ml.densenet import CLASS_NAMES
    cam = _get_model(model)
    cube = frames if isinstance(frames, FrameCube) else as_energy_cube(frames, name="frames")
    bad = [c for c in classes if c not in CLASS_NAMES]
    if bad:
        raise ValueError(f"classes: unknown {bad}; choose from {CLASS_NAMES}")
    idx = [CLASS_NAMES.index(c) for c in classes]
    out = {c: np.empty(cube.data.shape, np.float32) for c in classes}
    for i, fr in enumerate(cube.data):
        m = cam.network.frame_maps(fr, tile=tile, margin=margin)
        for c, k in zip(classes, idx):
            out[c][i] = m[..., k]
    return out


def start_run(options):
    """Start of a pipeline run: the ``cam`` options with ``cam_output`` opened for appending.

    A ``cam_output`` path becomes a `~xcrfilter.io.products.CamMapWriter` that
    the run's chunks append to and :func:`finish_run` closes; the state of
    the run lives in the returned options, nowhere else.
    """
    options = dict(options or {})
    path = options.get("cam_output")
    if path is not None and not isinstance(path, CamMapWriter):
        options["cam_output"] = CamMapWriter(path, overwrite=bool(options.get("overwrite")))
    return options


def finish_run(options, ok=True):
    """End of a pipeline run: write the CAM map file of ``options`` (or drop it).

    Parameters
    ----------
    options : dict or None
        The ``cam`` options of the run, as returned by :func:`start_run`.
    ok : bool, optional
        False after an error: remove the partial maps instead.  Default True.
    """
    writer = (options or {}).get("cam_output")
    if isinstance(writer, CamMapWriter):
        writer.close() if ok else writer.abort()


def _model_split_ev(cam):
    """Split threshold [eV] the model's features use (None: they use none)."""
    if cam.context_names:
        return float(cam.context_kw["split_threshold"].to_value(u.eV))
    if cam.feature_set == "extended":
        return float(cam.split_threshold_ev)
    return None


def _apply(cube, events, cam, threshold, band_ev, cam_output, overwrite, map_classes,
           split_threshold=None, cascade=None):
    if not isinstance(events, Table):
        raise TypeError(f"events must be an astropy Table/QTable, got {type(events).__name__}")
    missing = [c for c in ("FRAME", "RAWX", "RAWY", "ENERGY", "STATUS") if c not in events.colnames]
    if missing:
        raise ValueError(f"events lacks column(s) {missing}")
    out = QTable(events, copy=True)
    prob, network = score_events(cube.data, out, cam, band_ev, cascade, threshold)
    n_scored, n_rej = flag_probability(
        out, prob, threshold, CAM_BIT, "PROB_CR",
        "CAM filter CR probability (NaN outside the scored band; PROB_MORPH where "
        "CAM_NET is false)")
    out["CAM_NET"] = network
    out["CAM_NET"].description = "PROB_CR from the network and the CAM forest"
    n_net = int(network.sum())
    meta = out.meta
    record_split_threshold(meta, "CAM", "cam", _model_split_ev(cam), split_threshold)
    cards = cam.header_cards() + [
        ("CAMCASC", cascade is not None, "CAM cascade: morph decides outside band")]
    if cascade is not None:
        lo, hi = cascade.band(threshold)
        cards += [("CAMCLO", lo, "cascade: PROB_MORPH < CAMCLO accepted, no network"),
                  ("CAMCHI", hi, "cascade: PROB_MORPH >= CAMCHI rejected, no network")]
        how = (f"cascade on (network on PROB_MORPH in [{lo:.4f}, {hi:.4f}): "
               f"{n_net} of {n_scored} events)")
    else:
        how = "cascade off"
    FILTER.record(meta, {"threshold": float(threshold), "band": band_ev},
                  {"CAMNSCO": n_scored, "CAMNREJ": n_rej, "CAMNNET": n_net}, cards,
                  f"cam_filter: model {cam.name} sha256 {cam.sha256[:16]}, "
                  f"threshold {threshold:.4f}, band {band_ev[0]:g}-{band_ev[1]:g} eV, {how}: "
                  f"{n_rej} of {n_scored} scored events rejected")
    if cam_output is not None:
        maps = cam_maps(cube, cam, classes=map_classes)
        cards = cam.header_cards() + [
            ("CAMORDER", "frame,row,col", "axis order of each map (numpy)")]
        if isinstance(cam_output, CamMapWriter):
            cam_output.append(maps, cards)
        else:
            write_cam_maps(cam_output, maps, cards, overwrite=overwrite)
        where = cam_output.path if isinstance(cam_output, CamMapWriter) else cam_output
        log_to_metadata(meta, history=f"cam_filter: CAM maps {', '.join(map_classes)} "
                        f"written to {os.fspath(where)}")
    return out


def cam_filter(frames, events=None, *, threshold=None, model=None, cam_output=None,
               band=DEFAULT_BAND, event_threshold=260 * u.eV, split_threshold=80 * u.eV,
               mip_threshold=10 * u.keV, gain=None, detector=None, overwrite=False,
               map_classes=("XRAY", "CR"), cascade=None):
    """Score every event with the CAM + random-forest filter.

    Parameters
    ----------
    frames : CCDData, NDData, Quantity, FITS path(s) or FrameCube
        The frames the events come from (one frame or a cube; the network
        needs the pixels around each event).  An event table alone is not
        enough: give it as ``events`` together with its frames.
    events : `~astropy.table.Table`, optional
        Events found in ``frames`` (columns FRAME, RAWX, RAWY, ENERGY,
        STATUS); default: found here with :func:`xcrfilter.events.find_events`
        and the thresholds below.
    threshold : float, optional
        CR-probability threshold in [0, 1]; ``STATUS`` bit 5 where
        ``PROB_CR >= threshold``.  Default: the model's (chosen on the ROC at
        its stated lost-X-ray target, see its model card).
    model : None, path-like or `xcrfilter.ml.model.CamModel`, optional
        Model directory; default the pretrained model shipped in
        ``xcrfilter/data/cam_model``.
    cam_output : path-like or `~xcrfilter.io.products.CamMapWriter`, optional
        Write the CAM maps of ``map_classes`` (same shape as the frames) to
        this FITS file, with model, scaling, upsampling and class order in
        the headers; a ``CamMapWriter`` gets them appended (frames filtered
        a chunk at a time into one file).
    band : `~astropy.units.Quantity` pair, optional
        Scored energy band (default 0.3-10 keV).
    event_threshold, split_threshold, mip_threshold : Quantity, optional
        Event finding (260 eV, 80 eV, 10 keV), used when ``events`` is None.
    gain, detector : optional
        Passed to :func:`xcrfilter.io.frames.as_energy_cube`.
    overwrite : bool, optional
        Overwrite ``cam_output``.
    map_classes : sequence of str, optional
        Classes of the ``cam_output`` maps (default XRAY and CR).
    cascade : bool, 'on', 'off' or None, optional
        True: the cascade (`xcrfilter.ml.cascade`): the ``morph`` forest
        accepts the events with ``PROB_MORPH`` below the model's cascade
        band and rejects those at or above it, without the network, and
        these events get ``PROB_CR = PROB_MORPH``; the network and the CAM
        forest score only the events in the band.  A threshold outside the
        stored band widens it to the threshold, so ``STATUS`` bit 5 is
        always ``PROB_CR >= threshold``.  False: the network scores every
        in-band event (the full evaluation).  None (default): the cascade
        when the model has a cascade band (the shipped ``context`` model),
        else the full evaluation.

    Returns
    -------
    events : `~astropy.table.QTable`
        A new table: ``PROB_CR`` (float32, NaN outside the band; the morph
        forest's probability for the events the cascade decided), ``CAM_NET``
        (bool, True for the events the network scored), ``STATUS`` bit 5 set
        where rejected, header cards ``CAMMODEL``, ``CAMSHA`` (model
        checksum), ``CAMTHR``, ``CAMELO``/``CAMEHI`` [eV], ``CAMNSCO``
        (events scored), ``CAMNNET`` (of them, scored by the network),
        ``CAMCASC`` (cascade on) and with the cascade ``CAMCLO``/``CAMCHI``
        (its band of ``PROB_MORPH``), input scaling, class order, and a
        HISTORY line.

    Raises
    ------
    TypeError
        Bad frames, events, threshold, model or cascade types.
    ValueError
        Threshold outside [0, 1], events that do not fit the frames,
        ``cascade=True`` with a model that has no cascade band;
        ``cam_output`` that is one of the input files or not a regular file
        (checked before any work, as on the command line).
    FileExistsError
        ``cam_output`` exists and ``overwrite`` is False.
    xcrfilter.ml.checksums.ModelFileError
        Missing, corrupt or foreign model files.
    """
    from ..io.outputs import check_api_output
    check_api_output("cam_output", cam_output, frames, overwrite=overwrite)
    cube, events = cube_and_events(
        frames, events, "cam_filter", "the network looks at the pixels around each event",
        event_threshold=event_threshold, split_threshold=split_threshold,
        mip_threshold=mip_threshold, gain=gain, detector=detector)
    cam, thr = model_and_threshold(model, threshold, _get_model)
    band_ev = _check_band(band)
    return _apply(cube, events, cam, thr, band_ev, cam_output, overwrite, tuple(map_classes),
                  split_threshold, _cascade(cam, cascade))


# -- the declaration (xcrfilter.registry) -------------------------------------

def pipeline_step(cube, events, *, threshold=None, model=None, cam_output=None,
                  band=DEFAULT_BAND, overwrite=False, map_classes=("XRAY", "CR"),
                  split_threshold=None, cascade=None):
    """Pipeline step ``cam``: ``PROB_CR`` and STATUS bit 5 (see :func:`cam_filter`).

    ``cube`` is a `~xcrfilter.io.frames.FrameCube` and ``events`` the events found
    in it; returns a new table.  With ``cam_output`` (a
    `~xcrfilter.io.products.CamMapWriter` opened by :func:`start_run`), the
    chunks of a run are appended to one file, written when the run ends
    (:func:`finish_run`).  ``split_threshold`` (the run's) is compared with
    the model's: a different one is warned about and recorded
    (``CAMSPLRQ``), the model's is used.
    """
    cam, thr = model_and_threshold(model, threshold, _get_model)
    band_ev = _check_band(band)
    return _apply(cube, events, cam, thr, band_ev, cam_output, overwrite, tuple(map_classes),
                  split_threshold, _cascade(cam, cascade))


def _extra_options(args, options):
    """``--overwrite`` of the command applies to ``--cam-output``."""
    if options.get("cam_output") is not None:
        return {"overwrite": bool(getattr(args, "overwrite", False))}
    return {}


def _to_ev(band):
    return u.Quantity(band).to(u.eV)


def _on_off(value):
    return value == "on"


#: The filter's declaration (`xcrfilter.registry`).
FILTER = Filter(
    name="cam", step=pipeline_step, status=STATUS, shared=("split_threshold",),
    params=(
        Param("threshold", None, "CR-probability threshold in [0, 1] (default: the model's)",
              type=float, metavar="P", aliases=("--threshold",),
              card=Card("CAMTHR", "CAM filter PROB_CR rejection threshold")),
        Param("model", None, "model directory, or a shipped model by name: 'context' "
              "(network and whole-frame context features, trained on randomised physics; "
              "used when the option is absent) or 'paper' (the seed paper's ten features)",
              metavar="DIR|NAME"),
        Param("cam_output", None, "write CAM_XRAY and CAM_CR maps of every frame to this "
              "FITS file", metavar="CAMS.fits", flag="--cam-output", output=True),
        Param("band", None, "scored energy band [LO, HI) (default: 0.3keV 10keV)", "eV",
              type=parse_energy, nargs=2, metavar=("LO", "HI"), convert=_to_ev,
              card=Card(("CAMELO", "CAMEHI"), ("CAM scored band lower edge (inclusive)",
                                               "CAM scored band upper edge (exclusive)"))),
        Param("cascade", None, "'on' (default with the shipped 'context' model): the morph "
              "forest accepts or rejects the events it is sure of and only the others go "
              "through the network; 'off': the network scores every event (the full "
              "evaluation)", choices=("on", "off"), convert=_on_off),
        Param("overwrite", False, "overwrite cam_output", cli=False),
        Param("map_classes", ("XRAY", "CR"), "classes of the CAM maps written", cli=False),
    ),
    calibration=CALIBRATION,
    counts=COUNTS,
    is_available=is_available, model_param="model",
    start_run=start_run, finish_run=finish_run, extra_options=_extra_options,
)
