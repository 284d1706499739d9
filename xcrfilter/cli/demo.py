"""``xcrfilter demo``: the main job on built-in sample data, in under a minute.

Simulates an observation of 512 x 512 frames at the rates of Poliszczuk et
al. (one X-ray and one cosmic-ray primary per frame, 7 e- readout noise),
streams it chunk by chunk through :func:`xcrfilter.pipeline.run_pipeline`
(the code path of ``xcrfilter filter``) with the very-faint-mode (VF),
self-anti-coincidence (SAC), CAM and morph filters, scores every event against the
simulator's truth and writes:

* ``demo_frames.fits``: the first frames of the observation with their
  ``TRUTH`` extension, to try ``xcrfilter filter`` on;
* ``demo_events.fits``: every event with its ``STATUS`` bits and a ``TRUTH``
  column (0 noise, 1 X-ray, 2 CR);
* ``demo_mask.fits``: the 3 x 3 pixels of every rejected event, one uint8
  image per frame (1 = rejected), tile-compressed;
* ``demo_table.ecsv``: every metric per method and energy band;
* ``demo_roc.png``, ``demo_spectrum.png``, ``demo_frame.png``.

It prints, for the 0.3-10 keV band, the counts behind every percentage and
its 68 % (1 sigma) Wilson interval, flags percentages resting on fewer than
:data:`MIN_COUNT` events, and counts the events outside the band.
"""
from __future__ import annotations

import os
import time

import astropy.units as u
import numpy as np

from ..units import energy_values

__all__ = ["add_arguments", "run", "run_demo", "format_report", "DESCRIPTION", "MIN_COUNT",
           "DEFAULT_FRAMES"]

DESCRIPTION = (
    "Simulate an observation of 512 x 512 X-ray detector frames with cosmic rays, filter it "
    "with the very-faint-mode (vfaint), self-anti-coincidence (sac) and CAM filters (the code "
    "path of 'xcrfilter filter'), and score every event against the simulator's truth: "
    "counts and 68 % intervals for every percentage, figures (ROC, spectra, one frame with "
    "each event's verdict), the event file and a compact mask of rejected events.")

#: Frames simulated by default: the whole demo takes under a minute on two CPU
#: cores, most of it in the CAM filter.
DEFAULT_FRAMES = 800
#: Below this many events a percentage is flagged as uncertain.
MIN_COUNT = 30
#: Frames of the observation also written to ``demo_frames.fits``.
SAMPLE_FRAMES = 10
_FILES = ("demo_frames.fits", "demo_events.fits", "demo_mask.fits", "demo_table.ecsv",
          "demo_roc.png", "demo_spectrum.png", "demo_frame.png")


def add_arguments(parser):
    """Add the ``demo`` options to an argparse parser."""
    parser.description = DESCRIPTION
    parser.add_argument("-o", "--output-dir", default="xcrfilter-demo", metavar="DIR",
                        help="directory for the sample frames, events, mask, table and figures")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, metavar="N",
                        help="number of 512 x 512 frames to simulate (the run time grows "
                        "linearly, mostly in the CAM filter)")
    parser.add_argument("--chunk-frames", type=int, default=50, metavar="N",
                        help="frames simulated and filtered at a time (bounds memory)")
    parser.add_argument("--seed", type=int, default=2024, help="simulation seed")
    parser.add_argument("--with-lacosmic", action="store_true",
                        help="also run L.A.Cosmic (astroscrappy), about 1 s per frame; at its "
                        "defaults it takes the compact charge clouds of X-ray events for "
                        "cosmic-ray hits and rejects nearly all of them (71 of 72 in a "
                        "100-frame run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files from an earlier demo in DIR")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def run(args):
    """Run ``xcrfilter demo`` with parsed ``args``; returns the exit code."""
    run_demo(args.output_dir, n_frames=args.frames, chunk_frames=args.chunk_frames,
             seed=args.seed, with_lacosmic=args.with_lacosmic, overwrite=args.overwrite,
             progress=not args.quiet)
    return 0


