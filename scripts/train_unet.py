#!/usr/bin/env python
"""Make the U-Net model shipped in ``xcrfilter/data/unet_model``.

Two steps (``scripts/train_unet.sh`` has the exact commands)::

    # 1. crops of randomised-physics frames, focal-loss training, model directory
    python scripts/train_unet.py train --frames 7000 --seed 101 --val-frames 500 \\
        --val-seed 202 --epochs 8 --time-limit 1500 -o runs/unet_model
    # 2. default thresholds on validation frames (randomised physics, seed 303),
    #    model card and SHA256SUMS
    python scripts/train_unet.py thresholds --frames 400 --seed 303 -o runs/unet_model

Training writes ``unet.onnx`` (the network exported to ONNX, run at
inference) beside ``unet.keras``; ``onnx`` writes it for a directory
trained before it existed (``python scripts/train_unet.py onnx -o DIR``).

All frames come from the package simulator with randomised physics
(`xcrfilter.simulate.RandomPhysicsSimulator`, default `PhysicsRanges`);
the seeds are disjoint from every evaluation seed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np  # noqa: E402


def cmd_train(args):
    from xcrfilter.ml import unet, unet_model, unet_training
    t0 = time.time()
    from xcrfilter.simulate import PhysicsRanges
    ranges = PhysicsRanges().excluding(args.excluding) if args.excluding else PhysicsRanges()
    x, y = unet_training.training_crops(args.frames, args.seed, crop=args.crop, ranges=ranges)
    xv, yv = unet_training.training_crops(args.val_frames, args.val_seed, crop=args.crop,
                                          ranges=ranges)
    t_data = time.time() - t0
    print(f"{len(x)} training crops, {len(xv)} validation crops in {t_data:.0f} s; pixel "
          f"classes {np.bincount(y.ravel(), minlength=3).tolist()}", flush=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    net, scaler, record = unet_training.train_unet(
        x, y, val_frames_ev=xv, val_labels=yv, levels=args.levels,
        base_filters=args.base_filters, alpha=tuple(args.alpha), gamma=args.gamma,
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        time_limit=args.time_limit, seed=args.seed, log_path=out / unet_model.LOG_FILE)
    import jax
    import keras
    meta = dict(
        name=args.name, threshold=0.5, mask_threshold=0.5,
        architecture=dict(levels=args.levels, base_filters=args.base_filters, convs=2,
                          kernel=3, upsampling="Conv2DTranspose 2x2 stride 2",
                          params=int(net.count_params())),
        receptive_field=unet.receptive_field(args.levels),
        flops_per_pixel=unet.flops_per_pixel(args.levels, args.base_filters),
        tiling=dict(core=args.core, margin=args.margin),
        training=dict(record, frames=args.frames, frame_seed=args.seed,
                      val_frames=args.val_frames, val_seed=args.val_seed,
                      physics=("RandomPhysicsSimulator(PhysicsRanges()"
                               + (f".excluding({args.excluding!r}))" if args.excluding
                                  else ")")),
                      data_seconds=round(t_data, 1),
                      total_seconds=round(time.time() - t0, 1),
                      pixel_classes=np.bincount(y.ravel(), minlength=3).tolist()),
        versions=dict(keras=keras.__version__, jax=jax.__version__,
                      numpy=np.__version__, python=platform.python_version()),
        command=" ".join(sys.argv),
    )
    unet_model.save_unet_model(out, net, scaler, meta, "(thresholds not chosen yet)\n")
    print(json.dumps(meta["training"], indent=1))
    return 0


def _validation_events(model, n_frames, seed, excluding=None):
    """Events of randomised-physics validation frames with truth, PROB_UNET, CR maps."""
    import astropy.units as u

    from xcrfilter.events import find_events
    from xcrfilter.filters.unet import event_scores
    from xcrfilter.simulate import (PhysicsRanges, RandomPhysicsSimulator, event_truth,
                                    iter_frames)
    from xcrfilter.units import energy_values
    probs, truths, energies, xray_pix = [], [], [], []
    ranges = PhysicsRanges().excluding(excluding) if excluding else PhysicsRanges()
    for ch in iter_frames(n_frames, seed=seed, chunk_size=50,
                          physics=RandomPhysicsSimulator(ranges)):
        ev = find_events(ch.frames * u.eV, 260 * u.eV, 80 * u.eV, 10 * u.keV)
        _, p_cr = model.probability_maps(ch.frames)
        probs.append(event_scores(p_cr, ev))
        truths.append(event_truth(ev, ch.labels))
        energies.append(energy_values(ev["ENERGY"]))
        xray_pix.append(p_cr[ch.labels == 1])
        xray_pix.append(p_cr[ch.labels == 2] * -1 - 1)  # CR pixels stored as -1 - p
    return (np.concatenate(probs), np.concatenate(truths), np.concatenate(energies),
            np.concatenate(xray_pix))


def cmd_thresholds(args):
    from xcrfilter.ml import unet_model
    from xcrfilter.ml.checksums import write_checksums
    out = Path(args.output)
    model = unet_model.load_unet_model(out)
    t0 = time.time()
    prob, truth, energy, pix = _validation_events(model, args.frames, args.seed, args.excluding)
    p_xpix = pix[pix >= 0]
    p_cpix = -1 - pix[pix < 0]
    # pixel mask: the lowest threshold keeping >= keep_xray of the X-ray pixels
    mask_thr = float(np.quantile(p_xpix, args.keep_xray, method="higher")) + 1e-6
    mask_thr = min(max(mask_thr, 0.05), 0.999)
    kept = float(np.mean(p_xpix < mask_thr))
    cr_recall = float(np.mean(p_cpix >= mask_thr))
    # events: the lowest threshold losing at most max_lost of the in-band X-ray events
    inb = (energy >= 300) & (energy < 10000)
    px = prob[inb & (truth == 1)]
    pc = prob[inb & (truth == 2)]
    thr = float(np.quantile(px, 1 - args.max_lost, method="higher")) + 1e-6
    thr = min(max(thr, 0.05), 0.999)
    lost = float(np.mean(px >= thr))
    rec = float(np.mean(pc >= thr)) if pc.size else float("nan")
    meta = json.loads((out / unet_model.META_FILE).read_text())
    meta.update(threshold=round(thr, 6), mask_threshold=round(mask_thr, 6))
    meta["threshold_choice"] = dict(
        frames=args.frames, seed=args.seed,
        physics=meta["training"]["physics"],
        event_rule=f"lowest PROB_UNET threshold losing <= {100 * args.max_lost:g} % of the "
                   "0.3-10 keV X-ray events", event_lost_xray=lost, event_cr_recall=rec,
        n_xray_events=int(px.size), n_cr_events=int(pc.size),
        mask_rule=f"lowest CR-probability threshold keeping >= {100 * args.keep_xray:g} % "
                  "of the X-ray pixels", mask_xray_kept=kept, mask_cr_recall=cr_recall,
        n_xray_pixels=int(p_xpix.size), n_cr_pixels=int(p_cpix.size),
        seconds=round(time.time() - t0, 1))
    (out / unet_model.META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    (out / unet_model.CARD_FILE).write_text(model_card(meta))
    sha = write_checksums(out, unet_model.CHECKED_FILES)
    print(json.dumps(meta["threshold_choice"], indent=1))
    print("model checksum", sha)
    return 0


def cmd_card(args):
    from xcrfilter.ml import unet_model
    from xcrfilter.ml.checksums import write_checksums
    out = Path(args.output)
    meta = json.loads((out / unet_model.META_FILE).read_text())
    (out / unet_model.CARD_FILE).write_text(model_card(meta))
    print("model checksum", write_checksums(out, unet_model.CHECKED_FILES))
    return 0


def cmd_onnx(args):
    from xcrfilter.ml import unet_model
    from xcrfilter.ml.checksums import write_checksums
    out = Path(args.output)
    print("wrote", unet_model.export_unet_network(out))
    meta = json.loads((out / unet_model.META_FILE).read_text())
    (out / unet_model.CARD_FILE).write_text(model_card(meta))
    print("model checksum", write_checksums(out, unet_model.CHECKED_FILES))
    return 0


#: The model card's line on unet.onnx (one line of Markdown).
ONNX_CARD_LINE = ("**Runtime.** `unet.onnx` is `unet.keras` (same weights) exported to ONNX "
                  "(opset 17, `xcrfilter.ml.unet_onnx.export_unet_onnx`) and run at inference "
                  "by ONNX Runtime, without Keras or JAX; made by training, or from "
                  "`unet.keras` by `python scripts/train_unet.py onnx -o <model dir>`.")


def model_card(meta):
    """MODEL_CARD.md text from ``model.json``."""
    a, t, c = meta["architecture"], meta["training"], meta["threshold_choice"]
    fpp = meta["flops_per_pixel"]
    partial = (" (the time budget stopped training in the last of them; the weights are "
               "those at the stop)") if t.get("stopped_early") else ""
    return f"""# {meta['name']}: U-Net pixel segmentation (noise / X-ray / cosmic ray)

