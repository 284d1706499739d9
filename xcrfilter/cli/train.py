"""``xcrfilter train``: train both stages of the CAM filter.

Examples
--------
Stage 1 on a tile file, stage 2 on labelled frames (FITS with a ``TRUTH``
extension, as ``xcrfilter simulate`` writes them)::

    xcrfilter train --tiles tiles.npz --frames obs1.fits obs2.fits --output my_model/

Stage 2 on frames simulated on the fly (never the stage-1 seed)::

    xcrfilter train --tiles tiles.npz --simulate-frames 30000 --simulate-seed 303 \\
        --output my_model/

An interrupted run resumes from ``my_model/stage1_backup`` (``--restart``
starts over); a finished stage 1 is reused with ``--skip-stage1``.
"""
from __future__ import annotations

import sys

__all__ = ["add_arguments", "run"]


def _jobs(text):
    """``--jobs``: scikit-learn's n_jobs (-1: every CPU; never 0)."""
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, or negative (-1: every CPU), got 0")
    return value


def add_arguments(parser):
    """Add the ``train`` options to an argparse parser (checked before any work)."""
    from .argtypes import non_negative_int, open_fraction, positive_float, positive_int
    parser.description = ("Train the CAM filter (DenseNet frame classifier + balanced "
                          "random forest).")
    parser.add_argument("--tiles", required=True, metavar="TILES.npz",
                        help="stage-1 tiles: npz with 'tiles' (N,64,64) eV, 'labels', 'classes'")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--frames", nargs="+", metavar="FRAMES.fits",
                     help="stage-2 frames with per-pixel truth (a TRUTH image extension, "
                          "as xcrfilter simulate writes, a Geant4 pixel-deposit table, "
                          "or npz with frames and labels); "
                          "never used for stage 1")
    src.add_argument("--simulate-frames", type=positive_int, metavar="N",
                     help="simulate N 512x512 stage-2 frames instead of --frames")
    parser.add_argument("--simulate-seed", type=int, default=303,
                        help="seed of --simulate-frames")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                        help="directory for the trained model (created)")
    parser.add_argument("--name", default=None, help="model name (default: directory name)")
    g = parser.add_argument_group("stage 1 (DenseNet)")
    g.add_argument("--epochs", type=positive_int, default=30, help="maximum number of epochs")
    g.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="tiles per training batch")
    g.add_argument("--val-fraction", type=open_fraction, default=0.1, metavar="F",
                   help="fraction of the tiles held out for validation")
    g.add_argument("--patience", type=non_negative_int, default=5,
                   help="early-stopping patience [epochs]")
    g.add_argument("--lr0", type=positive_float, default=0.007,
                   help="initial learning rate (paper 0.007)")
    g.add_argument("--decay", type=positive_float, default=0.95,
                   help="per-epoch decay (paper 0.95)")
    g.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                   help="stop stage 1 after the epoch that passes S seconds")
    g.add_argument("--restart", action="store_true", help="ignore an existing stage-1 backup")
    g.add_argument("--skip-stage1", action="store_true",
                   help="reuse MODEL_DIR/densenet.keras from a finished stage 1")
    g = parser.add_argument_group("stage 2 (balanced random forest)")
    g.add_argument("--trees", type=positive_int, default=1000, help="number of trees (paper 1000)")
    g.add_argument("--max-features", type=positive_int, default=3, metavar="N",
                   help="features considered at each split")
    g.add_argument("--min-samples-leaf", type=positive_int, default=1, metavar="N",
                   help="minimum events in a leaf")
    g.add_argument("--max-depth", type=positive_int, default=None, metavar="N",
                   help="maximum tree depth (default: unlimited)")
    g.add_argument("--target-fpr", type=open_fraction, default=0.0182,
                   help="lost X-ray fraction at which the threshold is chosen (paper 0.0182)")
    g.add_argument("--feature-set", choices=("paper", "extended"), default="paper",
                   help="event features: the paper's, or with extra context features")
    g.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                   help="parallel jobs of the forest (default: scikit-learn's)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of both stages")


def run(args):
    """Run ``xcrfilter train``; returns the exit code."""
    import os

    from ..io.outputs import check_outputs
    from ..ml.checksums import SUMS_FILE, ModelFileError
    from ..ml.model_files import CHECKED_FILES
    from ..ml.training import train

    # no model file may replace an input (tiles or frames inside the model directory)
    check_outputs({f"-o/--output {name}": os.path.join(args.output, name)
                   for name in CHECKED_FILES + (SUMS_FILE, "stage1_log.csv")},
                  [args.tiles] + list(args.frames or []), overwrite=True, create_dirs=True)
    if args.simulate_frames is not None:
        frames = _SimulatedFrames(args.simulate_frames, args.simulate_seed)
    else:
        frames = list(args.frames)
    if args.restart:
        import shutil
        from pathlib import Path
        shutil.rmtree(Path(args.output) / "stage1_backup", ignore_errors=True)
    try:
        meta = train(args.tiles, frames, args.output, epochs=args.epochs,
                     batch_size=args.batch_size, val_fraction=args.val_fraction,
                     patience=args.patience, lr0=args.lr0, decay=args.decay, seed=args.seed,
                     n_estimators=args.trees, max_features=args.max_features,
                     min_samples_leaf=args.min_samples_leaf, max_depth=args.max_depth,
                     target_fpr=args.target_fpr, feature_set=args.feature_set, name=args.name,
                     skip_stage1=args.skip_stage1, n_jobs=args.jobs,
                     time_limit_s=args.time_limit,
                     command="xcrfilter train " + " ".join(sys.argv[2:]))
    except (ValueError, TypeError, OSError, ModelFileError) as exc:
        print(f"xcrfilter train: error: {exc}", file=sys.stderr)
        return 2
    tc = meta["threshold_choice"]
    print(f"model written to {args.output}: threshold {meta['threshold']:.4f} "
          f"(lost X-ray {100 * tc['fpr']:.2f} %, CR recall {100 * tc['recall']:.1f} % on the "
          f"validation frames)")
    return 0


class _SimulatedFrames:
    def __init__(self, n, seed, chunk=64):
        self.n, self.seed, self.chunk = int(n), int(seed), chunk
        self.description = f"simulated: {self.n} frames, seed {self.seed} (xcrfilter.simulate)"

    def __iter__(self):
        from ..simulate import iter_frames
        for ch in iter_frames(self.n, seed=self.seed, chunk_size=self.chunk):
            yield ch.frames, ch.labels
