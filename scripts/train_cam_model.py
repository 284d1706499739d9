#!/usr/bin/env python
"""Make the pretrained CAM model shipped in ``xcrfilter/data/cam_model``.

All data come from the package simulator (``xcrfilter.simulate``), with
disjoint seeds:

* stage-1 tiles (seed 101): 64 x 64 tiles cut from simulated 512 x 512
  frames at the paper's rates, equal numbers of EMPTY, XRAY and CR tiles;
  MIX tiles (rare when cutting: an X-ray has to fall in a CR tile) come from
  64 x 64 frames simulated with one X-ray and one CR shower forced, keeping
  those whose truth class is MIX.  Held-out test tiles: seed 202.
* stage-2 frames (seed 303): full 512 x 512 frames at the paper's rates,
  never used for stage 1; 30 % of them (by frame) choose the threshold.
* test frames (seed 404): for the results (``scripts/evaluate_cam_model.py``).

Usage (the exact commands are in docs/cam.rst and the model card)::

    python scripts/train_cam_model.py tiles --n-per-class 3000 --seed 101 --out runs/tiles_train.npz
    python scripts/train_cam_model.py tiles --n-per-class 1000 --seed 202 --out runs/tiles_test.npz
    python scripts/train_cam_model.py train --tiles runs/tiles_train.npz --frames 40000 \\
        --frame-seed 303 --epochs 20 --output runs/cam_model
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def simulated_tiles(n_per_class, seed, tile=64, chunk=64, progress=True):
    """Balanced EMPTY/XRAY/CR/MIX tiles (float32 eV) from the simulator."""
    from xcrfilter.simulate import FrameSimulator, iter_frames
    rng = np.random.default_rng(seed)
    want = {0: n_per_class, 1: n_per_class, 2: n_per_class}
    got = {k: [] for k in range(4)}
    n_sim = 0
    for ch in iter_frames(10 ** 7, seed=seed, chunk_size=chunk):
        n, ny, nx = ch.frames.shape
        tc = ch.tile_classes
        t = ch.frames[:, :ny // tile * tile, :nx // tile * tile].reshape(
            n, ny // tile, tile, nx // tile, tile).transpose(0, 1, 3, 2, 4).reshape(-1, tile, tile)
        cls = tc.reshape(-1)
        for k in (0, 1, 2, 3):
            idx = np.nonzero(cls == k)[0]
            if k == 0:  # empty tiles are plentiful: subsample (2 per frame)
                idx = rng.choice(idx, size=min(len(idx), 2 * n), replace=False) if len(idx) else idx
            got[k].extend(t[idx])
        n_sim += n
        if all(len(got[k]) >= want[k] for k in want):
            break
    # MIX tiles: 64 x 64 frames with one X-ray and one CR shower forced
    sim = FrameSimulator(shape=(tile, tile))
    block = 0
    while len(got[3]) < n_per_class:
        r = sim.block_rng(seed + 7, block)
        fr, lb, st, tc = sim.simulate_block(r, 256, n_xray=np.ones(256, int),
                                            n_cr=np.ones(256, int), block_index=block)
        got[3].extend(fr[tc[:, 0, 0] == 3])
        block += 1
    tiles, labels = [], []
    for k in range(4):
        sel = got[k][:n_per_class]
        tiles.extend(sel)
        labels.extend([k] * len(sel))
    tiles = np.asarray(tiles, np.float32)
    labels = np.asarray(labels, np.int64)
    perm = rng.permutation(len(tiles))
    if progress:
        print(f"tiles: {n_sim} full frames + {block * 256} MIX frames simulated", flush=True)
    return tiles[perm], labels[perm], n_sim


def cmd_tiles(args):
    from xcrfilter.ml.scaling import LogEnergyScaler
    t0 = time.time()
    tiles, labels, n_sim = simulated_tiles(args.n_per_class, args.seed)
    sc = LogEnergyScaler.fit(tiles)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez_compressed(args.out, tiles=tiles, labels=labels,
                        classes=np.array(["EMPTY", "XRAY", "CR", "MIX"]),
                        scaling_mean=sc.mean, scaling_std=sc.std, seed=args.seed,
                        n_full_frames=n_sim)
    print(f"{args.out}: {len(tiles)} tiles {np.bincount(labels)} in {time.time() - t0:.0f} s")
    return 0


class SimFrames:
    """Iterable of simulated (frames, labels) chunks with a description."""

    def __init__(self, n, seed, chunk=64):
        self.n, self.seed, self.chunk = n, seed, chunk
        self.description = f"simulated: {n} frames 512x512, seed {seed} (xcrfilter.simulate)"

    def __iter__(self):
        from xcrfilter.simulate import iter_frames
        for ch in iter_frames(self.n, seed=self.seed, chunk_size=self.chunk):
            yield ch.frames, ch.labels


def cmd_train(args):
    from xcrfilter.ml.training import train
    arch = {}
    meta = train(args.tiles, SimFrames(args.frames, args.frame_seed), args.output,
                 epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                 seed=args.seed, n_estimators=args.trees, min_samples_leaf=args.min_samples_leaf,
                 max_depth=args.max_depth, target_fpr=args.target_fpr,
                 feature_set=args.feature_set, name=args.name, arch=arch or None,
                 skip_stage1=args.skip_stage1, command=" ".join(["python"] + sys.argv),
                 n_jobs=args.jobs, time_limit_s=args.time_limit)
    print("threshold", meta["threshold"], meta["threshold_choice"])
    return 0


def cmd_stage1(args):
    """Stage 1 only (the first half of ``train``; same code path)."""
    import json
    from pathlib import Path
    from xcrfilter.ml.stage1 import load_tiles, train_network
    x, y, scaler = load_tiles(args.tiles)
    _, _, info = train_network(x, y, args.output, scaler=scaler, epochs=args.epochs,
                               batch_size=args.batch_size, patience=args.patience,
                               seed=args.seed, time_limit_s=args.time_limit)
    info["tiles"] = str(args.tiles)
    (Path(args.output) / "stage1_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(info)
    return 0


def cmd_finalize(args):
    """Stage-1 network from the last epoch backup, with recalibrated batch norm.

    Used for the shipped model: its stage-1 run (``train`` with
    ``--time-limit``) predates the batch-norm recalibration step that
    :func:`xcrfilter.ml.stage1.train_network` now applies, and its
    validation loss during training was distorted by lagging batch-norm
    statistics (momentum 0.99 then), so early stopping would have restored an
    early epoch.  This takes the weights of the last finished epoch from
    ``stage1_backup/latest.weights.h5``, recalibrates the batch-norm
    statistics on training tiles and measures the validation accuracy on the
    same split as training.
    """
    import csv
    import json
    from pathlib import Path
    from xcrfilter.ml.densenet import build_densenet, count_params
    from xcrfilter.ml.model_files import export_network
    from xcrfilter.ml.stage1 import load_tiles, recalibrate_batchnorm, split_tiles
    out = Path(args.output)
    x, y, scaler = load_tiles(args.tiles)
    tr, va = split_tiles(len(x), 0.1, np.random.default_rng(args.seed))
    xtr = scaler.transform(x[tr])[..., None]
    xva = scaler.transform(x[va])[..., None]
    model = build_densenet(seed=args.seed)
    model.load_weights(args.weights or out / "stage1_backup" / "latest.weights.h5")
    before = float((model.predict(xva, batch_size=256, verbose=0).argmax(1) == y[va]).mean())
    recalibrate_batchnorm(model, xtr, seed=args.seed)
    after = float((model.predict(xva, batch_size=256, verbose=0).argmax(1) == y[va]).mean())
    model.save(out / "densenet.keras")
    export_network(out)
    (out / "scaling.json").write_text(json.dumps(scaler.to_dict(), indent=2) + "\n")
    rows = list(csv.DictReader(open(out / "stage1_log.csv")))
    info = {"n_tiles": int(len(x)), "n_train": int(len(tr)), "n_val": int(len(va)),
            "epochs_run": len(rows), "best_epoch": args.epoch or len(rows),
            "val_accuracy": after, "val_accuracy_before_bn_recalibration": before,
            "train_accuracy_last_epoch": float(rows[-1]["accuracy"]) if rows else None,
            "n_params": count_params(model), "batch_size": 64, "lr0": 0.007, "decay": 0.95,
            "patience": None, "max_epochs": len(rows), "val_fraction": 0.1,
            "seed": int(args.seed), "arch": {}, "tiles": str(args.tiles),
            "note": "weights of the last finished epoch + batch-norm recalibration "
                    "(scripts/train_cam_model.py finalize)"}
    (out / "stage1_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(info)
    return 0


def cmd_stage2(args):
    """Stage 2 from prepared event windows (``evaluate_cam_model.py prepare``)."""
    import json
    from pathlib import Path
    from xcrfilter.ml.model import CamModel
    from xcrfilter.ml.model_files import load_network
    from xcrfilter.ml.stage2 import fit_stage2
    t0 = time.time()
    out = Path(args.output)
    network = load_network(out)
    meta = {"name": args.name, "window": 64, "energy_band_ev": [300.0, 10000.0],
            "feature_set": args.feature_set, "safe_divide_eps": 1e-3, "split_threshold_ev": 80.0}
    cam = CamModel(network, None, meta, "training", out)
    d = np.load(args.events)
    X, _ = cam.features_from_windows(d["windows"], d["energy"])
    t_feat = time.time() - t0
    truth = d["truth"]
    info1 = json.loads((out / "stage1_info.json").read_text())
    desc = (f"simulated: {int(d['n_frames'])} frames 512x512, seed {int(d['seed'])} "
            f"(xcrfilter.simulate), prepared as {args.events}")
    meta = fit_stage2(out, X, truth == 2, d["frame"], int(d["n_frames"]), meta=meta,
                      info1=info1, frame_desc=[desc], seed=args.seed, n_estimators=args.trees,
                      min_samples_leaf=args.min_samples_leaf, max_depth=args.max_depth,
                      target_fpr=args.target_fpr, n_jobs=args.jobs, t_feat=t_feat, t_start=t0,
                      command=(open(args.command_file).read().strip() if args.command_file
                               else " ".join(["python"] + sys.argv)))
    print("threshold", meta["threshold"], meta["threshold_choice"], meta["stage2"])
    return 0


def cmd_card(args):
    """Record the full recipe in model.json / MODEL_CARD.md and rewrite SHA256SUMS."""
    import json
    from pathlib import Path
    from xcrfilter.ml.model_files import write_checksums
    from xcrfilter.ml.stage2 import model_card
    out = Path(args.output)
    if args.resave_network:
        # same weights in a network built by the current build_densenet (NumPy
        # initialisers: loading needs no compilation of random kernels)
        import keras
        from xcrfilter.ml.densenet import build_densenet
        old = keras.saving.load_model(out / "densenet.keras", compile=False)
        new = build_densenet()
        new.set_weights(old.get_weights())
        x = np.random.default_rng(0).normal(0, 1, (8, 64, 64, 1)).astype(np.float32)
        diff = float(np.abs(np.asarray(old(x, training=False)) -
                            np.asarray(new(x, training=False))).max())
        if diff > 1e-5:
            raise RuntimeError(f"re-saved network differs by {diff}")
        new.save(out / "densenet.keras")
        print("network re-saved, max output difference", diff)
    from xcrfilter.ml.model_files import export_network
    export_network(out)                    # densenet.onnx from the final densenet.keras
    meta = json.loads((out / "model.json").read_text())
    meta["command"] = open(args.command_file).read().strip()
    if args.name:
        meta["name"] = args.name
    (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(model_card(meta))
    print("model checksum", write_checksums(out))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tiles")
    t.add_argument("--n-per-class", type=int, default=3000)
    t.add_argument("--seed", type=int, default=101)
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_tiles)
    tr = sub.add_parser("train")
    tr.add_argument("--tiles", required=True)
    tr.add_argument("--frames", type=int, default=40000, help="stage-2 simulated frames")
    tr.add_argument("--frame-seed", type=int, default=303)
    tr.add_argument("--epochs", type=int, default=20)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--patience", type=int, default=4)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--trees", type=int, default=1000)
    tr.add_argument("--min-samples-leaf", type=int, default=1)
    tr.add_argument("--max-depth", type=int, default=None)
    tr.add_argument("--target-fpr", type=float, default=0.0182)
    tr.add_argument("--feature-set", default="paper")
    tr.add_argument("--name", default="xcrfilter-cam-sim-v1")
    tr.add_argument("--skip-stage1", action="store_true")
    tr.add_argument("--jobs", type=int, default=1)
    tr.add_argument("--time-limit", type=float, default=None, help="stage-1 wall budget [s]")
    tr.add_argument("--output", required=True)
    tr.set_defaults(func=cmd_train)
    s1 = sub.add_parser("stage1", help="stage 1 only")
    s1.add_argument("--tiles", required=True)
    s1.add_argument("--epochs", type=int, default=20)
    s1.add_argument("--batch-size", type=int, default=64)
    s1.add_argument("--patience", type=int, default=4)
    s1.add_argument("--seed", type=int, default=0)
    s1.add_argument("--time-limit", type=float, default=None)
    s1.add_argument("--output", required=True)
    s1.set_defaults(func=cmd_stage1)
    fz = sub.add_parser("finalize", help="stage-1 network from the last epoch backup")
    fz.add_argument("--tiles", required=True)
    fz.add_argument("--output", required=True)
    fz.add_argument("--weights", default=None)
    fz.add_argument("--epoch", type=int, default=None, help="epoch the weights are from")
    fz.add_argument("--seed", type=int, default=0)
    fz.set_defaults(func=cmd_finalize)
    s2 = sub.add_parser("stage2", help="stage 2 from prepared windows (stage 1 done)")
    s2.add_argument("--events", required=True, help="npz from evaluate_cam_model.py prepare")
    s2.add_argument("--output", required=True, help="model directory with the stage-1 network")
    s2.add_argument("--seed", type=int, default=0)
    s2.add_argument("--trees", type=int, default=1000)
    s2.add_argument("--min-samples-leaf", type=int, default=1)
    s2.add_argument("--max-depth", type=int, default=None)
    s2.add_argument("--target-fpr", type=float, default=0.0182)
    s2.add_argument("--feature-set", default="paper")
    s2.add_argument("--name", default="xcrfilter-cam-sim-v1")
    s2.add_argument("--jobs", type=int, default=1)
    s2.add_argument("--command-file", default=None,
                    help="text file with the full recipe to record in the model card")
    s2.set_defaults(func=cmd_stage2)
    cd = sub.add_parser("card", help="record the recipe in the model card, rewrite checksums")
    cd.add_argument("--output", required=True)
    cd.add_argument("--command-file", required=True)
    cd.add_argument("--name", default=None)
    cd.add_argument("--resave-network", action="store_true",
                    help="re-save densenet.keras with the current layer configuration")
    cd.set_defaults(func=cmd_card)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
