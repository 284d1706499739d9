"""Compare every cosmic-ray filter on the same events against simulator truth.

``xcrfilter compare OBS.fits [--truth OBS.fits] -o report/`` and
:func:`compare_filters` run every registered filter (`xcrfilter.registry`):
the very-faint-mode filter (VF), the Laplacian baseline (LACOSMIC),
self-anti-coincidence (SAC) and, when their models are available, the CAM
and MORPH filters, on the *same* events, and report the seed paper's
metrics (Sec. 3.4, Table 2, Figs. 3-4) in the full 0.3-10 keV range and in
the bands 0.3-1, 1-2, 2-4, 4-8 and 8-10 keV, for each method alone and for
its union with VF (VF+SAC, VF+LACOSMIC, VF+CAM, VF+MORPH).

Definitions (CR = positive class, events with truth X-ray or CR only):

* an event is *rejected* by a method when any of the method's ``STATUS``
  bits is set (:func:`xcrfilter.evaluation.metrics.method_mask`; VF: bits 0-2, LACOSMIC: 3, SAC: 4,
  CAM: 5, MORPH: 6; a union rejects when either member does);
* TP = CR rejected, FN = CR accepted, FP = X-ray rejected, TN = X-ray accepted;
* precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R);
* lost X-ray signal FPR = FP/(TN+FP); unrejected background FOR = FN/(TN+FN);
* FOR relative improvement = 1 - FOR(method)/FOR(VF) in the same band.

Bands are half-open in reconstructed ``ENERGY``: [lo, hi).  Events whose
central pixel carries no simulated signal (truth 0, noise) are counted in
``N_NOISE`` but enter no metric.

The pixel-wise comparison of the Laplacian mask with the truth labels and
the ``sigclip`` tuning (:func:`scan_sigclip`) follow the LSST report of
seed ``003``: purity = TP/(TP+FP), completeness = TP/(TP+FN), F1, and the
mean squared error of the binary masks, MSE = (FP+FN)/N_pixels; sigclip is
chosen at the MSE minimum or at the "knee" of the (sigclip, number of CR
pixels) curve.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import Table

from .. import registry
from .metrics import rejected
from ..units import DEFAULT_BAND, energy_values

__all__ = ["BANDS", "FULL_BAND", "band_masks", "event_truth_labels",
           "compare_table", "format_table", "print_report", "pixel_confusion",
           "scan_sigclip", "knee_point", "roc_sweeps", "compare_filters", "compare_chunks",
           "CompareReport", "write_report"]

#: Energy bands of the report, keV, half-open [lo, hi) (seed paper Fig. 3b).
BANDS = ((0.3, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 10.0))
#: Full evaluation range, keV (seed paper Sec. 3.4).
FULL_BAND = tuple(float(e) for e in DEFAULT_BAND.to_value(u.keV))


# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------
def band_masks(energy, bands=BANDS, full=FULL_BAND):
    """Boolean selection of events per energy band.

    Parameters
    ----------
    energy : `~astropy.units.Quantity` [energy], shape (n,)
        Reconstructed event energies.
    bands : sequence of (lo, hi) in keV
    full : (lo, hi) in keV

    Returns
    -------
    dict
        ``"0.3-10"`` -> mask of the full range, then ``"lo-hi"`` per band, all
        half-open [lo, hi).
    """
    if not isinstance(energy, u.Quantity):
        raise TypeError("energy must be a Quantity in energy units.")
    e = energy.to_value(u.keV)
    out = {}
    for lo, hi in (full,) + tuple(bands):
        out[f"{lo:g}-{hi:g}"] = (e >= lo) & (e < hi)
    return out


def event_truth_labels(events, labels):
    """Truth class of each event = label of its central pixel (0 noise, 1 X-ray, 2 CR).

    Thin wrapper of :func:`xcrfilter.simulate.event_truth` returning int8.
    """
    from ..simulate import event_truth
    return np.asarray(event_truth(events, labels)).astype(np.int8)


def _rates(tp, fp, tn, fn):
    """Seed-paper metrics of one confusion matrix (``xcrfilter.evaluation.metrics``)."""
    from . import metrics
    cm = metrics.Confusion(int(tp), int(fp), int(tn), int(fn))
    return dict(PRECISION=metrics.precision(cm), RECALL=metrics.recall(cm),
                F1=metrics.f1_score(cm), FPR=metrics.lost_xray_signal(cm),
                FOR=metrics.unrejected_cr_background(cm))


def _counts(is_cr, is_xray, rej):
    """(TP, FP, TN, FN) with ``xcrfilter.evaluation.metrics.confusion`` on the X-ray/CR events."""
    from .metrics import confusion
    valid = is_cr | is_xray
    return tuple(confusion(is_cr[valid], rej[valid]))


def available_report_methods(events):
    """Single methods whose filter ran on ``events`` (from ``meta['FILTERS']``)."""
    from ..meta import card_value
    ran = card_value(events.meta, "FILTERS", None)
    if ran:
        ran = [s.strip() for s in str(ran).split(",")]
        return [label for label, name in registry.report_names().items() if name in ran]
    return list(registry.report_names())


def _require_columns(events, names, where):
    """ValueError naming the missing columns (never a bare KeyError)."""
    colnames = getattr(events, "colnames", None)
    if colnames is None:
        raise TypeError(f"{where}: events must be an astropy Table, got "
                        f"{type(events).__name__}.")
    missing = [c for c in names if c not in colnames]
    if missing:
        raise ValueError(f"{where}: events lack column(s) {missing}.")


def compare_table(events, truth, methods=None, *, bands=BANDS, full=FULL_BAND,
                  reference="VF"):
    """Table 2 of the seed paper for every method and band.

    Parameters
    ----------
    events : `~astropy.table.Table`
        Events with ``ENERGY`` and ``STATUS`` (all filters already applied).
    truth : int ndarray, shape (n_events,)
        0 noise, 1 X-ray, 2 CR (see :func:`event_truth_labels`).
    methods : list of str, optional
        Method names or unions, e.g. ``["VF", "SAC", "VF+SAC"]``.  Default:
        every single method that ran plus its union with VF.
    reference : str
        Method whose FOR defines the relative improvement.  Default ``"VF"``.

    Returns
    -------
    `~astropy.table.Table`
        One row per (method, band): ``METHOD``, ``BAND``, ``E_LO``, ``E_HI``
        [keV], ``N_XRAY``, ``N_CR``, ``N_NOISE``, ``TP``, ``FP``, ``TN``,
        ``FN``, ``F1``, ``PRECISION``, ``RECALL``, ``FPR`` (lost X-ray),
        ``FOR``, ``FOR_IMPR`` (fractions, not percent).
    """
    from .metrics import for_relative_improvement
    _require_columns(events, ("ENERGY", "STATUS"), "compare_table")
    truth = np.asarray(truth)
    if truth.shape != (len(events),):
        raise ValueError(f"truth must have shape ({len(events)},), got {truth.shape}.")
    if methods is None:
        singles = available_report_methods(events)
        methods = singles + [f"VF+{m}" for m in singles if m != "VF" and "VF" in singles]
    energy = energy_values(events["ENERGY"], u.keV) * u.keV
    sel = band_masks(energy, bands, full)
    is_cr, is_xray, is_noise = truth == 2, truth == 1, truth == 0
    rows = []
    ref_for = {}
    ref_rej = rejected(events, reference) if reference else None
    for band, m in sel.items():
        if ref_rej is not None:
            tp, fp, tn, fn = _counts(is_cr & m, is_xray & m, ref_rej)
            ref_for[band] = _rates(tp, fp, tn, fn)["FOR"]
    for method in methods:
        rej = rejected(events, method)
        for band, m in sel.items():
            lo, hi = (float(v) for v in band.split("-"))
            tp, fp, tn, fn = _counts(is_cr & m, is_xray & m, rej)
            r = _rates(tp, fp, tn, fn)
            impr = for_relative_improvement(r["FOR"], ref_for[band]) if ref_for else np.nan
            rows.append(dict(METHOD=method, BAND=band, E_LO=lo, E_HI=hi,
                             N_XRAY=int(np.count_nonzero(is_xray & m)),
                             N_CR=int(np.count_nonzero(is_cr & m)),
                             N_NOISE=int(np.count_nonzero(is_noise & m)),
                             TP=tp, FP=fp, TN=tn, FN=fn,
                             **{k: float(v) for k, v in r.items()}, FOR_IMPR=float(impr)))
    names = ["METHOD", "BAND", "E_LO", "E_HI", "N_XRAY", "N_CR", "N_NOISE", "TP", "FP", "TN",
             "FN", "F1", "PRECISION", "RECALL", "FPR", "FOR", "FOR_IMPR"]
    table = Table(rows=[[r[n] for n in names] for r in rows], names=names)
    table["E_LO"].unit = table["E_HI"].unit = u.keV
    for name, desc in (("F1", "F1 score of the CR class"), ("PRECISION", "CR precision"),
                       ("RECALL", "CR recall (completeness)"),
                       ("FPR", "lost X-ray signal FP/(TN+FP)"),
                       ("FOR", "unrejected CR background FN/(TN+FN)"),
                       ("FOR_IMPR", f"1 - FOR/FOR({reference})")):
        table[name].description = desc
    table.meta["REFMETH"] = reference
    table.meta["comments"] = ["xcrfilter compare: seed paper Table 2 layout; fractions, "
                              "CR positive; bands half-open [E_LO, E_HI) keV"]
    return table


def format_table(table, band=None):
    """Printable Table 2 (values x 100) for one band or all bands."""
    lines = []
    bands = [band] if band else list(dict.fromkeys(table["BAND"]))
    for b in bands:
        t = table[table["BAND"] == b]
        lines.append(f"Band {b} keV  (X-ray events {t['N_XRAY'][0]}, CR events {t['N_CR'][0]}"
                     f", noise {t['N_NOISE'][0]})")
        lines.append(f"{'method':<13}{'F1':>8}{'prec':>8}{'recall':>8}{'lost X':>8}"
                     f"{'FOR':>8}{'FOR imp':>9}")
        for row in t:
            keys = ("F1", "PRECISION", "RECALL", "FPR", "FOR", "FOR_IMPR")
            vals = [row[k] * 100 for k in keys]
            lines.append(f"{row['METHOD']:<13}" + "".join(
                f"{v:8.2f}" if np.isfinite(v) else f"{'--':>8}" for v in vals[:5])
                + (f"{vals[5]:9.2f}" if np.isfinite(vals[5]) else f"{'--':>9}"))
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# pixel-wise Laplacian comparison and sigclip tuning (LSST report, seed 003)
# --------------------------------------------------------------------------
def pixel_confusion(mask, labels):
    """Pixel-wise confusion of a CR mask against truth labels.

    Parameters
    ----------
    mask : bool ndarray, shape (n_frames, ny, nx) or (ny, nx)
        Predicted CR pixels.
    labels : int ndarray, same shape
        Truth: 0 none, 1 X-ray, 2 CR.

    Returns
    -------
    dict
        ``TP``, ``FP``, ``FN``, ``TN`` (CR positive, every non-CR pixel
        negative), ``FP_XRAY`` (X-ray pixels masked), ``N_XRAY``, ``PURITY``,
        ``COMPLETENESS``, ``F1``, ``MSE`` = (FP+FN)/N.
    """
    mask = np.asarray(mask, bool)
    labels = np.asarray(labels)
    if mask.shape != labels.shape:
        raise ValueError(f"mask {mask.shape} and labels {labels.shape} differ in shape.")
    cr = labels == 2
    tp = int(np.count_nonzero(mask & cr))
    fp = int(np.count_nonzero(mask & ~cr))
    fn = int(np.count_nonzero(~mask & cr))
    tn = int(mask.size - tp - fp - fn)
    xr = labels == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = tp / (tp + fp) if tp + fp else np.nan
        completeness = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * purity * completeness / (purity + completeness) if tp else 0.0
    return dict(TP=tp, FP=fp, FN=fn, TN=tn, FP_XRAY=int(np.count_nonzero(mask & xr)),
                N_XRAY=int(np.count_nonzero(xr)), N_CR=int(np.count_nonzero(cr)),
                PURITY=float(purity), COMPLETENESS=float(completeness), F1=float(f1),
                MSE=(fp + fn) / mask.size)


def knee_point(x, y):
    """Knee of a monotonic curve: the point farthest from the chord joining its ends.

    Both axes are rescaled to [0, 1] first (the "kneedle" construction of
    Satopaa et al. 2011).  Returns the index of the knee.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size < 3:
        raise ValueError("knee_point needs at least 3 points.")
    xn = (x - x.min()) / np.ptp(x) if np.ptp(x) else np.zeros_like(x)
    yn = (y - y.min()) / np.ptp(y) if np.ptp(y) else np.zeros_like(y)
    # distance to the line through the first and last point
    dx, dy = xn[-1] - xn[0], yn[-1] - yn[0]
    dist = np.abs(dy * (xn - xn[0]) - dx * (yn - yn[0])) / max(np.hypot(dx, dy), 1e-12)
    return int(np.argmax(dist))


