"""Machine-learning parts of the filters: the CAM filter (seed paper Sec. 3.2-3.3, 4),
morph, the U-Net and the observation-trained context.

* :mod:`~xcrfilter.ml.densenet` -- DenseNet frame classifier (Keras 3).
* :mod:`~xcrfilter.ml.cam` -- class activation maps (Eq. 1), windows and
  seam-free full frames.
* :mod:`~xcrfilter.ml.features` -- the ten event features (Sec. 4.2, Eq. 9).
* :mod:`~xcrfilter.ml.forest` -- balanced random forest, skops files.
* :mod:`~xcrfilter.ml.netgraph` (the network file read as a layer graph),
  :mod:`~xcrfilter.ml.onnxnet` (the network exported to and run by ONNX
  Runtime) and :mod:`~xcrfilter.ml.flatforest` (the forest's trees as
  arrays) -- inference without Keras, JAX or scikit-learn.
* :mod:`~xcrfilter.ml.model` -- the loaded CAM model (load, score events);
  :mod:`~xcrfilter.ml.model_files` -- its directory (files, checks, save).
* :mod:`~xcrfilter.ml.pu` -- positive-unlabelled learning of shower context
  from one observation (``obsctx``): density ratio, class prior, shape odds.
* :mod:`~xcrfilter.ml.stage1` -- training of the network on tiles;
  :mod:`~xcrfilter.ml.stage2` -- event features, forest and threshold;
  :mod:`~xcrfilter.ml.training` -- both stages; ``xcrfilter train``
  (:mod:`~xcrfilter.cli.train`).
* :mod:`~xcrfilter.ml.morph` -- the morph and shape-only forests.
* :mod:`~xcrfilter.ml.unet` (network, focal loss),
  :mod:`~xcrfilter.ml.unet_training` (crops, training),
  :mod:`~xcrfilter.ml.unet_onnx` (export to and run by ONNX Runtime) and
  :mod:`~xcrfilter.ml.unet_model` (the shipped model directory, sparse
  inference) -- pixel segmentation (seed 004).
* :mod:`~xcrfilter.ml.checksums`, :mod:`~xcrfilter.ml.scaling`,
  :mod:`~xcrfilter.ml.cascade` -- model-directory checksums, input scaling
  and the CAM filter's cascade band.

Keras and JAX are imported only for training.  The Keras
backend defaults to JAX (``KERAS_BACKEND=jax``).
"""
import importlib
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

_EXPORTS = {
    "CLASS_NAMES": "netgraph", "build_densenet": "densenet",
    "CamNetwork": "cam", "upsample_bilinear": "cam",
    "FEATURE_NAMES": "features", "event_features": "features", "safe_divide": "features",
    "cam_window_stats": "features",
    "build_forest": "forest", "load_forest": "forest", "save_forest": "forest",
    "ModelFileError": "checksums",
    "CamModel": "model", "load_model": "model", "default_model_dir": "model",
    "train": "training", "train_network": "stage1", "train_forest": "stage2",
    "event_dataset": "stage2",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
