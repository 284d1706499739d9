#!/usr/bin/env python
"""Results of the CAM filter on simulated data never used for training.

Two steps (commands as run for docs/cam.rst)::

    # held-out frames (seed 404): events, truth, traditional-filter flags and
    # the 64 x 64 windows of the in-band events
    python scripts/evaluate_cam_model.py prepare --frames 30000 --seed 404 \\
        --out runs/test_events.npz
    # Table 1 (held-out tiles), Table 2 (0.3-10 and 4-8 keV), ROC, Figure 1
    python scripts/evaluate_cam_model.py evaluate --model xcrfilter/data/cam_model \\
        --tiles runs/tiles_test.npz --events runs/test_events.npz --out docs/_static/cam
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import astropy.units as u
import numpy as np


def cmd_prepare(args):
    from xcrfilter.events import find_events
    from xcrfilter.filters.vfaint import vfaint_filter
    from xcrfilter.ml.model import event_windows
    from xcrfilter.simulate import event_truth, iter_frames
    t0 = time.time()
    cols = {k: [] for k in ("frame", "row", "col", "energy", "grade", "status", "truth")}
    wins = []
    n = 0
    for ch in iter_frames(args.frames, seed=args.seed, chunk_size=64):
        ev = vfaint_filter(find_events(ch.frames * u.eV))
        tr = event_truth(ev, ch.labels)
        e = ev["ENERGY"].to_value(u.eV)
        keep = (e >= 300) & (e < 10000) & (tr > 0)
        f, y, x = (np.asarray(ev[c])[keep] for c in ("FRAME", "RAWY", "RAWX"))
        wins.append(event_windows(ch.frames, f, y, x, 64))
        cols["frame"].append(f + ch.first_frame)
        cols["row"].append(y)
        cols["col"].append(x)
        cols["energy"].append(e[keep])
        cols["grade"].append(np.asarray(ev["GRADE"])[keep])
        cols["status"].append(np.asarray(ev["STATUS"])[keep])
        cols["truth"].append(tr[keep])
        n += len(ch.frames)
        if n % 3200 == 0:
            print(f"{n} frames, {sum(len(c) for c in cols['truth'])} events, "
                  f"{time.time() - t0:.0f} s", flush=True)
    out = {k: np.concatenate(v) for k, v in cols.items()}
    np.savez(args.out, windows=np.concatenate(wins), n_frames=n, seed=args.seed, **out)
    print(f"{args.out}: {len(out['truth'])} in-band events ({int((out['truth'] == 2).sum())} CR) "
          f"from {n} frames in {time.time() - t0:.0f} s")
    return 0


def _table1(model, tiles_path):
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support
    from xcrfilter.ml.densenet import CLASS_NAMES
    from xcrfilter.ml.stage1 import load_tiles
    x, y, _ = load_tiles(tiles_path)
    probs, _ = model.network.windows(x)
    pred = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    rows = {"F1": f, "Precision": p, "Recall": r}
    return {"accuracy": float(accuracy_score(y, pred)), "n_tiles": int(len(y)),
            "classes": list(CLASS_NAMES),
            **{k: [float(v) for v in vals] for k, vals in rows.items()}}


def _features_from_windows(model, d, cache=None):
    """Features of the prepared events (cached per network checksum if ``cache``)."""
    from xcrfilter.ml.checksums import file_sha256
    key = file_sha256(os.path.join(model.path, "densenet.keras"))[:16] + model.feature_set
    if cache and os.path.exists(cache):
        c = np.load(cache)
        if str(c["key"]) == key:
            return c["X"]
    X = model.features_from_windows(d["windows"], d["energy"])[0]
    if cache:
        np.savez(cache, X=X, key=key)
    return X


def cmd_features(args):
    """Only the features (network stage) of prepared events, into a cache file."""
    from xcrfilter.ml.model import CamModel
    from xcrfilter.ml.model_files import load_network
    import json
    net = load_network(args.model)
    meta = json.load(open(os.path.join(args.model, "model.json"))) if os.path.exists(
        os.path.join(args.model, "model.json")) else {}
    cam = CamModel(net, None, meta, "features", args.model)
    t0 = time.time()
    X = _features_from_windows(cam, dict(np.load(args.events)), cache=args.cache)
    print(f"{args.cache}: {X.shape} in {time.time() - t0:.0f} s")
    return 0


def _table2(truth, energy, rejections, band_kev):
    from astropy.table import QTable
    from xcrfilter.evaluation.metrics import table2
    ev = QTable({"ENERGY": energy * u.eV})
    t = table2(truth, rejections, events=ev, band=band_kev * u.keV, reference="traditional")
    out = {}
    for name in rejections:
        out[name] = {row: float(v) for row, v in zip(t["metric"], t[name].to_value(u.percent))}
        out[name]["counts"] = t.meta[name]
    return out


def cmd_evaluate(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from xcrfilter.evaluation.roc import roc_curve
    from xcrfilter.ml.model import load_model

    os.makedirs(args.out, exist_ok=True)
    model = load_model(args.model)
    res = {"model": model.name, "sha256": model.sha256, "threshold": model.threshold}
    t0 = time.time()
    if args.tiles:
        res["table1"] = _table1(model, args.tiles)
        print("Table 1", json.dumps(res["table1"], indent=1), flush=True)
    d = dict(np.load(args.events))
    X = _features_from_windows(model, d, cache=args.cache)
    p = model.predict_proba(X)
    truth = d["truth"].astype(int)
    energy = d["energy"].astype(float)
    thr = args.threshold if args.threshold is not None else model.threshold
    trad = (d["status"] & 0b111) > 0
    rej = {"cam": p >= thr, "traditional": trad}
    res["n_frames"] = int(d["n_frames"])
    res["n_events"] = int(len(truth))
    res["n_cr"] = int((truth == 2).sum())
    res["threshold_used"] = float(thr)
    res["table2_0.3-10keV"] = _table2(truth, energy, rej, np.array([0.3, 10.0]))
    res["table2_4-8keV"] = _table2(truth, energy, rej, np.array([4.0, 8.0]))
    # operating points at the paper's lost-signal levels
    fpr, rec, thr_all = roc_curve(truth, p)
    res["roc_auc"] = float(np.trapezoid(rec, fpr))
    ops = {}
    for target in (0.0107, 0.0182, 0.02, 0.03):
        i = np.nonzero(fpr <= target)[0][-1]
        r = {"cam": p >= thr_all[i], "traditional": trad}
        t2 = _table2(truth, energy, r, np.array([0.3, 10.0]))["cam"]
        ops[f"{target:.4f}"] = {"threshold": float(thr_all[i]), **t2}
    res["operating_points"] = ops
    # ROC figure
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot(100 * fpr, 100 * rec, label=f"CAM + random forest (AUC {res['roc_auc']:.3f})")
    t2 = res["table2_0.3-10keV"]
    ax.plot(t2["cam"]["Lost X-RAY signal (FPR)"], t2["cam"]["Recall"], "o", color="C3",
            label=f"threshold {thr:.2f}")
    ax.plot(t2["traditional"]["Lost X-RAY signal (FPR)"], t2["traditional"]["Recall"], "s",
            color="k", label="traditional (VF) filter")
    ax.plot([0, 100], [0, 100], ":", color="0.6", lw=1)
    ax.set_xlabel("lost X-ray signal (FPR) [%]")
    ax.set_ylabel("CR recall [%]")
    ax.set_xlim(0, 20)
    ax.set_ylim(0, 100)
    ax.set_title("0.3-10 keV, held-out simulated frames")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "roc.png"), dpi=110)
    plt.close(fig)
    if args.figure:
        _figure1(model, args.figure_seed, os.path.join(args.out, "figure1.png"))
    res["eval_wall_s"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    _print(res)
    return 0


def _figure1(model, seed, path):
    """Frame, truth and CAM_XRAY / CAM_CR of a 128 x 128 region with a shower."""
    import matplotlib.pyplot as plt
    from xcrfilter.simulate import simulate_frames
    from scipy import ndimage
    ch = simulate_frames(200, seed=seed)
    best, best_score = None, -1
    for i in range(len(ch.frames)):
        lab, fr = ch.labels[i], ch.frames[i]
        cr = (lab == 2) & (fr > 80)
        if cr.sum() < 10:
            continue
        isl, n_isl = ndimage.label(cr, structure=np.ones((3, 3)))
        cents = ndimage.center_of_mass(cr, isl, range(1, n_isl + 1))
        yx, xx = np.nonzero(lab == 1)
        for cy, cx in cents:
            if len(yx):
                d = np.hypot(yx - cy, xx - cx)
                j = int(np.argmin(d))
                if d[j] < 100:
                    cy, cx = (cy + yx[j]) / 2, (cx + xx[j]) / 2
            y0 = int(np.clip(cy - 64, 0, lab.shape[0] - 128))
            x0 = int(np.clip(cx - 64, 0, lab.shape[1] - 128))
            sub_cr = cr[y0:y0 + 128, x0:x0 + 128]
            sub_isl = len(np.unique(isl[y0:y0 + 128, x0:x0 + 128][sub_cr]))
            score = (2 * bool((lab[y0:y0 + 128, x0:x0 + 128] == 1).any())
                     + min(sub_isl, 4) / 4 + (sub_cr.sum() >= 10))
            if score > best_score:
                best, best_score = (i, y0, x0), score
    i, y0, x0 = best
    maps = model.network.frame_maps(ch.frames[i])
    sl = (slice(y0, y0 + 128), slice(x0, x0 + 128))
    fr = ch.frames[i][sl]
    lab = ch.labels[i][sl]
    fig, axs = plt.subplots(1, 5, figsize=(15, 3.3))
    axs[0].imshow(np.log10(np.clip(fr, 10, None)), origin="lower", cmap="gray")
    axs[0].set_title("frame (log10 E/eV)")
    axs[1].imshow(lab == 1, origin="lower", cmap="Blues")
    axs[1].set_title("truth: X-ray pixels")
    axs[2].imshow(maps[sl][..., 1], origin="lower", cmap="viridis")
    axs[2].set_title("CAM_XRAY")
    axs[3].imshow(lab == 2, origin="lower", cmap="YlOrBr")
    axs[3].set_title("truth: CR pixels")
    axs[4].imshow(maps[sl][..., 2], origin="lower", cmap="viridis")
    axs[4].set_title("CAM_CR")
    for a in axs:
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"simulated frame (seed {seed}, frame {i}), rows {y0}-{y0 + 127}, "
                 f"columns {x0}-{x0 + 127}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _print(res):
    if "table1" in res:
        t = res["table1"]
        print(f"\nTable 1 (x100), {t['n_tiles']} held-out tiles, "
              f"accuracy {100 * t['accuracy']:.2f}")
        print("metric     " + " ".join(f"{c:>8s}" for c in t["classes"]))
        for k in ("F1", "Precision", "Recall"):
            print(f"{k:10s} " + " ".join(f"{100 * v:8.2f}" for v in t[k]))
    for band in ("table2_0.3-10keV", "table2_4-8keV"):
        t = res[band]
        print(f"\n{band} (percent): threshold {res['threshold_used']:.3f}")
        for row in t["cam"]:
            if row == "counts":
                continue
            print(f"{row:35s} {t['cam'][row]:8.2f} {t['traditional'][row]:8.2f}")
        print("counts cam", t["cam"]["counts"], "traditional", t["traditional"]["counts"])
    print("\noperating points:")
    for k, v in res["operating_points"].items():
        print(k, f"thr {v['threshold']:.3f} FPR {v['Lost X-RAY signal (FPR)']:.2f} "
                 f"recall {v['Recall']:.2f} FOR impr {v['FOR relative improvement']:.2f}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--frames", type=int, default=30000)
    a.add_argument("--seed", type=int, default=404)
    a.add_argument("--out", required=True)
    a.set_defaults(func=cmd_prepare)
    b = sub.add_parser("evaluate")
    b.add_argument("--model", default=None)
    b.add_argument("--tiles", default=None)
    b.add_argument("--events", required=True)
    b.add_argument("--threshold", type=float, default=None)
    b.add_argument("--out", required=True)
    b.add_argument("--figure", action="store_true")
    b.add_argument("--cache", default=None, help="feature cache file")
    b.add_argument("--figure-seed", type=int, default=505)
    b.set_defaults(func=cmd_evaluate)
    c = sub.add_parser("features")
    c.add_argument("--model", required=True)
    c.add_argument("--events", required=True)
    c.add_argument("--cache", required=True)
    c.set_defaults(func=cmd_features)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
