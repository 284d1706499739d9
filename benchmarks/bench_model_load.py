"""Where the CAM model's load time goes, in fresh processes.

Each step of loading the shipped ``context`` model and scoring one window,
timed in a fresh Python process (best of ``--repeat`` processes per step,
as the machine is shared)::

    python benchmarks/bench_model_load.py --repeat 5

Steps, in order: NumPy; the package (astropy); `xcrfilter.ml.model`; ONNX
Runtime; h5py; the context features module; reading and
checking ``SHA256SUMS``; the network (``densenet.keras`` layer graph, ONNX
Runtime session); the forest; the cascade's morph model; the first call of
the network.  The total is what ``benchmarks/bench_pipeline.py`` reports as
the model load (imports, load and first call).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CODE = r"""
import json, time
laps = {}
t = time.perf_counter()
def lap(name):
    global t
    n = time.perf_counter(); laps[name] = n - t; t = n
import numpy as np; lap("numpy")
import xcrfilter; lap("xcrfilter (astropy)")
from xcrfilter.ml import model as M; lap("xcrfilter.ml.model")
import onnxruntime; lap("onnxruntime")
import h5py; lap("h5py")
import xcrfilter.context; lap("xcrfilter.context")
d = M.default_model_dir()
from xcrfilter.ml import model_files as F
from xcrfilter.ml.checksums import verify_checksums
verify_checksums(d, F.CHECKED_FILES, (F.NETWORK_FILE,)); lap("SHA256SUMS checked")
net = F.load_network(d); lap("network (layer graph + ONNX Runtime session)")
from xcrfilter.ml.forest import load_forest
load_forest(d / "forest.skops"); lap("forest")
from xcrfilter.ml.morph import load_morph_model
load_morph_model(); lap("morph model (cascade)")
net.window_centres(np.zeros((1, 64, 64), np.float32)); lap("first network call")
print(json.dumps(laps))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    best = {}
    totals = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True,
                             check=True)
        laps = json.loads(out.stdout.strip().splitlines()[-1])
        totals.append(sum(laps.values()))
        for k, v in laps.items():
            best[k] = min(best.get(k, v), v)
    w = max(len(k) for k in best)
    print(f"{'step':{w}s}  best of {args.repeat} [s]")
    for k, v in best.items():
        print(f"{k:{w}s}  {v:.3f}")
    print(f"{'sum of the best steps':{w}s}  {sum(best.values()):.3f}")
    median = sorted(totals)[len(totals) // 2]
    print(f"{'total, best process':{w}s}  {min(totals):.3f}  (median {median:.3f})")


if __name__ == "__main__":
    main()