def scan_sigclip(frames, labels, sigclips=None, *, detector=None, **lacosmic_options):
    """Scan L.A.Cosmic ``sigclip`` on X-ray frames against truth labels.

    For each ``sigclip`` the frames are run through
    :func:`xcrfilter.filters.laplacian.lacosmic_mask` and the mask compared
    pixel by pixel with the truth (:func:`pixel_confusion`).

    Parameters
    ----------
    frames : frames accepted by :func:`xcrfilter.io.frames.as_energy_cube`, shape (n, ny, nx)
    labels : uint8 ndarray, shape (n, ny, nx)
        Truth labels (0 none, 1 X-ray, 2 CR).
    sigclips : array-like, optional
        Values to scan.  Default ``np.arange(1.0, 10.01, 0.5)`` (the LSST
        report's wide range 1-10).
    **lacosmic_options
        Other keyword arguments of ``lacosmic_mask`` (fixed during the scan).

    Returns
    -------
    table : `~astropy.table.Table`
        One row per sigclip: ``SIGCLIP``, ``N_CRPIX``, ``TP``, ``FP``, ``FN``,
        ``FP_XRAY``, ``PURITY``, ``COMPLETENESS``, ``F1``, ``MSE``; ``meta``
        holds ``SIGMSE`` (sigclip at the MSE minimum) and ``SIGKNEE`` (knee of
        N_CRPIX vs sigclip, :func:`knee_point`).
    """
    from ..filters.laplacian import cosmic_ray_pixels
    from ..io.frames import as_energy_cube

    if sigclips is None:
        sigclips = np.arange(1.0, 10.01, 0.5)
    sigclips = np.asarray(sigclips, float)
    cube = as_energy_cube(frames, detector=detector)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.shape != cube.data.shape:
        raise ValueError(f"labels {labels.shape} must match frames {cube.data.shape}.")
    rows = []
    for s in sigclips:
        mask = cosmic_ray_pixels(cube, sigclip=float(s), detector=detector,
                                 **lacosmic_options).reshape(labels.shape)
        c = pixel_confusion(mask, labels)
        rows.append((float(s), int(mask.sum()), c["TP"], c["FP"], c["FN"], c["FP_XRAY"],
                     c["PURITY"], c["COMPLETENESS"], c["F1"], c["MSE"]))
    table = Table(rows=rows, names=("SIGCLIP", "N_CRPIX", "TP", "FP", "FN", "FP_XRAY",
                                    "PURITY", "COMPLETENESS", "F1", "MSE"))
    i_mse = int(np.argmin(table["MSE"]))
    i_knee = knee_point(table["SIGCLIP"], table["N_CRPIX"]) if len(table) >= 3 else i_mse
    table.meta["SIGMSE"] = float(table["SIGCLIP"][i_mse])
    table.meta["SIGKNEE"] = float(table["SIGCLIP"][i_knee])
    table.meta["NCR_TRUE"] = int(np.count_nonzero(labels == 2))
    return table


