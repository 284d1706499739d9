"""How well each filter generalises: leave-one-physics-out study.

Three steps, each a sub-command; the event tables and models they write are
small, the frames are never stored::

    # event tables: randomised training/validation physics, one test set per preset
    python scripts/generalisation.py build --randomize --frames 4000 --seed 11 \\
        -o runs/gen/train.fits
    python scripts/generalisation.py build --randomize --excluding wide --frames 4000 \\
        --seed 12 -o runs/gen/train-no-wide.fits
    python scripts/generalisation.py build --preset wide --frames 20000 --seed 21 \\
        -o runs/gen/test-wide.fits
    # models (morph and context CAM) trained on a table, threshold from validation
    python scripts/generalisation.py train --train runs/gen/train.fits \\
        --val runs/gen/val.fits -o runs/gen/models/all
    # scores: every method on every preset, bootstrap intervals, ROC figures
    python scripts/generalisation.py evaluate --tests runs/gen/test-*.fits \\
        --models runs/gen/models --val runs/gen/val.fits -o runs/gen/report

``docs/generalisation.rst`` gives the commands that made the published table
(``scripts/generalisation.sh``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import QTable

from xcrfilter.context import MODEL_FEATURES, SHAPE_FEATURES
from xcrfilter.filters.sac import SAC_DEFAULTS
from xcrfilter.ml.morph import (event_dataset, threshold_for_fpr,
                                train_forest)
from xcrfilter.simulate import (PhysicsRanges, RandomPhysicsSimulator,
                                iter_frames, preset)

CAM_PAPER = ("ENERGY", "P_XRAY", "P_CR", "MAX_CAM_XRAY", "MAX_CAM_CR", "MED_CAM_CR",
             "F1", "F2", "F3", "F4")
#: context-CAM model: the paper's ten CAM features and the shape/context features
CAMCTX_FEATURES = tuple(f"CAM_{n}" for n in CAM_PAPER) + \
    tuple(n for n in MODEL_FEATURES if n != "ENERGY")


def cmd_build(args):
    kw = {}
    if args.randomize:
        ranges = PhysicsRanges()
        if args.excluding:
            ranges = ranges.excluding(args.excluding)
        kw["physics"] = RandomPhysicsSimulator(ranges)
    elif args.preset:
        params, det = preset(args.preset)
        kw.update(params=params, detector=det)
    cam = None
    if not args.no_cam:
        from xcrfilter.ml.model import CamModel, load_model
        from xcrfilter.ml.model_files import load_network
        cam = load_model("paper")
        if args.network:
            # the paper model's feature definitions on another frame classifier
            cam = CamModel(load_network(args.network), cam.forest, cam.meta, cam.sha256,
                           cam.path)
    t0 = time.time()
    chunks = ((c.frames, c.labels) for c in iter_frames(args.frames, seed=args.seed,
                                                        chunk_size=args.chunk, **kw))
    table = event_dataset(chunks, cam_model=cam, progress=not args.no_progress,
                          xray_fraction=args.xray_fraction, seed=args.seed)
    table.meta["SIMSEED"] = args.seed
    if cam is not None:
        net_dir = Path(args.network) if args.network else Path(cam.path)
        table.meta["CAMNET"] = str(net_dir)[-68:]
        table.meta["CAMNSHA"] = _network_sha(net_dir)
    table.meta["PRESET"] = args.preset or ("random" if args.randomize else "default")
    table.meta["EXCLUDE"] = args.excluding or ""
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.write(args.output, overwrite=True)
    tr = np.asarray(table["TRUTH"])
    print(f"{args.output}: {args.frames} frames, {len(table)} events in band "
          f"({(tr == 1).sum()} X-ray, {(tr == 2).sum()} CR, {(tr == 0).sum()} noise) "
          f"in {time.time() - t0:.0f} s")
    return 0


def _network_sha(model_dir):
    """SHA-256 of a directory's network file: which network made a table's CAM columns."""
    import hashlib
    return hashlib.sha256((Path(model_dir) / "densenet.keras").read_bytes()).hexdigest()


def cmd_merge(args):
    """Stack event tables of the same physics; FRAME numbers continue."""
    from astropy.table import vstack
    parts, first, seeds, frames = [], 0, [], 0
    for path in args.tables:
        t = QTable.read(path)
        n = int(t.meta.get("NFRAMES", int(np.max(t["FRAME"], initial=-1)) + 1))
        t["FRAME"] = np.asarray(t["FRAME"]) + first
        first += n
        frames += n
        seeds.append(str(t.meta.get("SIMSEED", "")))
        parts.append(t)
    presets = {t.meta.get("PRESET") for t in parts}
    if len(presets) != 1:
        raise SystemExit(f"merge: tables of different physics {sorted(map(str, presets))}")
    table = vstack(parts, metadata_conflicts="silent")
    table.meta["NFRAMES"] = frames
    table.meta["SIMSEED"] = ",".join(seeds)
    table.write(args.output, overwrite=True)
    tr = np.asarray(table["TRUTH"])
    print(f"{args.output}: {frames} frames, {len(table)} events in band "
          f"({(tr == 1).sum()} X-ray, {(tr == 2).sum()} CR)")
    return 0


def _xy(table, names):
    from xcrfilter.context import feature_matrix
    keep = np.asarray(table["TRUTH"]) > 0
    t = table[keep]
    X = feature_matrix(t, t, names)
    y = (np.asarray(t["TRUTH"]) == 2).astype(np.int64)
    return X, y, keep


def _card(kind, meta, args, y, pv, yv, thr):
    what = {"morph": "balanced random forest on the event's own shape and its whole-frame "
                     "context (xcrfilter.context), no network",
            "camctx": "balanced random forest on the seed paper's ten CAM features of the "
                      "shipped network and the shape and context features",
            "shape": "balanced random forest on the event's own shape only "
                     "(xcrfilter.context.SHAPE_FEATURES): the shape likelihood ratio that "
                     "obsctx's shape option multiplies into its observation-learnt context "
                     "odds; its threshold is not used"}[kind]
    tc = meta["threshold_choice"]
    return (f"# {meta['name']}\n\n"
            f"{what}.\n\n"
            "## Training data\n\n"
            f"Event tables {', '.join(meta['training']['tables'])}: simulated frames with "
            "randomised physics (xcrfilter.simulate.PhysicsRanges), 0.3-10 keV events, "
            f"{len(y)} events of which {int(y.sum())} cosmic-ray events (X-ray events "
            "subsampled, weights in the table).\n\n"
            "## Threshold\n\n"
            f"{thr:.4f}: the lowest threshold losing at most {100 * tc['target_fpr']:g} % of "
            f"the X-ray events of {tc['on']} (achieved {100 * tc['fpr']:.2f} %, CR recall "
            f"{100 * tc['recall']:.1f} %).\n\n"
            "## Command\n\n"
            "    python scripts/generalisation.py train --train "
            f"{' '.join(str(p) for p in args.train)} --val {args.val} "
            f"--target-fpr {args.target_fpr} --trees {args.trees} --tag {args.tag} "
            f"--kinds {args.kinds} -o {args.output}\n\n"
            "(event tables made by scripts/generalisation.sh).\n")


def cmd_train(args):
    from astropy.table import vstack
    from xcrfilter.ml.morph import save_morph_model
    train = vstack([QTable.read(p) for p in args.train])
    val = QTable.read(args.val)
    out = Path(args.output)
    kinds = args.kinds.split(",")
    for kind, names in (("morph", MODEL_FEATURES), ("camctx", CAMCTX_FEATURES),
                        ("shape", SHAPE_FEATURES)):
        if kind not in kinds or (kind == "camctx" and "CAM_P_CR" not in train.colnames):
            continue
        t0 = time.time()
        X, y, _ = _xy(train, names)
        forest = train_forest(X, y, n_estimators=args.trees, n_jobs=args.jobs)
        Xv, yv, _ = _xy(val, names)
        pv = forest.predict_proba(Xv)[:, list(forest.classes_).index(1)]
        thr = threshold_for_fpr(pv, yv == 1, args.target_fpr)
        meta = dict(name=f"xcrfilter-{kind}-{args.tag}", feature_names=list(names),
                    threshold=thr, energy_band_ev=[300.0, 10000.0],
                    threshold_choice=dict(target_fpr=args.target_fpr,
                                          on=str(args.val),
                                          fpr=float(np.mean(pv[yv == 0] >= thr)),
                                          recall=float(np.mean(pv[yv == 1] >= thr))),
                    training=dict(tables=[str(p) for p in args.train], n_events=int(len(y)),
                                  n_cr=int(y.sum()), trees=args.trees,
                                  seconds=round(time.time() - t0, 1)),
                    context=dict(split_threshold_ev=80.0, event_threshold_ev=260.0,
                                 track_energy_ev=10000.0, track_size=10,
                                 radii=[16, 32, 64, 128]))
        card = _card(kind, meta, args, y, pv, yv, thr)
        save_morph_model(out / kind, forest, meta, card_text=card)
        print(f"{out / kind}: {len(y)} events ({int(y.sum())} CR), threshold {thr:.4f}, "
              f"{time.time() - t0:.0f} s")
    return 0


def cmd_defaults(args):
    """Default thresholds that keep the lost X-ray fraction on every validation set."""
    from xcrfilter.ml.morph import load_morph_model, save_morph_model
    tables = {}
    for path in args.val:
        t = QTable.read(path)
        tables[t.meta.get("PRESET", Path(path).stem)] = t[np.asarray(t["TRUTH"]) == 1]
    report = {}
    # SAC: the largest radius within the budget on every set
    radii = []
    for name, t in tables.items():
        d = np.sort(np.asarray(u.Quantity(t["TRK_DIST"]).value))
        w = np.asarray(t["WEIGHT"], float)
        k = int(np.floor(args.target_fpr * w.sum() / w.mean()))
        radii.append(float(np.nextafter(d[min(k, d.size - 1)], -np.inf)))
        report.setdefault("sac", {})[name] = radii[-1]
    report["sac_radius"] = float(np.floor(min(radii)))
    if args.figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.8))
        r = np.arange(0, 81)
        for path in args.val:
            t = QTable.read(path)
            name = t.meta.get("PRESET", Path(path).stem)
            t = t[np.asarray(t["TRUTH"]) > 0]
            d = np.asarray(u.Quantity(t["TRK_DIST"]).value)
            cr = np.asarray(t["TRUTH"]) == 2
            w = np.asarray(t["WEIGHT"], float)
            lost = [100 * w[~cr][d[~cr] <= x].sum() / w[~cr].sum() for x in r]
            rec = [100 * np.mean(d[cr] <= x) for x in r]
            a1.plot(r, lost, label=name)
            a2.plot(r, rec, label=f"{name} ({int(cr.sum())} CR)")
        for a in (a1, a2):
            a.axvline(report["sac_radius"], color="0.5", ls=":")
            a.set_xlabel("SAC radius [pixel]")
        a1.axhline(100 * args.target_fpr, color="0.5", ls="--", lw=1)
        a1.set_ylabel("lost X-ray signal [%]")
        a2.set_ylabel("CR events rejected [%]")
        a1.set_ylim(0, 8)
        a2.legend(fontsize=7)
        a1.set_title("X-rays within R of a track")
        a2.set_title("CR events within R of a track")
        fig.tight_layout()
        fig.savefig(args.figure, dpi=110)
    for kind in ("morph", "camctx"):
        path = Path(args.models) / kind
        if not (path / "model.json").exists():
            continue
        model = load_morph_model(path)
        thr = []
        for name, t in tables.items():
            p = _prob(model, t)
            thr.append(threshold_for_fpr(p, np.zeros(p.size, bool), args.target_fpr))
            report.setdefault(kind, {})[name] = thr[-1]
        meta = dict(model.meta)
        meta["threshold"] = float(max(thr))
        meta["threshold_choice"] = dict(
            rule=f"the lowest threshold losing at most {100 * args.target_fpr:g} % of the "
                 "X-ray events on every validation set", target_fpr=args.target_fpr,
            per_set={k: float(v) for k, v in report[kind].items()},
            on=[str(v) for v in args.val])
        card = (path / "MODEL_CARD.md").read_text()
        card += (f"\n## Default threshold\n\n{meta['threshold']:.4f}: "
                 f"{meta['threshold_choice']['rule']} ({', '.join(tables)}); per set: "
                 + ", ".join(f"{k} {v:.4f}" for k, v in report[kind].items()) + ".\n")
        save_morph_model(path, model.forest, meta, card_text=card)
        report[f"{kind}_threshold"] = meta["threshold"]
    print(json.dumps(report, indent=1))
    (Path(args.models) / "defaults.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


NETWORK_FILES = ("densenet.keras", "densenet.onnx", "scaling.json", "stage1_log.csv")


def _stage1_record(network_dir):
    """Stage-1 record of a network directory and the command that trained it.

    From its ablation.json (``scripts/cam_ablation.py train``), or from the
    model.json of a model directory (the paper model: command None).
    """
    d = Path(network_dir)
    if (d / "ablation.json").exists():
        abl = json.loads((d / "ablation.json").read_text())
        # the training record, with what the ablation measured on top of it
        stage1 = dict(abl["stage1"], variant=abl["variant"], tiles=abl["tiles"],
                      test_tiles=abl["test"], n_test_tiles=abl["n_test_tiles"],
                      test_accuracy=abl["test_accuracy"], multiply_adds=abl["multiply_adds"])
        command = (f"python scripts/cam_ablation.py train --variant {abl['variant']} "
                   f"--tiles {abl['tiles']} --test {abl['test']} --epochs {abl['epochs']}")
        return stage1, command
    meta = json.loads((d / "model.json").read_text())
    return meta["stage1"], meta.get("stage1_command")


def cmd_ship(args):
    """Write the shipped model directories from a trained model set."""
    import shutil
    import tempfile

    from xcrfilter.ml.model import load_model
    from xcrfilter.ml.model_files import save_model
    from xcrfilter.ml.morph import load_morph_model, save_morph_model
    models = Path(args.models)
    if not args.cam_only:
        morph = load_morph_model(models / "morph")
        out = Path(args.morph_out)
        if out.exists():
            shutil.rmtree(out)
        card = (models / "morph" / "MODEL_CARD.md").read_text()
        save_morph_model(out, morph.forest, dict(morph.meta, name="xcrfilter-morph-v1"),
                         card_text=card.replace(morph.name, "xcrfilter-morph-v1"))
        print(f"{args.morph_out}: {morph.threshold:.4f}")
    ctx = load_morph_model(models / "camctx")
    paper = load_model(args.paper_dir)
    names = list(CAM_PAPER) + [n for n in MODEL_FEATURES if n != "ENERGY"]
    if [f"CAM_{n}" for n in CAM_PAPER] + names[len(CAM_PAPER):] != list(ctx.feature_names):
        raise SystemExit("camctx features are not the paper features + context features")
    network_dir = Path(args.network_dir or args.paper_dir)
    stage1, stage1_command = _stage1_record(network_dir)
    meta = {k: v for k, v in paper.meta.items()
            if k not in ("format", "format_version", "threshold_choice", "stage2",
                         "feature_names", "feature_set", "name", "threshold")}
    meta.update(name=args.name, feature_set="context", feature_names=names,
                threshold=ctx.threshold, threshold_choice=ctx.meta["threshold_choice"],
                stage1=stage1,
                stage2=dict(ctx.meta["training"], note="forest on the network's CAM "
                            "features plus xcrfilter.context features, randomised physics"),
                context=ctx.meta["context"])
    if stage1_command is None:
        meta["stage1_from"] = paper.name
    else:
        for key in ("command", "trained_utc", "total_wall_s"):  # the paper network's
            meta.pop(key, None)
        meta["stage1_command"] = stage1_command
    out = Path(args.cam_out)
    with tempfile.TemporaryDirectory() as tmp:
        # the network may come from the directory about to be replaced
        for name in NETWORK_FILES:
            if (network_dir / name).exists():
                shutil.copy2(network_dir / name, Path(tmp) / name)
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for name in NETWORK_FILES:
            if (Path(tmp) / name).exists():
                shutil.copy2(Path(tmp) / name, out / name)
    card = (models / "camctx" / "MODEL_CARD.md").read_text().replace(ctx.name, meta["name"])
    if stage1_command is None:
        card += ("\n## Network\n\nThe DenseNet frame classifier (stage 1) is the one of the "
                 f"shipped paper model {paper.name}, unchanged (see its model card in "
                 "xcrfilter/data/cam_model_paper).\n")
    else:
        arch = ", ".join(f"{k} {v}" for k, v in stage1["arch"].items())
        card += (f"\n## Network\n\nThe DenseNet frame classifier (stage 1) is the "
                 f"`{stage1['variant']}` variant of the ablation in docs/cam.rst ({arch}): "
                 f"{stage1['multiply_adds'] / 1e6:.1f} million multiply-adds per 64 x 64 "
                 f"window against {paper.network.graph.multiply_adds() / 1e6:.1f} for the "
                 f"paper model's network, {stage1['n_params']} weights. It was trained by "
                 f"`{stage1_command}` ({stage1['n_tiles']} tiles, the paper model's tile "
                 f"recipe, {stage1['wall_s'] / 60:.1f} min on one CPU core); accuracy on "
                 f"{stage1['n_test_tiles']} held-out tiles "
                 f"{100 * stage1['test_accuracy']:.2f} %. The paper model "
                 "(xcrfilter/data/cam_model_paper, `--cam-model paper`) keeps the paper's "
                 "network.\n")
    save_model(out, None, None, ctx.forest, meta, card_text=card)
    check = load_model(out)
    print(f"{out}: {check.name} threshold {check.threshold:.4f}, "
          f"{len(check.feature_names) + len(check.context_names)} features, "
          f"{check.network.graph.multiply_adds() / 1e6:.1f} M multiply-adds per window")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="simulate frames and write their event table")
    b.add_argument("--frames", type=int, required=True, help="number of frames")
    b.add_argument("--seed", type=int, required=True, help="simulation seed")
    b.add_argument("--preset", default=None, help="evaluation preset")
    b.add_argument("--randomize", action="store_true", help="randomised physics")
    b.add_argument("--excluding", default=None, help="with --randomize: leave out a preset")
    b.add_argument("--no-cam", action="store_true", help="skip the CAM features")
    b.add_argument("--network", default=None,
                   help="directory of the frame classifier whose CAM features are tabulated "
                        "(densenet.keras, scaling.json); default the paper model's")
    b.add_argument("--xray-fraction", type=float, default=1.0,
                   help="keep this fraction of the non-CR events (training sets)")
    b.add_argument("--chunk", type=int, default=200, help="frames per chunk")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("-o", "--output", required=True, help="output FITS table")
    m = sub.add_parser("merge", help="stack event tables of one physics (FRAME continues)")
    m.add_argument("tables", nargs="+", help="event tables")
    m.add_argument("-o", "--output", required=True, help="output FITS table")
    t = sub.add_parser("train", help="train morph and context-CAM forests")
    t.add_argument("--train", nargs="+", required=True, help="training tables")
    t.add_argument("--val", required=True, help="validation table (threshold choice)")
    t.add_argument("--target-fpr", type=float, default=0.015,
                   help="lost X-ray fraction at the default threshold on validation")
    t.add_argument("--trees", type=int, default=300, help="trees per forest")
    t.add_argument("--jobs", type=int, default=1, help="parallel jobs")
    t.add_argument("--tag", default="v2", help="model name tag")
    t.add_argument("--kinds", default="morph,camctx",
                   help="forests to train, of morph, camctx, shape")
    t.add_argument("-o", "--output", required=True, help="output directory")
    e = sub.add_parser("evaluate", help="score every method on every test table")
    e.add_argument("--tests", nargs="+", required=True, help="test tables")
    e.add_argument("--models", required=True, help="directory of trained model sets")
    e.add_argument("--val", required=True, help="validation table (SAC radius choice)")
    e.add_argument("--max-lost", type=float, default=0.02, help="lost X-ray budget")
    e.add_argument("--boot", type=int, default=200, help="bootstrap resamples")
    e.add_argument("-o", "--output", required=True, help="report directory")
    d = sub.add_parser("defaults", help="default thresholds kept on every validation set")
    d.add_argument("--models", required=True, help="model directory (morph/, camctx/)")
    d.add_argument("--val", nargs="+", required=True, help="validation tables")
    d.add_argument("--target-fpr", type=float, default=0.017,
                   help="lost X-ray fraction allowed on each validation set")
    d.add_argument("--figure", default=None, help="PNG of the SAC radius curves")
    sh = sub.add_parser("ship", help="write the shipped model directories")
    sh.add_argument("--models", required=True, help="trained model set (morph/, camctx/)")
    sh.add_argument("--paper-dir", default="xcrfilter/data/cam_model_paper",
                    help="paper model directory (network source)")
    sh.add_argument("--network-dir", default=None,
                    help="frame classifier shipped with the context model (a model directory "
                         "or a cam_ablation.py train output); default the paper model's")
    sh.add_argument("--name", default="xcrfilter-cam-context-v3", help="CAM model name")
    sh.add_argument("--cam-only", action="store_true", help="leave the morph model alone")
    sh.add_argument("--cam-out", default="xcrfilter/data/cam_model", help="CAM model output")
    sh.add_argument("--morph-out", default="xcrfilter/data/morph_model",
                    help="morph model output")
    sd = sub.add_parser("seeds", help="a forest's test score over its training seed")
    sd.add_argument("--train", required=True, help="training table")
    sd.add_argument("--test", required=True, help="test table")
    sd.add_argument("--kinds", default="camctx,morph", help="forests, of morph, camctx, shape")
    sd.add_argument("--seeds", type=int, default=4, help="seeds 0 .. N-1")
    sd.add_argument("--trees", type=int, default=300, help="trees per forest")
    sd.add_argument("--max-lost", type=float, default=0.02, help="lost X-ray budget")
    args = p.parse_args(argv)
    return {"build": cmd_build, "merge": cmd_merge, "train": cmd_train, "defaults": cmd_defaults,
            "ship": cmd_ship, "seeds": cmd_seeds,
            "evaluate": lambda a: cmd_evaluate(a)}[args.cmd](args)


def _rates(rej, is_cr, w):
    """(FPR, FOR, recall) of a rejection mask, X-ray weights ``w``."""
    xr = ~is_cr
    fp = np.sum(w[xr & rej])
    tn = np.sum(w[xr & ~rej])
    fn = np.sum(is_cr & ~rej)
    tp = np.sum(is_cr & rej)
    fpr = fp / max(fp + tn, 1e-12)
    fo = fn / max(tn + fn, 1e-12)
    return fpr, fo, tp / max(tp + fn, 1)


def _best_at(score, is_cr, w, max_fpr):
    """Threshold on ``score`` (reject >= t) with the largest recall at FPR <= max_fpr."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    c = is_cr[order]
    ww = w[order]
    fp = np.cumsum(np.where(c, 0.0, ww))
    tp = np.cumsum(c)
    nx = ww[~c].sum()
    # a threshold can only sit between distinct scores
    last = np.r_[s[1:] != s[:-1], True]
    ok = last & (fp / max(nx, 1e-12) <= max_fpr)
    if not ok.any():
        return np.inf
    k = np.flatnonzero(ok)[np.argmax(tp[ok])]
    return s[k]


