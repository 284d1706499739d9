"""Compare every cosmic-ray filter on the same events against simulator truth.

``xcrfilter compare OBS.fits [--truth OBS.fits] -o report/`` and
:func:`compare_filters` run every registered filter (`xcrfilter.registry`):
the very-faint-mode filter (VF), the Laplacian baseline (LACOSMIC),
self-anti-coincidence (SAC) and, when their models are available, the CAM
and MORPH filters, on the *same* events, and report the seed paper's
metrics (Sec. 3.4, Table 2, Figs. 3-4) in the full 0.3-10 keV range and in
the bands 0.3-1, 1-2, 2-4, 4-8 and 8-10 keV, for each method alone and for
its union with VF (VF+SAC, VF+LACOSMIC, VF+CAM, VF+MORPH).

The metrics and their definitions are those of
:mod:`xcrfilter.evaluation.tables`; the pixel-wise comparison of the filter
that marks pixels (the Laplacian) with the truth labels is
:mod:`xcrfilter.evaluation.pixels`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import Table

from .. import registry
from .pixels import pixel_confusion
from .tables import compare_table, event_truth_labels, format_table, roc_sweeps

__all__ = ["compare_filters", "compare_chunks", "CompareReport", "write_report", "print_report",
           "REPORT_FILES"]


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
