"""Observation-calibrated filters scored as the independent evaluation runs them.

For each physics preset two runs of frames are simulated:

* a **CR-rich** run: frames kept from a long simulation because they hold
  at least one 0.3-10 keV event whose central pixel is cosmic-ray charge
  (until ``--cr-events`` such events are collected);
* an **ordinary** run of ``--frames`` frames.

Both are given to `xcrfilter.pipeline.run_pipeline` as one observation
(rich first), with ``max_lost_xray``; cosmic-ray rejection is scored on the
rich run, the X-ray loss on the ordinary one.  For every method the table
gives, at the calibrated threshold, the true X-ray loss and the fraction of
the in-band cosmic-ray events that the very-faint-mode filter keeps which
the method removes (the relative reduction of the residual background,
``RESID``); and, with truth, the best threshold (radius) at <= ``--max-lost``
true loss and its ``RESID``::

    python scripts/observation_check.py --presets paper high-cr --cr-events 400 \\
        --frames 2500 --methods sac,obsctx -o runs/obs/check.ecsv

Frames are held in memory (the rich run) or streamed (the ordinary run);
nothing is written but the table.  ``--set NAME=VALUE`` changes any
`xcrfilter.simulate.SimulationParameters` field of the preset, e.g. physics
outside every training range (``--set cloud_sigma0=20``: X-ray charge clouds
wider than any model saw).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import astropy.units as u
import numpy as np

from calibration_check import show_table  # scripts/, beside this one
from xcrfilter import registry
from xcrfilter.meta import card_value
from xcrfilter.events import find_events
from xcrfilter.io.frames import as_energy_cube
from xcrfilter.pipeline import run_pipeline
from xcrfilter.simulate import event_truth, iter_frames, preset

LAST_T = None  # truth of the last run's events (for experiments)
CHANGES = {}  # --set NAME=VALUE: SimulationParameters fields changed in every preset


def physics(name):
    """The preset's parameters and detector, with the ``--set`` changes."""
    params, det = preset(name)
    return dataclasses.replace(params, **CHANGES), det


def parse_set(items):
    """``NAME=VALUE`` strings as a dict of SimulationParameters fields (numbers)."""
    base = preset("paper")[0]
    fields = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(base)}
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise SystemExit(f"--set {item!r}: expected NAME=VALUE with NAME a "
                             "SimulationParameters field")
        out[name] = fields[name](float(value))
    return out


def rich_run(name, n_cr, seed, max_frames=400000):
    """Frames holding in-band CR events, and their truth labels."""
    params, det = physics(name)
    frames, labels, got, seen = [], [], 0, 0
    for chunk in iter_frames(max_frames, seed=seed, detector=det, params=params,
                             chunk_size=200):
        ev = find_events(as_energy_cube(chunk.frames * u.eV))
        e = ev["ENERGY"].to_value(u.keV)
        t = np.asarray(event_truth(ev, chunk.labels))
        hit = np.unique(np.asarray(ev["FRAME"])[(t == 2) & (e >= 0.3) & (e < 10)])
        seen += len(chunk.frames)
        if hit.size:
            frames.append(chunk.frames[hit])
            labels.append(chunk.labels[hit])
            ev_hit = np.isin(np.asarray(ev["FRAME"]), hit)
            got += int(((t == 2) & (e >= 0.3) & (e < 10) & ev_hit).sum())
        if got >= n_cr:
            break
    return np.concatenate(frames), np.concatenate(labels), seen


def best_at_loss(score, sign, is_x, is_cr, kept_by_vf, max_lost):
    """Best threshold at <= max_lost true loss, and the residual CR removed there."""
    vals = np.unique(score[np.isfinite(score)])
    if vals.size > 400:
        vals = np.quantile(vals, np.linspace(0, 1, 400))
    best = (np.nan, 0.0)
    for v in vals:
        rej = np.where(np.isnan(score), False, score <= v if sign < 0 else score >= v)
        if rej[is_x].mean() <= max_lost:
            resid = rej[is_cr & kept_by_vf].mean() if (is_cr & kept_by_vf).any() else np.nan
            if resid > best[1]:
                best = (float(v), float(resid))
    return best


