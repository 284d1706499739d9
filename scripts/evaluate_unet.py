#!/usr/bin/env python
"""The U-Net's row in the comparison: pixel metrics and event metrics per preset.

Two sub-commands (``docs/unet.rst`` gives the commands behind its tables)::

    # pixels: U-Net mask and L.A.Cosmic mask against the truth labels
    python scripts/evaluate_unet.py pixels --frames 40 --seed 404 -o runs/unet_eval
    # events: VF, SAC, CAM, MORPH and UNET on the same events (xcrfilter.evaluation.compare),
    # FOR improvement over VF at the default threshold and at <= 2 % lost X-rays;
    # the events of the other filters are kept in -o and reused, so that
    # ``--methods vfaint sac cam morph`` may run first and the U-Net later
    python scripts/evaluate_unet.py events --frames 1500 --seed 404 -o runs/unet_eval

Frames come from the simulator presets (`xcrfilter.simulate.preset`); the
seeds are disjoint from the training (101, 202) and threshold (303) seeds.
Intervals are 16-84 % percentiles of a bootstrap over frames (the events of
one shower share a frame).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import astropy.units as u  # noqa: E402
import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

PRESETS = ("paper", "wide", "high-cr", "bright", "isotropic")
METHODS = ("vfaint", "sac", "cam", "morph", "unet")


def _chunks(name, n_frames, seed, chunk=100):
    from xcrfilter.simulate import iter_frames, preset
    params, det = preset(name)
    for ch in iter_frames(n_frames, seed=seed, params=params, detector=det, chunk_size=chunk):
        yield ch


def cmd_pixels(args):
    from xcrfilter.evaluation.pixels import pixel_confusion
    from xcrfilter.filters.laplacian import lacosmic_mask
    from xcrfilter.filters.unet import unet_mask
    from xcrfilter.ml.unet_model import load_unet_model
    model = load_unet_model(args.model)
    rows = []
    for name in args.presets:
        masks = {"UNET": [], "LACOSMIC": []}
        labels = []
        t0 = time.time()
        for ch in _chunks(name, args.frames, args.seed, chunk=20):
            masks["UNET"].append(unet_mask(ch.frames * u.eV, model=model).mask)
            masks["LACOSMIC"].append(lacosmic_mask(ch.frames * u.eV,
                                                   sigclip=args.sigclip).mask)
            labels.append(ch.labels)
        lab = np.concatenate(labels)
        for method, parts in masks.items():
            p = pixel_confusion(np.concatenate(parts), lab)
            rows.append(dict(PRESET=name, METHOD=method, N_FRAMES=args.frames,
                             N_CR=p["N_CR"], N_XRAY=p["N_XRAY"],
                             PRECISION=100 * p["PURITY"], RECALL=100 * p["COMPLETENESS"],
                             F1=100 * p["F1"],
                             XRAY_KEPT=100 * (1 - p["FP_XRAY"] / max(p["N_XRAY"], 1))))
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    _write(rows, Path(args.output) / "pixels")
    return 0


def _frame_bootstrap(frame, n_boot, rng):
    ix = np.unique(frame, return_inverse=True)[1]
    nfr = int(ix.max()) + 1 if ix.size else 0
    draws = np.stack([np.bincount(rng.integers(0, nfr, nfr), minlength=nfr)
                      for _ in range(n_boot)]).astype(float)
    return ix, nfr, draws


def _scored_events(name, args):
    """Events of one preset with every method's bits and TRUTH (saved/reused in -o)."""
    from astropy.table import QTable, vstack

    from xcrfilter.evaluation.compare import compare_chunks
    path = Path(args.output) / f"events-{name}-{args.frames}-{args.seed}.fits"
    methods = [m for m in args.methods if m != "unet"]
    if path.exists():
        ev = QTable.read(path)
    else:
        rep = compare_chunks(((c.frames * u.eV, c.labels)
                              for c in _chunks(name, args.frames, args.seed)),
                             methods=methods, pixel_frames=0)
        ev = rep.events
        ev["TRUTH"] = np.asarray(rep.truth, np.int16)
        ev.meta.clear()
        path.parent.mkdir(parents=True, exist_ok=True)
        ev.write(path, overwrite=True)
    if "unet" in args.methods:
        # the U-Net on the same frames (the simulation is reproducible from its seed)
        from xcrfilter.filters.unet import unet_filter
        from xcrfilter.ml.unet_model import load_unet_model
        model = load_unet_model(args.model)
        from xcrfilter.units import energy_values
        e = energy_values(ev["ENERGY"], u.keV)
        inband = (e >= 0.3) & (e < 10.0)
        parts, first = [], 0
        frame = np.asarray(ev["FRAME"])
        for c in _chunks(name, args.frames, args.seed):
            n = len(c.frames)
            # the in-band events only: the metrics look at no other, and an
            # event's PROB_UNET does not depend on the other events
            sel = ev[(frame >= first) & (frame < first + n) & inband]
            sel["FRAME"] -= first
            out = unet_filter(c.frames * u.eV, sel, model=model)
            out["FRAME"] += first
            out.meta.clear()
            parts.append(out)
            first += n
        ev = vstack(parts)
    return ev


