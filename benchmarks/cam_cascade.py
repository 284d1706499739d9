"""Choose and check the band of the CAM filter's cascade (`xcrfilter.ml.cascade`).

Three steps::

    # 1. score simulated frames both ways: the full CAM evaluation (network on
    #    every in-band event) and the morph forest's PROB_MORPH
    python benchmarks/cam_cascade.py collect --preset paper --frames 1500 --seed 901 \\
        -o runs/cascade/val-paper.npz
    # 2. the band [lo, hi) of PROB_MORPH that sends the fewest events to the
    #    network while the verdicts at the default threshold differ from the
    #    full evaluation for at most --max-differ of the events of every file
    python benchmarks/cam_cascade.py choose runs/cascade/val-*.npz --max-differ 0.0025
    # 3. agreement and network fraction of a band on fresh frames, per file
    python benchmarks/cam_cascade.py check runs/cascade/test-*.npz --band 0.3 0.97

The seeds 901 (validation) and 902 (test) are used nowhere else (the
generalisation study uses 11-14, 21, 22, 31; the CAM model 101-505).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np


def cmd_collect(args):
    from xcrfilter.context import context_features, feature_matrix
    from xcrfilter.events import find_events
    from xcrfilter.ml.model import load_model
    from xcrfilter.ml.morph import load_morph_model
    from xcrfilter.simulate import (PhysicsRanges, RandomPhysicsSimulator, event_truth,
                                    iter_frames, preset)
    cam = load_model()
    morph = load_morph_model()
    kw = {}
    if args.preset == "random":
        kw["physics"] = RandomPhysicsSimulator(PhysicsRanges())
    else:
        params, det = preset(args.preset)
        kw.update(params=params, detector=det)
    lo, hi = cam.band_ev
    out = {k: [] for k in ("prob_cr", "prob_morph", "truth", "frame")}
    n_events = 0
    t0 = time.time()
    offset = 0
    for c in iter_frames(args.frames, seed=args.seed, chunk_size=64, **kw):
        frames = np.asarray(c.frames, np.float32)
        ev = find_events(frames * u.eV)
        n_events += len(ev)
        e = ev["ENERGY"].to_value(u.eV)
        sub = ev[(e >= lo) & (e < hi)]
        if len(sub):
            es = sub["ENERGY"].to_value(u.eV)
            ctx = context_features(frames, sub, **cam.context_kw)
            X, _ = cam.features(frames, np.asarray(sub["FRAME"]), np.asarray(sub["RAWY"]),
                                np.asarray(sub["RAWX"]), es)
            X = np.hstack([X, feature_matrix(sub, ctx, cam.context_names)])
            out["prob_cr"].append(cam.predict_proba(X).astype(np.float32))
            pm = morph.predict_proba(feature_matrix(sub, ctx, morph.feature_names))
            out["prob_morph"].append(pm.astype(np.float32))
            out["truth"].append(event_truth(sub, c.labels).astype(np.int16))
            out["frame"].append(np.asarray(sub["FRAME"], np.int64) + offset)
        offset += frames.shape[0]
    arrays = {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.output, **arrays, n_frames=args.frames, n_events=n_events,
             preset=args.preset, seed=args.seed, threshold=cam.threshold,
             cam_sha=cam.sha256, morph_sha=morph.sha256)
    print(f"{args.output}: {args.frames} frames of {args.preset} (seed {args.seed}), "
          f"{n_events} events, {len(arrays['prob_cr'])} in band, {time.time() - t0:.0f} s")
    return 0


def _load(paths):
    sets = []
    for p in paths:
        d = np.load(p)
        sets.append((str(d["preset"]), d["prob_cr"], d["prob_morph"], float(d["threshold"])))
    return sets


def differ_fraction(prob_cr, prob_morph, threshold, lo, hi):
    """Fraction of events whose cascade verdict differs from the full one; network fraction."""
    full = prob_cr >= threshold
    casc = np.where(prob_morph < lo, False, np.where(prob_morph >= hi, True, full))
    net = (prob_morph >= lo) & (prob_morph < hi)
    n = max(len(prob_cr), 1)
    return float(np.count_nonzero(casc != full)) / n, float(net.mean()) if len(net) else 0.0


def cmd_choose(args):
    sets = _load(args.files)
    thr = sets[0][3]
    grid = np.append(np.round(np.arange(0.0, 1.0001, 0.005), 4), 1.001)
    best = None
    for lo in grid[grid <= thr]:
        for hi in grid[grid >= thr]:
            res = [differ_fraction(pc, pm, thr, lo, hi) for _, pc, pm, _ in sets]
            if max(r[0] for r in res) > args.max_differ:
                continue
            # the fewest events through the network, summed over the files
            cost = float(np.mean([r[1] for r in res]))
            if best is None or cost < best[0] - 1e-12:
                best = (cost, lo, hi, res)
    if best is None:
        print("no band meets the target")
        return 1
    cost, lo, hi, res = best
    print(f"band [{lo:.3f}, {hi:.3f}) at threshold {thr:.4f}: network on {100 * cost:.1f} % "
          "of the in-band events (mean over the files)")
    for (name, pc, _, _), (d, f) in zip(sets, res):
        print(f"  {name:10s} {len(pc):7d} events: verdicts differ {100 * d:.3f} %, "
              f"network {100 * f:.1f} %")
    return 0


def cmd_check(args):
    lo, hi = args.band
    rule = "  ".join("=" * w for w in (9, 6, 6, 11, 8, 7, 15, 14))
    print(rule)
    print("preset     frames  events  differ       agree     network  CR recall        "
          "X-rays lost")
    print(" " * 59 + "full / cascade   full / cascade")
    print(rule)
    for p in args.files:
        d = np.load(p)
        pc, pm, tr, thr = d["prob_cr"], d["prob_morph"], d["truth"], float(d["threshold"])
        full = pc >= thr
        casc = np.where(pm < lo, False, np.where(pm >= hi, True, full))
        net = (pm >= lo) & (pm < hi)
        nd = int(np.count_nonzero(casc != full))
        cr, xr = tr == 2, tr == 1
        print(f"{str(d['preset']):9s}  {int(d['n_frames']):6d}  {len(pc):6d}  {nd:4d} events  "
              f"{100 * (1 - nd / len(pc)):6.2f} %  {100 * net.mean():5.1f} %  "
              f"{100 * full[cr].mean():5.1f} / {100 * casc[cr].mean():5.1f}    "
              f"{100 * full[xr].mean():4.2f} / {100 * casc[xr].mean():4.2f}")
    print(rule)
    return 0


def cmd_store(args):
    """Write the band into ``model.json`` of a CAM model directory; rewrite SHA256SUMS."""
    import json

    from xcrfilter.ml.model_files import META_FILE, write_checksums
    from xcrfilter.ml.morph import load_morph_model
    model_dir = Path(args.model_dir)
    meta = json.loads((model_dir / META_FILE).read_text())
    morph = load_morph_model()
    sets = _load(args.chosen_on)
    lo, hi = args.band
    meta["cascade"] = {
        "band": [lo, hi],
        "morph_model": morph.name,
        "morph_sha256": morph.sha256,
        "threshold": meta.get("threshold"),
        "max_differ": args.max_differ,
        "rule": "the band of PROB_MORPH that sends the fewest events to the network while "
                "the verdicts at the default threshold differ from the full evaluation for "
                "at most max_differ of the in-band events of every validation set",
        "chosen_on": {name: {"file": os.fspath(p), "events": int(len(pc)),
                             "differ": differ_fraction(pc, pm, thr, lo, hi)[0],
                             "network": differ_fraction(pc, pm, thr, lo, hi)[1]}
                      for p, (name, pc, pm, thr) in zip(args.chosen_on, sets)},
        "command": args.command,
    }
    (model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{model_dir}: cascade band [{lo}, {hi}), checksum {write_checksums(model_dir)}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--preset", default="paper", help="a preset name or 'random'")
    c.add_argument("--frames", type=int, default=1500)
    c.add_argument("--seed", type=int, required=True)
    c.add_argument("-o", "--output", required=True)
    c = sub.add_parser("choose")
    c.add_argument("files", nargs="+")
    c.add_argument("--max-differ", type=float, default=0.0025)
    c = sub.add_parser("check")
    c.add_argument("files", nargs="+")
    c.add_argument("--band", type=float, nargs=2, required=True)
    c = sub.add_parser("store")
    c.add_argument("--model-dir", required=True)
    c.add_argument("--band", type=float, nargs=2, required=True)
    c.add_argument("--max-differ", type=float, required=True)
    c.add_argument("--chosen-on", nargs="+", required=True)
    c.add_argument("--command", required=True, help="the commands that chose the band")
    args = p.parse_args(argv)
    return {"collect": cmd_collect, "choose": cmd_choose, "check": cmd_check,
            "store": cmd_store}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