# --------------------------------------------------------------------------
# ROC sweeps
# --------------------------------------------------------------------------
def roc_sweeps(events, truth, *, radii=None, thresholds=None, band=FULL_BAND):
    """ROC curves (recall vs lost X-ray signal) of the swept methods.

    Every registered filter with a ``CALIBRATION`` declaration (score column,
    option, sign) whose column is in ``events`` is swept: SAC in radius
    using ``SAC_DIST`` (reject when ``SAC_DIST <= R``), the probability
    filters (CAM: ``PROB_CR``, MORPH: ``PROB_MORPH``) in threshold (reject
    when the probability is ``>= t``); each alone and in union with VF.

    Returns
    -------
    `~astropy.table.Table`
        Columns ``CURVE`` (e.g. ``"SAC"``, ``"VF+CAM"``), ``PARAM`` (radius in
        pixels or threshold), ``FPR``, ``RECALL``, ``FOR``.
    """
    _require_columns(events, ("ENERGY", "STATUS"), "roc_sweeps")
    e = energy_values(events["ENERGY"], u.keV)
    inband = (e >= band[0]) & (e < band[1])
    truth = np.asarray(truth)
    is_cr, is_xray = (truth == 2) & inband, (truth == 1) & inband
    vf = rejected(events, "VF")
    if radii is None:
        radii = np.concatenate([[-1.0, 0.0], np.unique(np.round(np.geomspace(1, 400, 40)))])
    if thresholds is None:
        thresholds = np.linspace(0.0, 1.0, 101)
    rows = []
    for label, name in registry.report_names().items():
        calibration = registry.filter_spec(name).calibration
        if calibration is None or calibration.column not in events.colnames:
            continue
        column, sign = calibration.column, calibration.sign
        score = np.asarray(events[column], float)
        for p in (radii if sign < 0 else thresholds):
            rej = score <= p if sign < 0 else score >= p
            for curve, r in ((label, rej), (f"VF+{label}", rej | vf)):
                tp, fp, tn, fn = _counts(is_cr, is_xray, r)
                rates = _rates(tp, fp, tn, fn)
                rows.append((curve, float(p), float(rates["FPR"]), float(rates["RECALL"]),
                             float(rates["FOR"])))
    return Table(rows=rows or None, names=("CURVE", "PARAM", "FPR", "RECALL", "FOR"),
                 dtype=(str, float, float, float, float))