def run_one(name, args, seed, n_frames, rich=None):
    params, det = physics(name)
    t0 = time.perf_counter()
    rich, rich_lab, seen = rich or rich_run(name, args.cr_events, seed)
    n_rich = len(rich)
    truth = {}

    def blocks():
        for a in range(0, n_rich, 200):
            yield rich[a:a + 200] * u.eV
        for chunk in iter_frames(n_frames, seed=seed + 1000, detector=det, params=params,
                                 chunk_size=200):
            truth[chunk.first_frame] = chunk.labels
            yield chunk.frames * u.eV

    methods = args.methods.split(",")
    options = {}
    for item in getattr(args, "option", None) or ():
        key, _, value = item.partition("=")
        method, _, option = key.partition(".")
        options.setdefault(method, {})[option] = value
    if args.obsctx_shape and "obsctx" in methods:
        options.setdefault("obsctx", {})["shape"] = "on"
        if getattr(args, "shape_model", None):
            options["obsctx"]["shape_model"] = args.shape_model
        if getattr(args, "obsctx_morph", False):
            options["obsctx"]["morph"] = "on"
        if getattr(args, "morph_model", None):
            options["obsctx"]["morph_model"] = args.morph_model
    ev = run_pipeline(blocks(), ["vfaint", *methods], max_lost_xray=args.max_lost,
                      detector=det, seed=seed, options=options or None)
    wall = time.perf_counter() - t0
    frame = np.asarray(ev["FRAME"])
    in_rich = frame < n_rich
    t = np.zeros(len(ev), int)
    t[in_rich] = event_truth(ev[in_rich], rich_lab)
    ordinary = ev[~in_rich]
    ordinary["FRAME"] -= n_rich
    labels = np.concatenate([truth[k] for k in sorted(truth)])
    t[~in_rich] = event_truth(ordinary, labels)
    e = ev["ENERGY"].to_value(u.keV)
    band = (e >= 0.3) & (e < 10)
    global LAST_T
    LAST_T = t
    for line in ev.meta.get("HISTORY", []):
        if "obsctx" in line or "calibrate" in line:
            print(line, flush=True)
    if args.save:
        # the events with their truth (TRUTH: 0 noise, 1 X-ray, 2 CR; RICH: in the rich run)
        keep = ev.copy()
        keep["TRUTH"], keep["RICH"] = t, in_rich
        keep.meta = {k: v for k, v in ev.meta.items() if k not in ("HISTORY", "GTI")}
        os.makedirs(args.save, exist_ok=True)
        keep.write(os.path.join(args.save, f"{name}-{n_frames}.fits"), overwrite=True)
    is_x = (t == 1) & band & ~in_rich
    is_cr = (t == 2) & band & in_rich
    status = np.asarray(ev["STATUS"]).astype(np.int64)
    vf = (status & registry.method_bits("vfaint")) != 0
    kept = ~vf
    rows = []
    for m in methods:
        cal = registry.filter_spec(m).calibration
        rej = (status & registry.method_bits(m)) != 0
        score = np.asarray(ev[cal.column], float)
        bv, bres = best_at_loss(score, cal.sign, is_x, is_cr, kept, args.max_lost)
        rows.append(dict(
            preset=name, method=m, rich_frames=n_rich, simulated=seen, ordinary=n_frames,
            n_cr=int(is_cr.sum()), n_cr_vf_kept=int((is_cr & kept).sum()),
            n_xray=int(is_x.sum()), value=float(card_value(ev.meta, cal.card)),
            estimate=card_value(ev.meta, f"{cal.prefix}CALF"),
            true_lost=float(rej[is_x].mean()), resid=float(rej[is_cr & kept].mean()),
            best_value=bv, best_resid=bres,
            prior=card_value(ev.meta, "OBCPRIOR") if m == "obsctx" else np.nan,
            wall_s=wall))
    return rows, (rich, rich_lab, seen)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["paper"])
    p.add_argument("--frames", type=int, nargs="+", default=[2500],
                   help="ordinary frames (several: one run each, the same rich run)")
    p.add_argument("--cr-events", type=int, default=400, help="in-band CR events, rich run")
    p.add_argument("--seed", type=int, default=500)
    p.add_argument("--methods", default="sac,obsctx")
    p.add_argument("--max-lost", type=float, default=0.02)
    p.add_argument("-o", "--output", default=None)
    p.add_argument("--obsctx-shape", action="store_true",
                   help="obsctx with its shape option on (the combination)")
    p.add_argument("--shape-model", metavar="DIR", default=None,
                   help="with --obsctx-shape: another shape-only model (e.g. leave-one-out)")
    p.add_argument("--obsctx-morph", action="store_true",
                   help="with --obsctx-shape: the morph ranking competes (obsctx option morph)")
    p.add_argument("--morph-model", metavar="DIR", default=None,
                   help="with --obsctx-morph: another morph model (e.g. leave-one-out)")
    p.add_argument("--save", metavar="DIR", default=None,
                   help="also write each run's events with their truth to DIR")
    p.add_argument("--option", metavar="METHOD.NAME=VALUE", action="append",
                   help="a filter option, e.g. unet.model=DIR (repeatable)")
    p.add_argument("--set", metavar="NAME=VALUE", action="append",
                   help="change a SimulationParameters field of every preset (repeatable)")
    args = p.parse_args(argv)
    CHANGES.clear()
    CHANGES.update(parse_set(args.set))
    rows = []
    for i, name in enumerate(args.presets):
        rich = None
        for n_frames in args.frames:
            new, rich = run_one(name, args, args.seed + 10 * i, n_frames, rich)
            rows += new
            show_table(rows, ("estimate", "true_lost", "resid", "best_resid", "prior", "value",
                              "best_value"), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