def _blocks(n_frames, seed, chunk_frames, labels, bar):
    """Simulated frames [eV] chunk by chunk; the truth goes into ``labels``."""
    from ..simulate import iter_frames
    for chunk in iter_frames(n_frames, seed=seed, chunk_size=chunk_frames):
        n = chunk.frames.shape[0]
        labels[chunk.first_frame:chunk.first_frame + n] = chunk.labels
        yield u.Quantity(chunk.frames, u.eV, copy=False)
        if bar is not None:
            bar.update(n)


def _showcase_frame(events, truth, in_band):
    """Frame with the most in-band CR events, then the most events, then the lowest index."""
    frame = np.asarray(events["FRAME"])
    n = int(frame.max()) + 1 if len(frame) else 1
    score = (np.bincount(frame[in_band & (truth == 2)], minlength=n) * 1_000_000
             + np.bincount(frame, minlength=n))
    return int(np.argmax(score))


def _write_mask(path, events, shape, overwrite):
    """3 x 3 pixels of the rejected events as tile-compressed uint8 images."""
    from astropy.io import fits

    from ..io.masks import event_pixel_mask
    rej = np.asarray(events["STATUS"]) != 0
    mask = event_pixel_mask(shape, np.asarray(events["FRAME"])[rej],
                            np.asarray(events["RAWX"])[rej], np.asarray(events["RAWY"])[rej])
    hdu = fits.CompImageHDU(mask.view(np.uint8), name="MASK", compression_type="GZIP_1",
                            tile_shape=(1,) + tuple(shape[1:]))
    hdu.header["HDUCLAS2"] = ("MASK", "1 = pixel of a rejected event")
    hdu.header["MASKWHCH"] = ("rejected", "3x3 pixels of events with STATUS != 0")
    hdu.header["NMASKEV"] = (int(rej.sum()), "number of masked events")
    tmp = path + ".part"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    os.replace(tmp, path)


def run_demo(output_dir="xcrfilter-demo", *, n_frames=DEFAULT_FRAMES, chunk_frames=50,
             seed=2024, with_lacosmic=False, overwrite=False, progress=True):
    """Simulate, filter and score an observation; print the report; write files.

    Parameters
    ----------
    output_dir : str
        Directory for the files listed in the module docstring; created if
        needed.
    n_frames : int
        Number of 512 x 512 frames (default :data:`DEFAULT_FRAMES`).
    chunk_frames : int
        Frames simulated and filtered at a time (default 50).
    seed : int
        Simulation seed (default 2024).
    with_lacosmic : bool
        Also run L.A.Cosmic (slow: about 1 s per frame on one core).
    overwrite : bool
        Replace existing output files.
    progress : bool
        Show a progress bar.

    Returns
    -------
    table : `~astropy.table.Table`
        :func:`xcrfilter.evaluation.tables.compare_table` of the run: one row per
        method (and union with VF) and energy band, with the counts.

    Raises
    ------
    ValueError
        If ``n_frames`` or ``chunk_frames`` is below 1.
    FileExistsError
        If an output file exists and ``overwrite`` is False.
    """
    from ..evaluation.tables import compare_table
    from ..io.eventfile import write_events
    from ..pipeline import available_methods, run_pipeline
    from ..simulate import event_truth, write_simulation

    n_frames, chunk_frames = int(n_frames), int(chunk_frames)
    if n_frames < 1 or chunk_frames < 1:
        raise ValueError(f"n_frames and chunk_frames must be >= 1, got {n_frames}, "
                         f"{chunk_frames}.")
    paths = {name: os.path.join(output_dir, name) for name in _FILES}
    from ..io.outputs import check_outputs
    check_outputs({f"-o/--output-dir {name}": path for name, path in paths.items()},
                  overwrite=overwrite, create_dirs=True)
    os.makedirs(output_dir, exist_ok=True)
    wanted = ["vfaint", "sac", "cam", "morph"] + (["lacosmic"] if with_lacosmic else [])
    usable = available_methods()
    names = [m for m in wanted if m in usable]
    for m in wanted:
        if m not in usable:
            print(f"note: the {m} filter is not available on this installation; skipped.")

    t0 = time.perf_counter()
    if "cam" in names:
        # loaded once and cached: the progress bar then shows the filtering only
        print("loading the CAM filter's model ...", flush=True)
        from ..ml.model import load_model
        load_model()
    write_simulation(paths["demo_frames.fits"], min(SAMPLE_FRAMES, n_frames), seed=seed,
                     overwrite=True)
    shape = (n_frames, 512, 512)
    labels = np.zeros(shape, np.uint8)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_frames, unit="frame", desc="simulating and filtering")
    events = run_pipeline(_blocks(n_frames, seed, chunk_frames, labels, bar), names,
                          chunk_frames=chunk_frames)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0
    truth = np.asarray(event_truth(events, labels)).astype(np.int16)
    del labels
    events["TRUTH"] = truth
    events["TRUTH"].description = "simulator truth of the central pixel: 0 noise, 1 X-ray, 2 CR"
    write_events(events, paths["demo_events.fits"], overwrite=overwrite)
    _write_mask(paths["demo_mask.fits"], events, shape, overwrite)
    table = compare_table(events, truth)
    table.write(paths["demo_table.ecsv"], overwrite=True)
    print(f"{n_frames} frames of 512 x 512 pixels simulated and filtered with "
          f"{', '.join(names)} in {elapsed:.0f} s: {len(events)} events")
    print()
    print(format_report(events, truth, table))
    _figures(events, truth, table, paths, seed, n_frames, chunk_frames)
    print()
    print(f"wrote {', '.join(_FILES)} in {output_dir}")
    return table