# --------------------------------------------------------------------------
# full comparison
# --------------------------------------------------------------------------
@dataclass
class CompareReport:
    """Result of :func:`compare_filters`.

    Attributes
    ----------
    events : `~astropy.table.QTable`
        Events with every method's STATUS bits (and SAC_DIST, PROB_CR).
    truth : int ndarray, shape (n_events,)
    table : `~astropy.table.Table`
        :func:`compare_table` output.
    roc : `~astropy.table.Table`
        :func:`roc_sweeps` output.
    pixel : dict
        :func:`pixel_confusion` of the Laplacian mask (or empty).
    methods : list of str
        Single methods that ran.
    skipped : dict
        Method -> reason for the methods that could not run.
    laplacian_mask : bool ndarray or None
        L.A.Cosmic pixel mask of the first ``pixel_frames`` frames.
    figures : list of str
        PNG files written (when an output directory was given).
    """
    events: object
    truth: np.ndarray
    table: Table
    roc: Table
    pixel: dict = field(default_factory=dict)
    methods: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)
    figures: list = field(default_factory=list)
    n_frames: int = 0
    laplacian_mask: object = None

    def __str__(self):
        return format_table(self.table)


def _run_methods(cube, names, options, thresholds):
    """Run the pipeline with ``names``; return (events, ran, skipped).

    An optional filter (one that needs a model,
    :meth:`~xcrfilter.contract.Filter.available`) is skipped when it has no
    model, neither installed nor given in ``options``; the reason goes to
    ``skipped``.  Any error of a filter that runs is raised, naming the
    filter (a note on the exception, shown with its traceback).
    """
    from ..pipeline import run_pipeline
    skipped = {}
    names = list(names)
    for name in list(names):
        if not registry.filter_spec(name).available(options.get(name)):
            skipped[name] = "no model installed"
            names.remove(name)
    events = run_pipeline(cube, names, options={k: v for k, v in options.items()
                                                if k in names}, **thresholds)
    return events, names, skipped


