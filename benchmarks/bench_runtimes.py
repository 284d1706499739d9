"""Inference runtimes of the CAM frame classifier on this CPU.

Compares, on the same 64 x 64 event windows of simulated frames:

- ``netgraph``: xcrfilter's own layer-graph interpreter compiled by JAX,
  the runtime before ONNX Runtime replaced it (only with ``--netgraph``, in
  a checkout of the commit that introduced this benchmark, where it still
  exists);
- ``keras-jit``: Keras 3 on JAX, the network loaded by
  ``keras.saving.load_model`` and its ``stateless_call`` jit-compiled once
  per batch shape (a persistent compiled function);
- ``onnxruntime``: the network exported to ONNX
  (`xcrfilter.ml.onnxnet.export_onnx`) and run by ONNX Runtime, with 1 and
  with 2 intra-operator threads.

For each: windows/s at the batch sizes the cascade produces (1-16
windows per call) and for large batches, and the load time in a fresh
process (imports, reading the model, the first call: what a user waits
for before the first frame is filtered).  Best of ``--repeat`` rounds,
the runtimes alternating within each round (the machine is shared)::

    python benchmarks/bench_runtimes.py --batches 1,2,4,8,16,64 --repeat 3
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

_LOAD = {
    "netgraph": """
from xcrfilter.ml.model import load_model
net = load_model('context').network
net.window_centres(np.zeros((1, 64, 64), np.float32))
""",
    "onnxruntime": """
from xcrfilter.ml.onnxnet import OnnxNetwork
net = OnnxNetwork(PATH)
net(np.zeros((1, 64, 64), np.float32))
""",
    "keras-jit": """
import keras, jax
import xcrfilter.ml.densenet
from xcrfilter.ml.model import default_model_dir
m = keras.saving.load_model(default_model_dir() / 'densenet.keras', compile=False)
tv = [v.value for v in m.trainable_variables]; ntv = [v.value for v in m.non_trainable_variables]
fn = jax.jit(lambda tv, ntv, x: m.stateless_call(tv, ntv, x, training=False)[0])
np.asarray(fn(tv, ntv, np.zeros((1, 64, 64, 1), np.float32)))
""",
}


def load_seconds(kind, onnx_path):
    """Fresh-process time of imports + model load + first call [s]."""
    code = ("import time; t0 = time.perf_counter(); import numpy as np\n"
            + _LOAD[kind].replace("PATH", repr(str(onnx_path)))
            + "\nprint(time.perf_counter() - t0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, KERAS_BACKEND="jax"))
    return float(out.stdout.split()[-1])


def windows(n, seed=11):
    """``n`` scaled 64 x 64 event windows of simulated 512 x 512 frames."""
    import astropy.units as u
    from xcrfilter.events import find_events
    from xcrfilter.io.frames import as_energy_cube
    from xcrfilter.ml.model import event_windows, load_model
    from xcrfilter.simulate import SimulationParameters, simulate_frames
    sim = simulate_frames(40, seed=seed, shape=(512, 512),
                          params=SimulationParameters(xray_rate=10.0, cr_rate=1.0))
    cube = as_energy_cube(np.asarray(sim.frames, np.float32) * u.eV)
    ev = find_events(cube)
    idx = np.resize(np.arange(len(ev)), n)
    w = event_windows(cube.data, np.asarray(ev["FRAME"])[idx], np.asarray(ev["RAWY"])[idx],
                      np.asarray(ev["RAWX"])[idx])
    return load_model("context").network.scaler.transform(w).astype(np.float32)


def runners(onnx_bytes, netgraph=False):
    """name -> function of a scaled batch ``(b, 64, 64)`` returning probs and CAMs."""
    import jax
    import keras
    import xcrfilter.ml.densenet  # noqa: F401  (the file's weight initialiser)
    from xcrfilter.ml.model import default_model_dir, load_model
    from xcrfilter.ml.onnxnet import OnnxNetwork
    net = load_model("context").network
    m = keras.saving.load_model(default_model_dir() / "densenet.keras", compile=False)
    probe = keras.Model(m.inputs, [m.get_layer("cam_features").output, m.output])
    tv = [v.value for v in probe.trainable_variables]
    ntv = [v.value for v in probe.non_trainable_variables]
    kern = net.kernel
    kjit = jax.jit(lambda tv, ntv, x: probe.stateless_call(tv, ntv, x, training=False)[0])

    def keras_run(x):
        feats, probs = kjit(tv, ntv, x[..., None])
        return np.asarray(probs), np.asarray(feats) @ kern

    ort1, ort2 = OnnxNetwork(onnx_bytes, threads=1), OnnxNetwork(onnx_bytes, threads=2)
    out = {}
    if netgraph:
        body = net._function("full")          # probabilities and upsampled CAMs
        out["netgraph"] = lambda x: [np.asarray(a) for a in body(x[..., None])[:2]]
    return out | {
        "keras-jit": keras_run,
        "onnxruntime 1 thread": lambda x: ort1(x)[::2],
        "onnxruntime 2 threads": lambda x: ort2(x)[::2],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="1,2,4,8,16,64")
    p.add_argument("--windows", type=int, default=256, help="windows timed per batch size")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--onnx", default="/tmp/xcrfilter_bench_densenet.onnx")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--netgraph", action="store_true",
                   help="also the JAX layer-graph interpreter (only where it exists)")
    args = p.parse_args(argv)
    from xcrfilter.ml.model import default_model_dir
    from xcrfilter.ml.netgraph import read_keras_file
    from xcrfilter.ml.onnxnet import export_onnx
    onnx_bytes = export_onnx(read_keras_file(default_model_dir() / "densenet.keras"))
    with open(args.onnx, "wb") as fh:
        fh.write(onnx_bytes)
    batches = [int(b) for b in args.batches.split(",")]
    x = windows(args.windows)
    run = runners(onnx_bytes, args.netgraph)
    for fn in run.values():          # compile every shape first
        for b in batches:
            fn(x[:b])
    best = {(k, b): np.inf for k in run for b in batches}
    for _ in range(args.repeat):
        for b in batches:
            for k, fn in run.items():
                t0 = time.perf_counter()
                for s in range(0, len(x) - b + 1, b):
                    fn(x[s:s + b])
                n = (len(x) // b) * b
                best[k, b] = min(best[k, b], (time.perf_counter() - t0) / n)
    loads = {}
    if not args.skip_load:
        for _ in range(args.repeat):
            for k in _LOAD:
                if k == "netgraph" and not args.netgraph:
                    continue
                loads[k] = min(loads.get(k, np.inf), load_seconds(k, args.onnx))
    head = ["runtime"] + [f"batch {b}" for b in batches] + ["load + first call"]
    rows = []
    for k in run:
        base = k.split(" ")[0]
        rows.append([k] + [f"{1 / best[k, b]:,.0f}/s" for b in batches]
                    + [f"{loads[base]:.2f} s" if base in loads else ""])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = "  ".join("=" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(line)
    print(json.dumps({"windows_per_s": {f"{k}|{b}": 1 / v for (k, b), v in best.items()},
                      "load_s": loads}))


if __name__ == "__main__":
    main()