def _pct(k, n):
    """``"  12/345   3.5% [2.6-4.6]"`` (68 % Wilson interval), ``*`` when n < MIN_COUNT."""
    from ..evaluation.metrics import fraction_interval
    if n == 0:
        return f"{k:>5d}/{n:<5d}    --".ljust(32)
    lo, hi = fraction_interval(k, n)
    flag = "*" if n < MIN_COUNT else " "
    return f"{k:>5d}/{n:<5d}{100 * k / n:5.1f}% [{100 * lo:.1f}-{100 * hi:.1f}]{flag}".ljust(32)


def format_report(events, truth, table, band="0.3-10"):
    """Text report of one band of ``table`` with counts and 68 % intervals.

    Parameters
    ----------
    events : `~astropy.table.Table`
        The scored events (``ENERGY``, ``STATUS``).
    truth : int array, shape (n_events,)
        0 noise, 1 X-ray, 2 CR.
    table : `~astropy.table.Table`
        :func:`xcrfilter.evaluation.tables.compare_table` of ``events``.
    band : str, optional
        Band of ``table`` to report (default the full 0.3-10 keV).

    Returns
    -------
    str
    """
    from ..evaluation.selection import rejected
    t = table[table["BAND"] == band]
    lo_kev, hi_kev = float(t["E_LO"][0]), float(t["E_HI"][0])
    e = energy_values(events["ENERGY"], u.keV)
    n_x, n_cr = int(t["N_XRAY"][0]), int(t["N_CR"][0])
    lines = [f"Events with energies in {lo_kev:g}-{hi_kev:g} keV: {n_x} X-ray, {n_cr} "
             f"cosmic-ray (CR), {int(t['N_NOISE'][0])} noise.",
             "Each column: events / all events of the kind, percentage, [68 % interval].",
             f"{'method':<12}{'CR rejected (recall)':<32}{'X-rays lost':<32}"
             "rejected that are CR"]
    for row in t:
        tp, fp, tn, fn = (int(row[k]) for k in ("TP", "FP", "TN", "FN"))
        lines.append(f"{row['METHOD']:<12}{_pct(tp, tp + fn)}{_pct(fp, fp + tn)}"
                     f"{_pct(tp, tp + fp)}".rstrip())
    lines.append(f"* fewer than {MIN_COUNT} events: the percentage is uncertain, see its "
                 "interval.")
    if n_cr < MIN_COUNT:
        from ..meta import card_value
        n_frames = int(card_value(events.meta, "NFRAMES", 0))
        more = (f": about {int(np.ceil(MIN_COUNT * n_frames / n_cr))} frames would hold "
                f"{MIN_COUNT}" if n_cr and n_frames else "")
        lines.append(f"warning: only {n_cr} CR events in {lo_kev:g}-{hi_kev:g} keV in "
                     f"{n_frames} frames (fewer than {MIN_COUNT}): the CR percentages rest "
                     f"on few events (more frames give tighter intervals{more}).")
    lac = t[t["METHOD"] == "LACOSMIC"]
    if len(lac):
        fp, tn = int(lac["FP"][0]), int(lac["TN"][0])
        lines.append(f"note: L.A.Cosmic at its defaults rejects {fp} of {fp + tn} X-ray "
                     "events: it takes their compact charge clouds for cosmic-ray hits.")
    # events outside the band are not in the table: count them
    vf = rejected(events, "VF")
    for label, sel in ((f">= {hi_kev:g} keV", e >= hi_kev), (f"< {lo_kev:g} keV", e < lo_kev)):
        counts = ", ".join(f"{int(np.count_nonzero(sel & (truth == c)))} {name}"
                           for c, name in ((2, "CR"), (1, "X-ray"), (0, "noise")))
        lines.append(f"Not in the table: {int(sel.sum())} events at {label} ({counts}); "
                     f"VF rejects {int(np.count_nonzero(sel & vf))} of them.")
    return "\n".join(lines)


