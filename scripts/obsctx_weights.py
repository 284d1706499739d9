"""How the placements are weighted when ``obsctx`` uses the event's own shape.

With ``--obsctx-shape on`` a placement (an event's pixels placed into another
frame) keeps its event's shape, so the placements of shower products look
like showers.  This script compares the X-ray loss realised at an estimated
2 % with three weightings of the placements, on the same learnt scores:

* ``shape``: ``1 / ((1 - pi) + pi L(s))`` (`xcrfilter.ml.pu.shape_weights`);
* ``source``: ``1 - q``, ``q`` the event's combined probability in its own
  frame (`xcrfilter.ml.pu.source_weights`, what the filter uses);
* ``truth``: 1 for placements of true X-ray events, 0 otherwise.

Two steps::

    # 1. run obsctx (shape on) on a CR-rich + ordinary observation of each
    #    preset (scripts/observation_check.py) and keep its learning sample
    python scripts/obsctx_weights.py collect --presets paper wide high-cr bright \\
        --seed 500 --out runs/pi
    # 2. the table
    python scripts/obsctx_weights.py table runs/pi/*.npz

The seeds are ``--seed + 10 i`` for the i-th preset, as in
``scripts/observation_check.py``.  The learnt scores are cross-fitted again
in step 2 with seed 500.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xcrfilter import registry  # noqa: E402
from xcrfilter.filters import obsctx  # noqa: E402
from xcrfilter.ml import pu  # noqa: E402

SAMPLE_KEYS = ("key", "x_same", "fold_same", "x_shift", "fold_shift", "source", "ratio")


def cmd_collect(args):
    import observation_check as oc
    saved = {}
    conclude = obsctx.FILTER.conclude

    def keep(events, payloads, **kw):
        saved.update(obsctx.merge_samples(payloads))
        rep = conclude(events, payloads, **kw)
        saved.update(frame=np.asarray(events["FRAME"]), rawy=np.asarray(events["RAWY"]),
                     rawx=np.asarray(events["RAWX"]), status=np.asarray(events["STATUS"]),
                     energy=np.asarray(getattr(events["ENERGY"], "value", events["ENERGY"])))
        return rep

    obsctx.FILTER = dataclasses.replace(obsctx.FILTER, conclude=keep)
    os.makedirs(args.out, exist_ok=True)
    for i, name in enumerate(args.presets):
        run = argparse.Namespace(cr_events=args.cr_events, methods="obsctx", max_lost=0.02,
                                 obsctx_shape=True, save=None)
        saved.clear()
        rows, _ = oc.run_one(name, run, args.seed + 10 * i, args.frames)
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, truth=oc.LAST_T, n_rich=rows[0]["rich_frames"], **saved)
        print(f"{path}: {len(saved['key'])} events, {len(saved['source'])} placements",
              flush=True)
    return 0


def _one(path):
    d = dict(np.load(path))
    t, status, e = d["truth"], d["status"], d["energy"]
    keys = obsctx.event_keys(d["frame"], d["rawy"], d["rawx"])
    order = np.argsort(keys)
    pos = order[np.searchsorted(keys[order], d["key"])]
    band = (e >= 300) & (e < 10000)
    in_rich = d["frame"] < int(d["n_rich"])
    is_x = (t == 1) & band & ~in_rich
    is_cr = (t == 2) & band & in_rich & ((status & registry.method_bits("vfaint")) == 0)
    r_same, r_shift = pu.cross_fit_scores(
        d["x_same"], d["fold_same"], d["x_shift"], d["fold_shift"], n_folds=obsctx.N_FOLDS,
        monotone=[obsctx.MONOTONE[k] for k in obsctx.FEATURES], seed=500)
    src, ratio = d["source"], d["ratio"]
    c_same, c_shift, w_shape, pi = pu.with_shape(r_same, r_shift, ratio, ratio[src],
                                                 pu.class_prior(r_same, r_shift))
    out = {"pi": pi, "true_pi": float(np.mean(t[pos] == 2))}
    for label, w in (("shape", w_shape), ("source", pu.source_weights(c_same[src])),
                     ("truth", (t[pos][src] == 1).astype(float))):
        loss_same, loss_shift = pu.held_out_loss(c_same, d["fold_same"], c_shift,
                                                 d["fold_shift"], w)
        good = np.isfinite(loss_shift) & (w > 0)
        rep = pu.weighted_threshold(loss_shift[good], w[good], 0.02)
        rej = np.zeros(len(t), bool)
        rej[pos] = np.nan_to_num(loss_same, nan=2.0) <= rep["value"]
        out[label] = (rep["achieved"], rej[is_x].mean(), rej[is_cr].mean())
    return out


def cmd_table(args):
    print(f"{'sample':28s} {'pi bound':>8s} {'true pi':>7s}   "
          "estimate / true loss / removed %: shape weights | source weights | truth")
    for path in args.files:
        r = _one(path)
        cells = " | ".join(f"{100 * a:.2f} / {100 * b:.2f} / {100 * c:.1f}"
                           for a, b, c in (r["shape"], r["source"], r["truth"]))
        print(f"{os.path.basename(path):28s} {r['pi']:8.4f} {r['true_pi']:7.4f}   {cells}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--presets", nargs="+", default=["paper"])
    c.add_argument("--seed", type=int, default=500)
    c.add_argument("--cr-events", type=int, default=400)
    c.add_argument("--frames", type=int, default=2500)
    c.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    return {"collect": cmd_collect, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