def compare_filters(frames, truth_labels, methods=None, *, options=None,
                    event_threshold=260 * u.eV, split_threshold=80 * u.eV,
                    mip_threshold=10 * u.keV, gain=None, detector=None,
                    pixel_frames=50, outdir=None, sac_radii=None, cam_thresholds=None):
    """Run every available filter on the same events and compare with the truth.

    Parameters
    ----------
    frames : frames accepted by :func:`xcrfilter.io.frames.as_energy_cube`
        Simulated frames (n_frames, ny, nx).
    truth_labels : uint8 ndarray, shape (n_frames, ny, nx)
        Pixel truth (0 none, 1 X-ray, 2 CR) from the simulator.
    methods : list of str, optional
        Pipeline names among the registered filters (``vfaint``,
        ``lacosmic``, ``sac``, ``cam``, ``morph``).  Default: all of them; a
        method that cannot run (e.g. CAM without a trained model) is skipped
        and reported in ``skipped``.
    options : dict, optional
        Per-method keyword arguments (``{"sac": {"radius": 10}}``).  SAC is
        run with its default radius; the radius sweep of the ROC uses the
        ``SAC_DIST`` column.
    event_threshold, split_threshold, mip_threshold : `~astropy.units.Quantity`
        Event finding thresholds (seed paper Sec. 3.1).
    pixel_frames : int
        Number of leading frames used for the pixel-wise confusion of the filter
        that marks pixels (its declaration's ``pixel_mask``: the Laplacian)
        (0 to skip).  Default 50.
    outdir : str, optional
        If given, write ``table.ecsv``, ``table.txt``, ``roc.ecsv``,
        ``events.fits`` and the PNG figures there.
    sac_radii : array-like, optional
        Radii (pixels) of the SAC ROC sweep.  Default 0 and 40 values
        geometrically spaced in 1-400.
    cam_thresholds : array-like, optional
        CR-probability thresholds of the ROC sweeps of the probability
        filters (CAM, MORPH).  Default 0, 0.01, ..., 1.
    gain, detector
        As for :func:`xcrfilter.io.frames.as_energy_cube`.

    Returns
    -------
    CompareReport
    """
    from ..io.frames import as_energy_cube
    cube = as_energy_cube(frames, gain=gain, detector=detector)
    labels = np.asarray(truth_labels)
    if labels.ndim == 2:
        labels = labels[None]
    return compare_chunks([(cube, labels)], methods, options=options,
                          event_threshold=event_threshold, split_threshold=split_threshold,
                          mip_threshold=mip_threshold, detector=detector,
                          pixel_frames=pixel_frames, outdir=outdir, sac_radii=sac_radii,
                          cam_thresholds=cam_thresholds)


