"""How ``obsctx`` weights its placements and chooses its ranking, checked against the truth.

With ``--obsctx-shape on`` a placement (an event's pixels placed into another
frame) keeps its event's shape, so the placements of shower products look
like showers; and the observation chooses among rankings calibrated to the
same loss.  Three steps::

    # 1. run obsctx as the default run does (shape and morph options on) on a
    #    CR-rich + ordinary observation of each preset, or on ordinary frames
    #    alone (--ordinary), and keep its learning sample and the truth
    python scripts/obsctx_weights.py collect --presets paper wide high-cr bright isotropic \\
        --seed 500 --out runs/wt
    python scripts/obsctx_weights.py collect --ordinary --presets paper high-cr wide \\
        bright isotropic --seed 101 --out runs/wt          # likewise --seed 201, 301
    # 2. the loss realised with four weightings of the placements (shape ranking)
    python scripts/obsctx_weights.py table runs/wt/*-rich-*.npz
    # 3. every candidate ranking at its calibrated threshold, and the one chosen
    python scripts/obsctx_weights.py rankings runs/wt/*.npz

The seeds are ``--seed + 10 i`` (CR-rich runs) or ``--seed + i`` (ordinary
runs) for the i-th preset; the frames are those of
``scripts/observation_check.py`` with that seed (the ordinary run's frames
use ``seed + 1000``).  The weightings of step 2:

* ``shape``: ``1 / ((1 - pi) + pi L(s))`` (`xcrfilter.ml.pu.shape_weights`);
* ``context``: ``1 - q``, ``q`` the event's context posterior in its own
  frame, every event placed (`xcrfilter.ml.pu.source_weights`);
* ``filter``: what the filter uses (`xcrfilter.filters.obsctx.placement_weights`:
  events far from tracks, ``1 - q``, blocks of frames weighted by their frames);
* ``truth``: 1 for placements of true X-ray events, 0 otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings

import astropy.units as u
import numpy as np
from astropy.table import QTable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from xcrfilter import registry  # noqa: E402
from xcrfilter.filters import obsctx  # noqa: E402
from xcrfilter.ml import pu  # noqa: E402

SAMPLE_KEYS = ("key", "x_same", "fold_same", "x_shift", "fold_shift", "source", "ratio",
               "morph_same", "morph_shift")


def cmd_collect(args):
    import observation_check as oc
    saved = {}
    conclude = obsctx.FILTER.conclude

    def keep(events, payloads, **kw):
        saved.update(obsctx.merge_samples(payloads))
        saved.update(frame=np.asarray(events["FRAME"]), rawy=np.asarray(events["RAWY"]),
                     rawx=np.asarray(events["RAWX"]), status=np.asarray(events["STATUS"]),
                     energy=np.asarray(getattr(events["ENERGY"], "value", events["ENERGY"])))
        return conclude(events, payloads, **kw)

    obsctx.FILTER = dataclasses.replace(obsctx.FILTER, conclude=keep)
    os.makedirs(args.out, exist_ok=True)
    for i, name in enumerate(args.presets):
        models = os.path.join(args.lopo_models, f"no-{name}") if args.lopo_models else None
        run = argparse.Namespace(
            cr_events=args.cr_events, methods="obsctx", max_lost=0.02, obsctx_shape=True,
            obsctx_morph=True, save=None, option=None,
            shape_model=os.path.join(models, "shape") if models else None,
            morph_model=os.path.join(models, "morph") if models else None)
        # an ordinary run alone: an empty CR-rich run
        shape = oc.physics(name)[1].shape
        rich = ((np.zeros((0, *shape), np.float32), np.zeros((0, *shape), np.uint8), 0)
                if args.ordinary else None)
        seed = args.seed + (i if args.ordinary else 10 * i)
        saved.clear()
        rows, _ = oc.run_one(name, run, seed, args.frames, rich)
        path = os.path.join(args.out, f"{name}-{'ord' if args.ordinary else 'rich'}-{seed}.npz")
        np.savez_compressed(path, truth=oc.LAST_T, n_rich=rows[0]["rich_frames"], **saved)
        print(f"{path}: {len(saved['key'])} events, {len(saved['source'])} placements; "
              f"true loss {100 * rows[0]['true_lost']:.2f} %", flush=True)
    return 0


def _load(path):
    """The sample, the events (STATUS without obsctx's bit) and the truth masks."""
    d = dict(np.load(path))
    e, status = d["energy"], d["status"].astype(np.int64)
    events = QTable(dict(FRAME=d["frame"], RAWY=d["rawy"], RAWX=d["rawx"]))
    events["ENERGY"] = e * u.eV
    events["STATUS"] = (status & ~(1 << obsctx.OBSCTX_BIT)).astype(d["status"].dtype)
    payload = {k: d[k] for k in SAMPLE_KEYS if k in d}
    payload.update(shape_model="collected", morph_model="collected")
    band = (e >= 300) & (e < 10000)
    in_rich = d["frame"] < int(d["n_rich"])
    vf = (status & registry.method_bits("vfaint")) != 0
    t = d["truth"]
    is_x = (t == 1) & band & ~in_rich
    is_cr = (t == 2) & band & in_rich & ~vf
    keys = obsctx.event_keys(d["frame"], d["rawy"], d["rawx"])
    order = np.argsort(keys)
    pos = order[np.searchsorted(keys[order], d["key"])]
    return d, events, payload, is_x, is_cr, pos


def _rates(rows_rejected, pos, is_x, is_cr):
    rej = np.zeros(len(is_x), bool)
    rej[pos] = rows_rejected
    return rej[is_x].mean(), rej[is_cr].mean() if is_cr.any() else np.nan


def _one(path):
    d, _, payload, is_x, is_cr, pos = _load(path)
    t = d["truth"]
    c_same, c_shift, pi, q, _ = obsctx.learnt_ranking(payload)
    src = d["source"]
    w_shape = pu.shape_weights(d["ratio"][src], pi)
    w_filter, _ = obsctx.placement_weights(payload, q, shape=True, min_effective=1000)
    out = {"pi": pi, "true_pi": float(np.mean(t[pos] == 2))}
    for label, w in (("shape", w_shape), ("context", pu.source_weights(q[src])),
                     ("filter", w_filter), ("truth", (t[pos][src] == 1).astype(float))):
        loss_same, loss_shift = pu.placement_loss(c_same, c_shift, w)
        good = np.isfinite(loss_shift) & (w > 0)
        rep = pu.weighted_threshold(loss_shift[good], w[good], 0.02)
        out[label] = _rates(np.nan_to_num(loss_same, nan=2.0) <= rep["value"], pos, is_x, is_cr)
    return out


def cmd_table(args):
    print(f"{'sample':26s} {'pi bound':>8s} {'true pi':>7s}   true loss / removed %: "
          "shape | context | filter | truth")
    for path in args.files:
        r = _one(path)
        cells = " | ".join(f"{100 * a:.2f} / {100 * b:.1f}"
                           for a, b in (r[k] for k in ("shape", "context", "filter", "truth")))
        print(f"{os.path.basename(path):26s} {r['pi']:8.4f} {r['true_pi']:7.4f}   {cells}",
              flush=True)
    return 0


def cmd_rankings(args):
    seen = {}
    choose = obsctx.choose_ranking

    def spy(candidates, default, pi):
        seen.update(candidates=candidates, default=default, pi=pi)
        return choose(candidates, default, pi)

    obsctx.choose_ranking = spy
    z_used = obsctx.SWITCH_Z
    print(f"{'sample':26s} own-frame rejection / true loss / removed % of each ranking; "
          f"chosen with SWITCH_Z = {z_used:g} and by the largest own-frame rejection")
    for path in args.files:
        _, events, payload, is_x, is_cr, pos = _load(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obsctx.conclude(events, [payload], max_lost=0.02)
        cells = []
        for name, (own, loss, _, rep) in seen["candidates"].items():
            lost, removed = _rates(np.nan_to_num(loss, nan=2.0) <= rep["value"], pos, is_x,
                                   is_cr)
            cells.append(f"{name.lower()} {100 * own:.2f} / {100 * lost:.2f} / {100 * removed:.1f}")
        obsctx.SWITCH_Z = 0.0
        largest = choose(seen["candidates"], seen["default"], seen["pi"])
        obsctx.SWITCH_Z = z_used
        chosen = choose(seen["candidates"], seen["default"], seen["pi"])
        print(f"{os.path.basename(path):26s} " + " | ".join(cells)
              + f"; chosen {chosen.lower()}, largest {largest.lower()}", flush=True)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--presets", nargs="+", default=["paper"])
    c.add_argument("--seed", type=int, default=500)
    c.add_argument("--ordinary", action="store_true", help="ordinary frames alone")
    c.add_argument("--cr-events", type=int, default=400)
    c.add_argument("--frames", type=int, default=2500)
    c.add_argument("--out", required=True)
    c.add_argument("--lopo-models", metavar="DIR",
                   help="shape and morph models trained without each preset, in DIR/no-PRESET/"
                        "{shape,morph} (as docs/_static/observation/results.rst builds them)")
    for name in ("table", "rankings"):
        t = sub.add_parser(name)
        t.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    return {"collect": cmd_collect, "table": cmd_table, "rankings": cmd_rankings}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