def _figures(events, truth, table, paths, seed, n_frames, chunk_frames):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluation.tables import roc_sweeps
    from ..evaluation.selection import method_mask, rejected
    from ..evaluation.plots import plot_frame_verdicts, plot_roc, plot_spectrum
    from ..simulate import iter_frames

    full = table[table["BAND"] == "0.3-10"]
    methods = [m for m in dict.fromkeys(full["METHOD"]) if "+" not in m]

    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    plot_roc(roc_sweeps(events, truth), full, ax=ax,
             title=f"0.3-10 keV, {int(full['N_CR'][0])} CR and {int(full['N_XRAY'][0])} "
             f"X-ray events, {n_frames} frames")
    _save(fig, paths["demo_roc.png"])

    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 4), sharey=True,
                             squeeze=False)
    for ax, m in zip(axes[0], methods):
        # a filter with a scored band (PROB_* NaN outside it) judges no other event
        column = {"CAM": "PROB_CR", "MORPH": "PROB_MORPH"}.get(m)
        unscored = (np.isnan(np.asarray(events[column], float))
                    if column in events.colnames else None)
        plot_spectrum(events, rejected(events, m), truth=truth, ax=ax, title=m,
                      unscored=unscored)
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    fig.suptitle("Events accepted and rejected by each method (dashed: 0.3 and 10 keV)")
    _save(fig, paths["demo_spectrum.png"])

    e = u.Quantity(events["ENERGY"]).to_value(u.keV)
    k = _showcase_frame(events, truth, (e >= 0.3) & (e < 10))
    # re-simulate that frame (equal seeds give identical frames) instead of keeping all
    frame = None
    for chunk in iter_frames(k + 1, seed=seed, chunk_size=chunk_frames):
        frame = chunk.frames[-1]
    sel = np.asarray(events["FRAME"]) == k
    bits = {m: method_mask(m) for m in methods}  # report names: VF, SAC, CAM, MORPH...
    # zoom on an in-band CR event of the frame (else on its first event)
    cr = sel & (truth == 2) & (e >= 0.3) & (e < 10)
    i = int(np.flatnonzero(cr if cr.any() else sel)[0])
    center = (float(events["RAWX"][i]), float(events["RAWY"][i]))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8))
    plot_frame_verdicts(frame * u.eV, events[sel], bits, ax=axes[0], labels=False,
                        title=f"frame {k}: {int(sel.sum())} events, "
                        f"{int(np.count_nonzero(truth[sel] == 2))} of them CR (truth)")
    plot_frame_verdicts(frame * u.eV, events[sel], bits, ax=axes[1], center=center,
                        half_size=40, title=f"zoom on the event at RAWX, RAWY = "
                        f"{center[0]:.0f}, {center[1]:.0f} "
                        f"({'CR' if truth[i] == 2 else 'X-ray'}, {e[i]:.2f} keV)")
    _save(fig, paths["demo_frame.png"])


def _save(fig, path):
    import matplotlib.pyplot as plt
    fig.tight_layout()
    tmp = path + ".part"
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, path)
    plt.close(fig)