**Network.** U-Net (Ronneberger et al. 2015) of {a['levels']} levels, {a['base_filters']}
filters at full resolution doubling per level, {a['convs']} x ({a['kernel']}x{a['kernel']}
convolution + ReLU) per level and path, 2x2 max pooling, 2x2 stride-2 transposed
convolutions, skip connections by concatenation, 1x1 convolution + softmax over
noise / X-ray / CR; {a['params']} parameters. Input: scaled log1p(energy / eV)
(`scaling.json`).

**Receptive field.** {meta['receptive_field']} x {meta['receptive_field']} pixels
(`xcrfilter.ml.unet.receptive_field`, checked against the network's gradient in the
tests). Inference evaluates {meta['tiling']['core']} x {meta['tiling']['core']} tiles with a
{meta['tiling']['margin']}-pixel margin ({meta['tiling']['core'] + 2 * meta['tiling']['margin']}
x {meta['tiling']['core'] + 2 * meta['tiling']['margin']} windows, the training crop size)
that hold a pixel >= 260 eV.

**Cost.** {fpp:.0f} FLOPs per evaluated pixel ({fpp * 512 * 512 / 1e9:.2f} GFLOP for a dense
512 x 512 frame; multiply-adds x 2, convolutions only).

**Data.** {t['n_train']} crops of {t['crop']} x {t['crop']} pixels from {t['frames']} simulated
512 x 512 frames (seed {t['frame_seed']}), randomised physics drawn per block of 16 frames
from the default `PhysicsRanges` (secondary spreads and yields, orphan showers, CR rate
0.5-3 and X-ray rate 0.5-20 per frame, readout noise 4-9 e-, power-law X-ray spectra);
one crop around an X-ray pixel and one around a CR pixel per frame, plus a random crop in
30 % of the frames; random 90-degree rotations and flips. Pixel classes (noise, X-ray, CR):
{t['pixel_classes']}. Validation: {t['val_frames']} frames, seed {t['val_seed']}.

