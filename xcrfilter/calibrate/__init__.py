"""Thresholds that hold on the user's data: calibration on the observation itself.

How many X-rays a context filter loses depends on the observation itself:
with more tracks per frame, more celestial X-rays land near one by chance;
with more X-rays per frame, more neighbours surround each.  A probability
threshold (or SAC radius) fixed on one mix of rates loses more at higher
rates.  Two ways of measuring the loss on the observation are offered:
**frame shift** (the default of ``--max-lost-xray``,
:mod:`xcrfilter.calibrate.frameshift`) scores the observation's own events
placed into other frames of it; **injection** (``--calibration injection``,
:mod:`xcrfilter.calibrate.injection`) scores simulated X-rays injected into
the first chunk of frames.

This module holds what they share: the threshold that rejects a given
fraction of a sample of X-ray scores (:func:`threshold_for`) and its
application to every event (:func:`apply_threshold`), the header keywords of
the result (:func:`write_calibration_cards`), and where an event may be
placed in another frame (:data:`SHIFTS`, :func:`own_pixels`,
:func:`covered`; the observation-context filter places events the same way).
Either way the achieved fraction is reported with its 68 % binomial
(Wilson) interval.  Filters take part through the ``calibration`` of their
declaration (:class:`~xcrfilter.contract.Filter`), a
:class:`~xcrfilter.contract.Calibration`.
"""
from __future__ import annotations

import numpy as np
from astropy.stats import binom_conf_interval

from ..events import set_status_bit
from ..meta import add_history, card_comment, set_card

__all__ = ["SHIFTS", "MIN_REJECTED", "CLEAN_RADIUS", "parse_fraction", "threshold_for",
           "apply_threshold", "own_pixels", "covered", "scoring_options", "write_calibration_cards"]

#: Frame offsets of the frame-shift sample.  They start at 3 so that charge
#: read out across a frame boundary (the frame after a hit) never serves as
#: "another frame"; a chunk of n frames uses the offsets below n.
SHIFTS = (3, 7, 17, 41)

#: The shifted sample must hold at least this many rejected events at the
#: asked fraction (relative precision about 1/sqrt(10), 30 %); fewer is an error.
MIN_REJECTED = 10

#: Filters that look at the event's own pixels are calibrated on the
#: placements of events with no particle track within this many pixels in
#: their own frame (and no other island nearby): almost free of shower
#: products, whose own shape would be placed along with them.
CLEAN_RADIUS = 100.0


def parse_fraction(text):
    """Parse ``"2%"``, ``"0.02"`` or a number into a fraction in (0, 1).

    Raises
    ------
    ValueError
        If it is not a number, or not in (0, 1) (after the percent sign).
    """
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a fraction; write e.g. 2% or 0.02") from None
    if not 0 < value < 1:
        raise ValueError(f"lost X-ray fraction must be in (0, 1), got {text!r}")
    return value


def threshold_for(scores, sign, max_lost, *, limit=None):
    """The threshold that rejects at most ``max_lost`` of ``scores``.

    Parameters
    ----------
    scores : ndarray, shape (n,)
        Scores of X-ray(-like) events, NaN-free (``inf`` allowed, e.g. no
        track in the frame).
    sign : {+1, -1}
        +1: ``score >= value`` is rejected; -1: ``score <= value`` is rejected.
    max_lost : float
        Fraction in (0, 1).
    limit : float, optional
        Largest value for ``sign == -1``: a radius beyond every finite
        distance rejects nothing more.  Default: the largest finite score.

    Returns
    -------
    dict
        ``value``, ``achieved`` (fraction of ``scores`` rejected at it),
        ``lo``/``hi`` (68 % Wilson interval of ``achieved``), ``target``.
    """
    # the score columns are float32: a value one float32 step beyond the
    # k-th score decides the same in float32 and float64
    s = np.asarray(scores, np.float32).astype(float)
    k = int(np.floor(max_lost * s.size))
    if sign > 0:   # reject score >= value
        top = np.sort(s)[::-1]
        value = float(np.nextafter(np.float32(top[k]), np.float32(np.inf))) if k < s.size \
            else 0.0
        value = min(value, 1.0)
        rejected = int(np.sum(s >= value))
    else:          # reject score <= value
        low = np.sort(s)
        value = float(np.nextafter(np.float32(low[k]), np.float32(-np.inf))) if k < s.size \
            else float(low[-1])
        if limit is None:
            finite = s[np.isfinite(s)]
            limit = float(finite.max()) if finite.size else 0.0
        value = min(max(value, 0.0), float(limit))
        rejected = int(np.sum(s <= value))
    lo, hi = binom_conf_interval(rejected, s.size, confidence_level=0.6827, interval="wilson")
    return dict(value=value, achieved=rejected / s.size, lo=float(lo), hi=float(hi),
                target=float(max_lost))


def own_pixels(active, frame, y, x):
    """The pixels of each event's 5 x 5 that are its own, and whether others are there.

    Returns
    -------
    own : bool ndarray, shape (n, 5, 5)
        The central 3 x 3, and the active pixels of the 5 x 5 connected
        (8-connectivity) to the active pixels of the 3 x 3.
    foreign : bool ndarray, shape (n,)
        Some active pixel of the 5 x 5 is not connected: another island.
    """
    off = np.arange(-2, 3)
    patch = active[frame[:, None, None], y[:, None, None] + off[None, :, None],
                   x[:, None, None] + off[None, None, :]]
    island = np.zeros_like(patch)
    island[:, 1:4, 1:4] = patch[:, 1:4, 1:4]
    for _ in range(4):  # grow within the 5 x 5: every path of it is covered
        grown = np.pad(island, ((0, 0), (1, 1), (1, 1)))
        grown = np.any([grown[:, i:i + 5, j:j + 5] for i in range(3) for j in range(3)],
                       axis=0)
        island = grown & patch
    own = island.copy()
    own[:, 1:4, 1:4] = True
    return own, (patch & ~island).any(axis=(1, 2))