def _roc(score, is_cr, w):
    order = np.argsort(-score, kind="stable")
    c = is_cr[order]
    ww = w[order]
    fpr = np.cumsum(np.where(c, 0.0, ww)) / max(ww[~c].sum(), 1e-12)
    tpr = np.cumsum(c) / max(c.sum(), 1)
    return fpr, tpr


def _load_forests(models, kind):
    from xcrfilter.ml.morph import load_morph_model
    out = {}
    for d in sorted(Path(models).iterdir()):
        if (d / kind / "model.json").exists():
            out[d.name] = load_morph_model(d / kind)
    return out


def _prob(model, table):
    from xcrfilter.context import feature_matrix
    return model.predict_proba(feature_matrix(table, table, model.feature_names))


def cmd_seeds(args):
    """Spread of a forest's test score over its training seed (random_state)."""
    train = QTable.read(args.train)
    test = QTable.read(args.test)
    test = test[np.asarray(test["TRUTH"]) > 0]
    is_cr = np.asarray(test["TRUTH"]) == 2
    w = np.asarray(test["WEIGHT"], float)
    _, for_vf, _ = _rates(np.asarray(test["VFSTAT"]) != 0, is_cr, w)
    for kind in args.kinds.split(","):
        names = {"morph": MODEL_FEATURES, "camctx": CAMCTX_FEATURES,
                 "shape": SHAPE_FEATURES}[kind]
        X, y, _ = _xy(train, names)
        Xt, _, _ = _xy(test, names)
        scores = []
        for seed in range(args.seeds):
            forest = train_forest(X, y, n_estimators=args.trees, random_state=seed)
            p = forest.predict_proba(np.asarray(Xt, np.float32))[:, 1]
            _, fo, _ = _rates(p >= _best_at(p, is_cr, w, args.max_lost), is_cr, w)
            scores.append(100 * (1 - fo / for_vf))
        print(f"{test.meta.get('PRESET', args.test)} {kind}: FOR improvement at the best "
              f"threshold within {100 * args.max_lost:g} % lost, seeds 0-{args.seeds - 1}: "
              + ", ".join(f"{v:.1f}" for v in scores)
              + f"; mean {np.mean(scores):.2f}, sd {np.std(scores, ddof=1):.2f}")
    return 0