def compare_chunks(chunks, methods=None, *, options=None, event_threshold=260 * u.eV,
                   split_threshold=80 * u.eV, mip_threshold=10 * u.keV, detector=None,
                   pixel_frames=50, outdir=None, sac_radii=None, cam_thresholds=None):
    """:func:`compare_filters` on a stream of ``(frames, labels)`` chunks.

    Large simulated observations do not fit in memory; each chunk is
    filtered on its own and the events (with ``FRAME`` offset to a running
    index) and their truth are concatenated before the metrics are taken, so
    the result equals one call on all frames.

    Parameters
    ----------
    chunks : iterable of (frames, labels)
        ``frames`` in any form :func:`xcrfilter.io.frames.as_energy_cube` reads (a
        FrameCube, a Quantity cube...), ``labels`` the matching uint8 truth
        cube.  E.g. ``((c.frames * u.eV, c.labels) for c in
        xcrfilter.simulate.iter_frames(5000, seed=1, chunk_size=200))``.
    methods, options, pixel_frames, outdir, sac_radii, cam_thresholds
        As for :func:`compare_filters`.
    event_threshold, split_threshold, mip_threshold, detector
        As for :func:`compare_filters`.

    Returns
    -------
    CompareReport
    """
    from astropy.table import vstack

    from ..io.frames import FrameCube, as_energy_cube
    names = list(methods) if methods is not None else list(registry.FILTERS)
    if "vfaint" not in names:
        names.insert(0, "vfaint")
    thresholds = dict(event_threshold=event_threshold, split_threshold=split_threshold,
                      mip_threshold=mip_threshold, detector=detector)
    options = dict(options or {})
    parts, truths = [], []
    skipped = {}
    n_frames = 0
    pix = None
    lap_mask = lap_labels = None
    meta = None
    for frames, labels in chunks:
        cube = frames if isinstance(frames, FrameCube) else as_energy_cube(
            frames, detector=detector)
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels[None]
        if labels.shape != cube.data.shape:
            raise ValueError(f"truth labels {labels.shape} must match the frames "
                             f"{cube.data.shape}.")
        events, names, skip = _run_methods(cube, names, options, thresholds)
        skipped.update(skip)
        truths.append(event_truth_labels(events, labels))
        events["FRAME"] += np.int32(n_frames)
        if meta is None:
            meta = dict(events.meta)
        events.meta.clear()
        parts.append(events)
        # pixel-wise Laplacian confusion on the leading frames
        k = min(int(pixel_frames or 0) - n_frames, cube.data.shape[0])
        pixel_filter = next((n for n in names
                             if registry.filter_spec(n).pixel_mask is not None), None)
        if pixel_filter is not None and k > 0:
            sub = FrameCube(cube.data[:k], None if cube.mask is None else cube.mask[:k],
                            cube.header, cube.filenames, False)
            mask = registry.filter_spec(pixel_filter).pixel_mask(
                sub, detector=detector, **dict(options.get(pixel_filter, {}))
            ).reshape(labels[:k].shape)
            c = pixel_confusion(mask, labels[:k])
            if pix is None:
                pix = {key: c[key] for key in ("TP", "FP", "FN", "TN", "FP_XRAY", "N_XRAY",
                                               "N_CR")}
                pix["N_FRAMES"] = 0
                lap_mask, lap_labels = mask, labels[:k].copy()
            else:
                for key in ("TP", "FP", "FN", "TN", "FP_XRAY", "N_XRAY", "N_CR"):
                    pix[key] += c[key]
            pix["N_FRAMES"] += k
        n_frames += cube.data.shape[0]
    if not parts:
        raise ValueError("chunks: no frames given.")
    events = vstack(parts, metadata_conflicts="silent") if len(parts) > 1 else parts[0]
    history = meta.pop("HISTORY", [])
    events.meta.update(meta)
    if "TIME" in events.colnames and len(parts) > 1:
        # each chunk was timed from its own first frame: time the whole run
        from ..io.ogip import add_time
        events.meta.pop("GTI", None)
        add_time(events, dict(events.meta), n_frames=n_frames, warn=False)
    events.meta["HISTORY"] = history if len(parts) == 1 else [
        f"xcrfilter compare: {n_frames} frames in {len(parts)} chunks"]
    truth = np.concatenate(truths)
    singles = [label for label, name in registry.report_names().items() if name in names]
    report_methods = singles + [f"VF+{m}" for m in singles if m != "VF"]
    table = compare_table(events, truth, report_methods)
    roc = roc_sweeps(events, truth, radii=sac_radii, thresholds=cam_thresholds)
    pixel = {}
    if pix is not None:
        tp, fp, fn = pix["TP"], pix["FP"], pix["FN"]
        purity = tp / (tp + fp) if tp + fp else np.nan
        completeness = tp / (tp + fn) if tp + fn else np.nan
        f1 = 2 * purity * completeness / (purity + completeness) if tp else 0.0
        n_pix = tp + fp + fn + pix["TN"]
        pixel = dict(pix, PURITY=float(purity), COMPLETENESS=float(completeness),
                     F1=float(f1), MSE=(fp + fn) / n_pix)
    report = CompareReport(events=events, truth=truth, table=table, roc=roc, pixel=pixel,
                           methods=singles, skipped=skipped, n_frames=n_frames,
                           laplacian_mask=lap_mask)
    if outdir is not None:
        write_report(report, outdir, labels=lap_labels)
    return report


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------
#: Files written by :func:`write_report` into the report directory.
REPORT_FILES = ("table.ecsv", "roc.ecsv", "table.txt", "events.fits", "roc.png",
                "background_spectrum.png", "for_improvement.png", "lost_signal.png",
                "laplacian_confusion.png")