def covered(active, frame, y, x, own):
    """True where ``active[frame]`` has charge on the pixels ``own`` (5 x 5) would take.

    An X-ray landing there would pile up with that charge: not an event of
    its own, so such a placement is left out.
    """
    off = np.arange(-2, 3)
    there = active[frame[:, None, None], y[:, None, None] + off[None, :, None],
                   x[:, None, None] + off[None, None, :]]
    return (there & own).any(axis=(1, 2))


def scoring_options(options):
    """A filter's options for scoring injected or placed events: nothing is written.

    ``options`` without ``cam_output`` (a new dict; None gives an empty one),
    so that scoring events for a calibration never writes a product.
    """
    return {k: v for k, v in (options or {}).items() if k != "cam_output"}


def apply_threshold(events, spec, value):
    """Set a filter's STATUS bit of every event from its score column at ``value``.

    The bit is cleared first; NaN scores (unscored events) never set it.  The
    filter's threshold keyword and rejected-event count are rewritten.
    ``events`` is modified in place.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with the filter's score column and ``STATUS``.
    spec : `~xcrfilter.contract.Filter`
        The filter's declaration (its ``calibration`` and STATUS bit).
    value : float
        The threshold (or radius [pixel]).

    Returns
    -------
    int
        Events rejected.
    """
    cal = spec.calibration
    (bit, _), = spec.status.values()
    score = np.asarray(events[cal.column], float)
    ok = np.isfinite(score)
    rej = np.zeros(len(events), bool)
    rej[ok] = score[ok] <= value if cal.sign < 0 else score[ok] >= value
    set_status_bit(events, bit, rej)
    set_card(events.meta, cal.card, float(value), card_comment(events.meta, cal.card))
    if cal.count_card is not None:
        set_card(events.meta, cal.count_card, int(rej.sum()),
                 card_comment(events.meta, cal.count_card))
    return int(rej.sum())


def write_calibration_cards(meta, specs, calibrated):
    """Header keywords and HISTORY of every calibrated threshold.

    Parameters
    ----------
    meta : dict
        Event-table ``meta``, modified in place.
    specs : dict
        Filter name -> its `~xcrfilter.contract.Filter` (whose
        ``calibration`` gives the prefix).
    calibrated : dict
        Filter name -> report of :func:`xcrfilter.calibrate.injection.calibrate`,
        :func:`threshold_for` (frame shift,
        :func:`xcrfilter.calibrate.frameshift.apply_shift_calibration`) or a
        learning filter.
    """
    for name, rep in calibrated.items():
        cal = specs[name].calibration
        key = cal.prefix
        if rep["method"] == "none":
            # too short an observation for the default calibration
            set_card(meta, f"{key}CALM", "NONE", f"{name} calibration method")
            set_card(meta, f"{key}CALN", rep["n"], "events placed in other frames")
            add_history(meta, f"calibrate: {name} not calibrated: {rep['placements']} "
                              f"frame-shift placements of {rep['n']} events, "
                              f"{rep['need']} needed for {100 * rep['target']:.3g}%; "
                              "default threshold kept")
            continue
        # what the value is: the declared parameter with its unit (SAC's radius
        # [pixel]), or, unitless, a threshold on the filter's score column
        unit = specs[name].param(cal.option).unit
        what = f"{cal.option} [{unit}]" if unit else f"{cal.column} threshold"
        how = "frame shift" if rep["method"] == "shift" else "injection"
        sample = "events placed in other frames" if rep["method"] == "shift" else \
            "injected X-ray events scored"
        set_card(meta, f"{key}CALM", rep["method"].upper(), f"{name} calibration method")
        set_card(meta, f"{key}CALV", rep["value"], f"{name} {what} calibrated by {how}")
        set_card(meta, f"{key}CALF", rep["achieved"], f"{name}: X-ray loss estimate")
        set_card(meta, f"{key}CALLO", rep["lo"], "68% Wilson interval, lower")
        set_card(meta, f"{key}CALHI", rep["hi"], "68% Wilson interval, upper")
        set_card(meta, f"{key}CALN", rep["n"], sample)
        if rep["method"] == "shift":
            set_card(meta, f"{key}CALS", rep["shifts"], "frame shifts of the sample")
            set_card(meta, f"{key}CALX", rep["excess"],
                     "rejected in own frame minus shifted (0.3-10 keV)")
            add_history(meta, f"calibrate: {name} {what} {rep['value']:.4g} by frame shift "
                              f"(shifts {rep['shifts']}): {rep['n']} events in "
                              f"{rep['placements']} placements, estimated X-ray loss "
                              f"{100 * rep['achieved']:.2f}% (68%: {100 * rep['lo']:.2f}-"
                              f"{100 * rep['hi']:.2f}%, asked {100 * rep['target']:.2f}%); "
                              f"{rep['rejected']} events rejected; in their own frames "
                              f"{100 * rep['own']:.2f}% of the 0.3-10 keV events, "
                              f"{100 * rep['excess']:.2f} points above the shifted rate "
                              "(events correlated with the frame's charge)")
        else:
            add_history(meta, f"calibrate: {name} {what} {rep['value']:.4g} rejects "
                              f"{100 * rep['achieved']:.2f}% of {rep['n']} injected X-ray "
                              f"events (asked {100 * rep['target']:.2f}%)")