def cmd_evaluate(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from xcrfilter.ml.model import load_model
    rng = np.random.default_rng(0)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    paper = load_model("paper")
    paper_sha = _network_sha(paper.path)
    morphs = _load_forests(args.models, "morph")
    camctxs = _load_forests(args.models, "camctx")
    # SAC radius tuned on the validation frames: largest radius within the budget
    val = QTable.read(args.val)
    val = val[np.asarray(val["TRUTH"]) > 0]
    vd = np.asarray(u.Quantity(val["TRK_DIST"]).value)
    vcr = np.asarray(val["TRUTH"]) == 2
    vw = np.asarray(val["WEIGHT"], float)
    r_val = _best_at(-vd, vcr, vw, args.max_lost)
    r_val = float(-r_val)
    radii = np.arange(0, 161, 2)
    curve = [(r,) + _rates(vd <= r, vcr, vw) for r in radii]
    QTable(rows=curve, names=("RADIUS", "FPR", "FOR", "RECALL")).write(
        out / "sac_radius_validation.ecsv", overwrite=True)
    rows = []
    for path in args.tests:
        t = QTable.read(path)
        name = t.meta.get("PRESET", Path(path).stem)
        t = t[np.asarray(t["TRUTH"]) > 0]
        is_cr = np.asarray(t["TRUTH"]) == 2
        w = np.asarray(t["WEIGHT"], float)
        d = np.asarray(u.Quantity(t["TRK_DIST"]).value)
        scores = {"SAC": -d}
        thr = {"CAM paper": paper.threshold, "SAC": -SAC_DEFAULTS["radius"]}
        # the paper model's forest needs the paper network's CAM columns (tables
        # without CAMNSHA predate other networks)
        if t.meta.get("CAMNSHA", paper_sha) == paper_sha:
            scores["CAM paper"] = paper.forest.predict_proba(
                np.column_stack([np.asarray(t[f"CAM_{n}"], float) for n in CAM_PAPER]))[:, 1]
        lopo = f"no-{name}" if f"no-{name}" in morphs else "all"
        for label, pool in (("morph", morphs), ("CAM", camctxs)):
            if "all" in pool:
                scores[label] = _prob(pool["all"], t)
                thr[label] = pool["all"].threshold
            if lopo != "all" and lopo in pool:
                scores[f"{label} LOPO"] = _prob(pool[lopo], t)
                thr[f"{label} LOPO"] = pool[lopo].threshold
        vf = np.asarray(t["VFSTAT"]) != 0
        fpr_vf, for_vf, rec_vf = _rates(vf, is_cr, w)
        ceiling = float(np.mean(np.asarray(t["CR_CONTEXT"])[is_cr] > 0)) \
            if "CR_CONTEXT" in t.colnames else np.nan
        # bootstrap over frames, not events: the events of one shower share a frame
        frame_ix, = np.unique(np.asarray(t["FRAME"]), return_inverse=True)[1:]
        nfr = int(frame_ix.max()) + 1 if frame_ix.size else 0
        draws = np.stack([np.bincount(rng.integers(0, nfr, nfr), minlength=nfr)
                          for _ in range(args.boot)]).astype(float)

        def boot_for(rej):
            kept_x = np.bincount(frame_ix, w * (~is_cr & ~rej), nfr)
            kept_cr = np.bincount(frame_ix, (is_cr & ~rej).astype(float), nfr)
            tn, fn = draws @ kept_x, draws @ kept_cr
            return fn / np.maximum(tn + fn, 1e-12)

        for_vf_boot = boot_for(vf)

        def score_row(method, rej, how):
            fpr, fo, rec = _rates(rej, is_cr, w)
            imp = 1 - fo / for_vf
            with np.errstate(divide="ignore", invalid="ignore"):
                bs = 1 - boot_for(rej) / for_vf_boot
            lo, hi = np.nanpercentile(bs, [16, 84])
            rows.append(dict(PRESET=name, METHOD=method, POINT=how, FPR=100 * fpr,
                             RECALL=100 * rec, FOR=100 * fo, IMPROVE=100 * imp,
                             IMP_LO=100 * lo, IMP_HI=100 * hi, N_CR=int(is_cr.sum()),
                             N_XRAY=int(round(w[~is_cr].sum())), CEILING=100 * ceiling))
        score_row("VF", vf, "own")
        for m, sc in scores.items():
            score_row(m, sc >= thr[m], "default")
            best = _best_at(sc, is_cr, w, args.max_lost)
            score_row(m, sc >= best, f"best<={100 * args.max_lost:g}%")
            bvf = _best_at(sc, is_cr, w, fpr_vf)
            score_row(m, sc >= bvf, "at VF lost")
        for a, b in (("SAC", "morph"), ("SAC", "CAM"), ("SAC", "CAM paper")):
            if a in scores and b in scores:
                score_row(f"{a} OR {b}", (scores[a] >= thr[a]) | (scores[b] >= thr[b]),
                          "default")
        score_row("VF OR SAC", vf | (scores["SAC"] >= thr["SAC"]), "default")
        if "CAM" in scores:
            score_row("VF OR CAM", vf | (scores["CAM"] >= thr["CAM"]), "default")
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        for m, sc in scores.items():
            fx, ty = _roc(sc, is_cr, w)
            ax.plot(100 * fx, 100 * ty, label=m)
        ax.plot(100 * fpr_vf, 100 * rec_vf, "ko", label="VF")
        ax.axvline(100 * args.max_lost, color="0.6", ls=":", lw=1)
        ax.set_xlim(0, 6)
        ax.set_ylim(0, 100)
        ax.set_xlabel("lost X-ray signal, FPR [%]")
        ax.set_ylabel("CR events rejected, recall [%]")
        ax.set_title(f"preset {name}: {int(is_cr.sum())} CR, "
                     f"{int(round(w[~is_cr].sum()))} X-ray events (0.3-10 keV)")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(out / f"roc-{name}.png", dpi=110)
        plt.close(fig)
    tab = QTable(rows=rows)
    tab.meta["SACRVAL"] = r_val
    tab.meta["SACRDEF"] = SAC_DEFAULTS["radius"]
    tab.write(out / "table.ecsv", overwrite=True)
    for c in ("FPR", "RECALL", "FOR", "IMPROVE", "IMP_LO", "IMP_HI", "CEILING"):
        tab[c].info.format = ".2f"
    with open(out / "table.txt", "w") as fh:
        fh.write(f"SAC default radius {SAC_DEFAULTS['radius']:g} px (validation frames of "
                 f"every preset); within {100 * args.max_lost:g} % on the randomised "
                 f"validation frames alone: {r_val:.1f} px\n")
        tab.write(fh, format="ascii.fixed_width_two_line")
    print(open(out / "table.txt").read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
