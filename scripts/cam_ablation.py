"""Ablation of the CAM frame classifier: cost per window against tile accuracy.

Variants of :func:`xcrfilter.ml.densenet.build_densenet` (growth rate,
layers per block, initial filters, a strided stem) are compared on

- ``cost``: weights, multiply-adds per 64 x 64 window as ONNX Runtime runs
  the network (`xcrfilter.ml.netgraph.LayerGraph.multiply_adds`) and
  windows/s in ONNX Runtime (one thread, batches of 8, best of three);
- ``train``: stage 1 (:func:`xcrfilter.ml.stage1.train_network`, the
  shipped network's recipe) on the same tiles, and the accuracy on held-out
  tiles; the result goes to ``OUTPUT/ablation.json``;
- ``table``: the trained variants side by side.

Commands (tiles from ``scripts/train_cam_model.py tiles``)::

    python scripts/cam_ablation.py cost
    python scripts/train_cam_model.py tiles --n-per-class 1000 --seed 101 --out runs/abl/tiles.npz
    python scripts/train_cam_model.py tiles --n-per-class 500 --seed 202 --out runs/abl/test.npz
    python scripts/cam_ablation.py train --variant paper --tiles runs/abl/tiles.npz \\
        --test runs/abl/test.npz --epochs 3 --output runs/abl/paper
    python scripts/cam_ablation.py table runs/abl/*/ablation.json

Tile accuracy is stage 1 only: a variant replaces the shipped network only
after its full model (stage 2 forest, cascade band) keeps the context CAM
filter's quality on every preset (docs/cam.rst).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

#: name -> keyword arguments of build_densenet
VARIANTS = {
    "paper": {},
    "growth8": {"growth_rate": 8},
    "layers3": {"layers_per_block": 3},
    "filters32": {"initial_filters": 32},
    "stem2": {"initial_stride": 2, "transition_pool": False},
    "small": {"initial_filters": 32, "growth_rate": 8, "layers_per_block": 4},
}


def cost(name, repeat=3, batch=8):
    """``(weights, multiply-adds per window, ONNX Runtime windows/s)`` of a variant."""
    from xcrfilter.ml.densenet import build_densenet, count_params
    from xcrfilter.ml.netgraph import graph_from_keras
    from xcrfilter.ml.onnxnet import OnnxNetwork, export_onnx
    model = build_densenet(seed=0, **VARIANTS[name])
    graph = graph_from_keras(model)
    net = OnnxNetwork(export_onnx(graph), threads=1)
    x = np.random.default_rng(0).normal(0, 1, (64, 64, 64)).astype(np.float32)
    net(x[:batch])
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            net(x[s:s + batch])
        best = min(best, time.perf_counter() - t0)
    return count_params(model), graph.multiply_adds(), len(x) / best


def cmd_cost(args):
    rows = [(n, *cost(n)) for n in VARIANTS]
    paper = rows[0][2]
    print(f"{'variant':10s} {'weights':>9s} {'M mult-adds':>12s} {'x paper':>8s} "
          f"{'windows/s':>10s}")
    for n, w, m, r in rows:
        print(f"{n:10s} {w:9,d} {m / 1e6:12.1f} {m / paper:8.2f} {r:10.0f}")
    return 0


def _tiles(path):
    from xcrfilter.ml.stage1 import load_tiles
    return load_tiles(path)


def cmd_train(args):
    from xcrfilter.ml.cam import CamNetwork
    from xcrfilter.ml.stage1 import train_network
    x, y, scaler = _tiles(args.tiles)
    xt, yt, _ = _tiles(args.test)
    out = Path(args.output)
    t0 = time.time()
    model, scaler, info = train_network(x, y, out, scaler=scaler, epochs=args.epochs,
                                        patience=args.epochs, seed=args.seed,
                                        arch=VARIANTS[args.variant], verbose=2,
                                        time_limit_s=args.time_limit)
    wall = time.time() - t0
    net = CamNetwork(model, scaler)
    probs, _ = net.windows(xt)
    acc = float((probs.argmax(1) == yt).mean())
    per_class = [float((probs.argmax(1)[yt == k] == k).mean()) for k in range(4)]
    res = {"variant": args.variant, "arch": VARIANTS[args.variant], "tiles": str(args.tiles),
           "test": str(args.test), "n_train_tiles": int(len(x)), "n_test_tiles": int(len(xt)),
           "epochs": args.epochs, "wall_s": round(wall, 1), "test_accuracy": acc,
           "test_recall_per_class": per_class, "weights": info.get("n_params"),
           "multiply_adds": net.graph.multiply_adds(), "stage1": info}
    (out / "ablation.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(json.dumps({k: res[k] for k in ("variant", "wall_s", "test_accuracy",
                                          "multiply_adds")}))
    return 0


def cmd_table(args):
    rows = [json.loads(Path(p).read_text()) for p in args.files]
    print(f"{'variant':10s} {'M mult-adds':>12s} {'tiles':>6s} {'epochs':>6s} {'train min':>9s} "
          f"{'accuracy %':>10s}  recall EMPTY/XRAY/CR/MIX %")
    for r in sorted(rows, key=lambda r: -r["multiply_adds"]):
        rec = "/".join(f"{100 * v:.1f}" for v in r["test_recall_per_class"])
        print(f"{r['variant']:10s} {r['multiply_adds'] / 1e6:12.1f} {r['n_train_tiles']:6d} "
              f"{r['epochs']:6d} {r['wall_s'] / 60:9.1f} {100 * r['test_accuracy']:10.2f}  {rec}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cost")
    t = sub.add_parser("train")
    t.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    t.add_argument("--tiles", required=True)
    t.add_argument("--test", required=True)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--time-limit", type=float, default=None, help="stage-1 wall budget [s]")
    t.add_argument("--output", required=True)
    tb = sub.add_parser("table")
    tb.add_argument("files", nargs="+")
    args = p.parse_args(argv)
    return {"cost": cmd_cost, "train": cmd_train, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