def cmd_events(args):
    from xcrfilter import registry
    from xcrfilter.evaluation.metrics import for_relative_improvement
    from xcrfilter.evaluation.selection import rejected
    from xcrfilter.units import energy_values
    rng = np.random.default_rng(0)
    rows = []
    for name in args.presets:
        t0 = time.time()
        ev = _scored_events(name, args)
        truth = np.asarray(ev["TRUTH"])
        e = energy_values(ev["ENERGY"], u.keV)
        inb = (e >= 0.3) & (e < 10.0)
        is_cr, is_x = inb & (truth == 2), inb & (truth == 1)
        ix, nfr, draws = _frame_bootstrap(np.asarray(ev["FRAME"]), args.boot, rng)

        def rates(rej):
            fp, tn = np.sum(is_x & rej), np.sum(is_x & ~rej)
            fn, tp = np.sum(is_cr & ~rej), np.sum(is_cr & rej)
            kept_x = np.bincount(ix, (is_x & ~rej).astype(float), nfr)
            kept_c = np.bincount(ix, (is_cr & ~rej).astype(float), nfr)
            boot_for = (draws @ kept_c) / np.maximum(draws @ kept_x + draws @ kept_c, 1e-12)
            return (fp / max(fp + tn, 1), tp / max(tp + fn, 1), fn / max(fn + tn, 1),
                    boot_for)

        vf = rejected(ev, "VF")
        fpr_vf, rec_vf, for_vf, boot_vf = rates(vf)

        def row(method, point, rej, param=np.nan):
            fpr, rec, fo, bf = rates(rej)
            with np.errstate(divide="ignore", invalid="ignore"):
                lo, hi = np.nanpercentile(1 - bf / boot_vf, [16, 84])
            rows.append(dict(PRESET=name, METHOD=method, POINT=point, PARAM=float(param),
                             FPR=100 * fpr, RECALL=100 * rec, FOR=100 * fo,
                             IMPROVE=100 * for_relative_improvement(fo, for_vf),
                             IMP_LO=100 * lo, IMP_HI=100 * hi, N_CR=int(is_cr.sum()),
                             N_XRAY=int(is_x.sum()), N_FRAMES=args.frames))

        row("VF", "own", vf)
        for label, fname in registry.report_names().items():
            if fname not in args.methods or fname == "vfaint":
                continue
            rej = rejected(ev, label)
            row(label, "default", rej)
            row(f"VF+{label}", "default", rej | vf)
            cal = registry.filter_spec(fname).calibration
            if cal is None or cal.column not in ev.colnames:
                continue
            score = np.asarray(ev[cal.column], float) * cal.sign
            score = np.where(np.isfinite(score), score, -np.inf)
            for curve, base in ((label, None), (f"VF+{label}", vf)):
                best = _best_at(score, is_cr, is_x, base, args.max_lost)
                if best is not None:
                    r = score >= best
                    row(curve, f"best<={100 * args.max_lost:g}%",
                        r if base is None else r | base, best * cal.sign)
        print(f"{name}: {args.frames} frames, {int(is_cr.sum())} CR / {int(is_x.sum())} X-ray "
              f"events in band, {time.time() - t0:.0f} s", flush=True)
        _write([r for r in rows if r["PRESET"] == name],
               Path(args.output) / f"events-{name}-{args.frames}")
    _write(rows, Path(args.output) / "events")
    return 0


def _best_at(score, is_cr, is_x, base, max_lost):
    """Lowest ``score`` threshold (reject >= t, OR ``base``) with lost X-rays <= max_lost."""
    base = np.zeros(score.size, bool) if base is None else base
    cand = np.unique(score[(is_cr | is_x) & np.isfinite(score)])[::-1]
    n_x = max(is_x.sum(), 1)
    best = None
    for t in cand:
        if np.sum(is_x & ((score >= t) | base)) / n_x > max_lost:
            break
        best = t
    return best


def _write(rows, stem):
    tab = Table(rows=rows)
    for c in tab.colnames:
        if tab[c].dtype.kind == "f":
            tab[c].info.format = ".2f"
    stem.parent.mkdir(parents=True, exist_ok=True)
    tab.write(f"{stem}.ecsv", overwrite=True)
    with open(f"{stem}.txt", "w") as fh:
        tab.write(fh, format="ascii.fixed_width_two_line")
    print(open(f"{stem}.txt").read())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("pixels", "events"):
        s = sub.add_parser(name)
        s.add_argument("--presets", nargs="+", default=list(PRESETS))
        s.add_argument("--frames", type=int, default=40 if name == "pixels" else 1500)
        s.add_argument("--seed", type=int, default=404)
        s.add_argument("--model", default=None, help="U-Net model directory")
        s.add_argument("-o", "--output", required=True)
    sub.choices["pixels"].add_argument("--sigclip", type=float, default=4.5)
    ev = sub.choices["events"]
    ev.add_argument("--methods", nargs="+", default=list(METHODS))
    ev.add_argument("--max-lost", type=float, default=0.02)
    ev.add_argument("--boot", type=int, default=200)
    args = p.parse_args(argv)
    return {"pixels": cmd_pixels, "events": cmd_events}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
