"""Write a shipped CAM model's entries of ``tests/data/cam_reference.npz`` from Keras.

The reference verdicts of ``tests/test_inference.py`` and
``tests/test_cascade.py``: STATUS, PROB_CR, the paper's ten features and
the network probabilities of the events of the six saved 128 x 128 frames,
with the network evaluated by Keras itself (``keras.saving.load_model`` of
``densenet.keras``), not by ONNX Runtime, and the CAM filter without its
cascade.  Run it when a shipped model's network or forest changes::

    KERAS_BACKEND=jax python scripts/cam_reference.py context

The frames and the events found in them stay as they are; the other
model's entries are kept.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import astropy.units as u
import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "cam_reference.npz"


class KerasRuntime:
    """Stand-in for `xcrfilter.ml.onnxnet.OnnxNetwork`: the same three outputs from Keras."""

    def __init__(self, network_file, kernel):
        import keras

        import xcrfilter.ml.densenet  # noqa: F401  (registers the file's initialisers)
        net = keras.saving.load_model(network_file, compile=False)
        self.probe = keras.Model(net.inputs, [net.get_layer("cam_features").output,
                                              net.get_layer("logits").output, net.output])
        self.kernel = kernel

    def __call__(self, x):
        feats, logits, probs = (np.asarray(a) for a in self.probe(x[..., None], training=False))
        return probs, logits, (feats @ self.kernel).astype(np.float32)


def main(argv=None):
    from xcrfilter.events import find_events
    from xcrfilter.filters.cam import cam_filter
    from xcrfilter.io.frames import as_energy_cube
    from xcrfilter.ml.model import default_model_dir, read_model
    from xcrfilter.ml.model_files import NETWORK_FILE
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=("context", "paper"), help="shipped model")
    p.add_argument("--reference", default=str(REFERENCE), help="reference file to update")
    args = p.parse_args(argv)

    ref = dict(np.load(args.reference))
    model_dir = default_model_dir(args.model)
    model = read_model(model_dir)          # not the cached instance: its runtime is replaced
    model.network.runtime = KerasRuntime(model_dir / NETWORK_FILE, model.network.kernel)
    cube = as_energy_cube(ref["frames"].astype(np.float32) * u.eV)
    events = find_events(cube)
    for col in ("FRAME", "RAWX", "RAWY"):
        np.testing.assert_array_equal(np.asarray(events[col]), ref[col])
    out = cam_filter(cube, events, model=model, cascade=False)
    e = ref["ENERGY"]
    sel = (e >= model.band_ev[0]) & (e < model.band_ev[1])
    X, probs = model.features(cube.data, ref["FRAME"][sel], ref["RAWY"][sel], ref["RAWX"][sel],
                              e[sel])
    name = args.model
    ref[f"{name}_status"] = np.asarray(out["STATUS"], np.int32)
    ref[f"{name}_prob_cr"] = np.asarray(out["PROB_CR"], np.float32)
    ref[f"{name}_features"] = np.asarray(X, np.float64)
    ref[f"{name}_probs"] = np.asarray(probs, np.float32)
    np.savez_compressed(args.reference, **ref)
    rej = (ref[f"{name}_status"] & 32) > 0
    print(f"{args.reference}: {name} ({model.name}) {sel.sum()} events in band, "
          f"{rej.sum()} rejected")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
