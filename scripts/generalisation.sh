#!/usr/bin/env bash
# Event tables of the generalisation study (docs/generalisation.rst).
# Randomised physics for training and validation, one test set per preset,
# leave-one-physics-out training sets, the shipped models and the report.
# 52 minutes on one CPU core with the shipped network (most of it simulating
# frames); each table takes 1.5-2.3 times as long with the paper network.
#
#   scripts/generalisation.sh [DIR [NETWORK]]
#
# DIR: output (runs/gen); NETWORK: directory of the frame classifier whose CAM
# features are tabulated (default: the shipped context model's).  SHIP=no skips
# writing xcrfilter/data/ and the docs figure (a comparison run).
set -euo pipefail
export KERAS_BACKEND=jax
D=${1:-runs/gen}
NET=${2:-xcrfilter/data/cam_model}
SHIP=${SHIP:-yes}
G="python scripts/generalisation.py"
build() { $G build --network "$NET" "$@"; }
mkdir -p "$D"
build --randomize --frames 10000 --seed 12 --xray-fraction 0.5 --no-progress -o "$D/val.fits"
build --randomize --frames 40000 --seed 11 --xray-fraction 0.2 --no-progress -o "$D/train.fits"
for p in paper wide high-cr bright isotropic; do
    build --preset "$p" --frames 20000 --seed 21 --no-progress -o "$D/test-$p-a.fits"
done
# more frames with a second seed: at least 1000 CR events in band per preset
# (X-ray events of the bright preset subsampled to 10 %, with weights)
for spec in high-cr:25000:1 paper:75000:1 wide:75000:1 isotropic:80000:1 bright:75000:0.1; do
    IFS=: read -r p n f <<<"$spec"
    build --preset "$p" --frames "$n" --seed 22 --xray-fraction "$f" --no-progress \
        -o "$D/test-$p-b.fits"
    $G merge "$D/test-$p-a.fits" "$D/test-$p-b.fits" -o "$D/test-$p.fits"
done
for p in wide high-cr bright isotropic; do
    build --randomize --excluding "$p" --frames 16000 --seed 13 --xray-fraction 0.1 \
        --no-progress -o "$D/train-no-$p.fits"
done
# validation frames of every preset (default thresholds and SAC radius)
for p in paper wide high-cr bright isotropic orphan noisy; do
    build --preset "$p" --frames 3000 --seed 31 --no-progress -o "$D/val-$p.fits"
done
# a second randomised training set (more CR events for the shipped models)
build --randomize --frames 24000 --seed 14 --xray-fraction 0.2 --no-progress \
    -o "$D/train2.fits"
# the shipped models: trained on both randomised sets, default thresholds from
# the validation frames of every preset, written to xcrfilter/data/
$G train --train "$D/train.fits" "$D/train2.fits" --val "$D/val.fits" --trees 300 --tag v2 \
    -o "$D/models/all"
if [ "$SHIP" = yes ]; then
    fig=(--figure docs/_static/generalisation/sac_radius.png)
else
    fig=()
fi
$G defaults --models "$D/models/all" --val "$D/val.fits" "$D"/val-*.fits "${fig[@]}"
if [ "$SHIP" = yes ]; then
    $G ship --models "$D/models/all" --network-dir "$NET"
fi
# leave-one-physics-out models
for p in wide high-cr bright isotropic; do
    $G train --train "$D/train-no-$p.fits" --val "$D/val.fits" --trees 300 --tag "lopo-$p" \
        -o "$D/models/no-$p"
done
# the generalisation table and ROC figures
$G evaluate --tests "$D"/test-paper.fits "$D"/test-wide.fits "$D"/test-high-cr.fits \
    "$D"/test-bright.fits "$D"/test-isotropic.fits --models "$D/models" --val "$D/val.fits" \
    --boot 200 -o "$D/report"