def write_report(report, outdir, *, frames=None, labels=None, overwrite=True):
    """Write tables and figures of a :class:`CompareReport` into ``outdir``."""
    os.makedirs(outdir, exist_ok=True)
    report.table.write(os.path.join(outdir, "table.ecsv"), overwrite=overwrite)
    report.roc.write(os.path.join(outdir, "roc.ecsv"), overwrite=overwrite)
    with open(os.path.join(outdir, "table.txt"), "w") as fh:
        fh.write(format_table(report.table))
        if report.pixel:
            fh.write(_pixel_text(report.pixel) + "\n")
        for name, reason in report.skipped.items():
            fh.write(f"skipped {name}: {reason}\n")
    try:
        from ..io.eventfile import write_events
        ev = report.events.copy()
        ev["TRUTH"] = report.truth.astype(np.int16)
        write_events(ev, os.path.join(outdir, "events.fits"), overwrite=overwrite)
    except Exception as exc:  # noqa: BLE001 - the tables above are the report
        warnings.warn(f"events.fits not written: {exc}", stacklevel=2)
    from .compare_plots import make_figures
    report.figures = make_figures(report, outdir, frames=frames, labels=labels)
    return report.figures


def _pixel_text(p):
    return (f"Pixel-wise L.A.Cosmic mask vs truth ({p.get('N_FRAMES', '?')} frames): "
            f"TP {p['TP']} FP {p['FP']} (of which X-ray {p['FP_XRAY']}) FN {p['FN']}; "
            f"purity {p['PURITY']:.3f} completeness {p['COMPLETENESS']:.3f} "
            f"F1 {p['F1']:.3f} MSE {p['MSE']:.2e}")


def print_report(report, header=None):
    """Print a report: a header line, the Table 2 layout, the pixel-wise
    Laplacian confusion and the methods that were skipped (with why)."""
    if header is None:
        header = (f"{report.n_frames} frames, {len(report.events)} events; methods: "
                  f"{', '.join(report.methods)}")
    print(header)
    print(format_table(report.table))
    if report.pixel:
        print(_pixel_text(report.pixel))
    for name, reason in report.skipped.items():
        print(f"skipped {name}: {reason}")
