#!/usr/bin/env bash
# Event tables of the generalisation study (docs/generalisation.rst).
# Randomised physics for training and validation, one test set per preset,
# and leave-one-physics-out training sets.  About an hour on 2 CPU cores.
set -euo pipefail
export KERAS_BACKEND=jax
D=${1:-runs/gen}
G="python scripts/generalisation.py"
mkdir -p "$D"
$G build --randomize --frames 10000 --seed 12 --xray-fraction 0.5 --no-progress -o "$D/val.fits"
$G build --randomize --frames 40000 --seed 11 --xray-fraction 0.2 --no-progress -o "$D/train.fits"
for p in paper wide high-cr bright isotropic; do
    $G build --preset "$p" --frames 20000 --seed 21 --no-progress -o "$D/test-$p.fits"
done
for p in wide high-cr bright isotropic; do
    $G build --randomize --excluding "$p" --frames 24000 --seed 13 --xray-fraction 0.2 \
        --no-progress -o "$D/train-no-$p.fits"
done
# validation frames of every preset (default thresholds and SAC radius)
for p in paper wide high-cr bright isotropic orphan noisy; do
    $G build --preset "$p" --frames 3000 --seed 31 --no-progress -o "$D/val-$p.fits"
done
# a second randomised training set (more CR events for the shipped models)
$G build --randomize --frames 40000 --seed 14 --xray-fraction 0.2 --no-progress \
    -o "$D/train2.fits"