**Training.** Focal loss (Lin et al. 2017; seed 004) with alpha = {t['alpha']} (noise,
X-ray, CR) and gamma = {t['gamma']}; Adam, learning rate {t['learning_rate']} halved every
4 epochs, batch {t['batch_size']}; {t['epochs']} epochs{partial} in {t['seconds']:.0f} s
(+ {t['data_seconds']:.0f} s simulation) on a shared 2-core CPU, KERAS_BACKEND=jax.
Final loss {t['loss'][-1]:.5f}, validation loss
{t['val_loss'][-1] if t['val_loss'] else float('nan'):.5f}.

**Thresholds** (validation frames: {c['frames']} randomised-physics frames, seed {c['seed']}):
- event filter `threshold` = {meta['threshold']:.4f}: {c['event_rule']}; there
  {100 * c['event_lost_xray']:.2f} % lost X-ray events, {100 * c['event_cr_recall']:.1f} % of
  {c['n_cr_events']} CR events rejected ({c['n_xray_events']} X-ray events);
- pixel mask `mask_threshold` = {meta['mask_threshold']:.4f}: {c['mask_rule']}; there
  {100 * c['mask_xray_kept']:.2f} % of {c['n_xray_pixels']} X-ray pixels kept, CR-pixel recall
  {100 * c['mask_cr_recall']:.1f} % of {c['n_cr_pixels']} CR pixels.

**Command.** `scripts/train_unet.sh`; training: `{meta['command']}`.

{ONNX_CARD_LINE}

**Versions.** {meta['versions']}
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="simulate crops, train, write the model directory")
    t.add_argument("--frames", type=int, default=7000)
    t.add_argument("--seed", type=int, default=101)
    t.add_argument("--val-frames", type=int, default=500)
    t.add_argument("--val-seed", type=int, default=202)
    t.add_argument("--crop", type=int, default=64)
    t.add_argument("--levels", type=int, default=4)
    t.add_argument("--base-filters", type=int, default=8)
    t.add_argument("--alpha", type=float, nargs=3, default=(0.25, 1.0, 1.0),
                   metavar=("NOISE", "XRAY", "CR"))
    t.add_argument("--gamma", type=float, default=2.0)
    t.add_argument("--epochs", type=int, default=8)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--learning-rate", type=float, default=2e-3)
    t.add_argument("--time-limit", type=float, default=None, help="seconds")
    t.add_argument("--core", type=int, default=32)
    t.add_argument("--margin", type=int, default=16)
    t.add_argument("--name", default="xcrfilter-unet-v1")
    t.add_argument("--excluding", default=None, metavar="PRESET",
                   help="leave this preset's physics out of the training ranges")
    t.add_argument("-o", "--output", required=True)
    h = sub.add_parser("thresholds", help="choose the default thresholds, write the card")
    h.add_argument("--frames", type=int, default=400)
    h.add_argument("--seed", type=int, default=303)
    h.add_argument("--max-lost", type=float, default=0.018)
    h.add_argument("--keep-xray", type=float, default=0.99)
    h.add_argument("--excluding", default=None, metavar="PRESET",
                   help="validation physics without this preset's (as for train)")
    h.add_argument("-o", "--output", required=True)
    c = sub.add_parser("card", help="rewrite MODEL_CARD.md and SHA256SUMS from model.json")
    c.add_argument("-o", "--output", required=True)
    x = sub.add_parser("onnx", help="export unet.keras to unet.onnx; rewrite MODEL_CARD.md "
                       "and SHA256SUMS")
    x.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    return {"train": cmd_train, "thresholds": cmd_thresholds, "card": cmd_card,
            "onnx": cmd_onnx}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
