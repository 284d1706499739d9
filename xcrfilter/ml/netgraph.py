"""The frame classifier as a layer graph, read without Keras.

A ``densenet.keras`` file is a zip archive of the layer graph
(``config.json``) and the weights (``model.weights.h5``).
:func:`read_keras_file` reads both with :mod:`json` and :mod:`h5py`: no code
from the file runs and Keras is not imported, so that loading a CAM model
takes a fraction of a second.  :func:`graph_from_keras` makes the same graph
from a network in memory (training, tests).

The graph gives the network's output stride and receptive field, the dense
weights of the class activation maps, and what `xcrfilter.ml.onnxnet`
exports to ONNX: every batch normalisation as the scale and offset that
Keras computes from its moving statistics.  ONNX Runtime runs the network
(it replaced a JAX evaluation of this graph: ``benchmarks/bench_runtimes.py``
and the CAM filter docs give the measurement).

Only the layers that :func:`xcrfilter.ml.densenet.build_densenet` uses are
understood; any other layer, option or file layout raises
`~xcrfilter.ml.checksums.ModelFileError`.
"""
from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

from .checksums import ModelFileError

__all__ = ["CLASS_NAMES", "FEATURES_LAYER", "LOGITS_LAYER", "LayerGraph", "read_keras_file",
           "inbound_layers", "graph_from_keras"]

#: Class order of the frame classifier output (index = class id).
CLASS_NAMES = ("EMPTY", "XRAY", "CR", "MIX")
#: Name of the last convolutional activation layer (the a_i(x, y) of Eq. 1).
FEATURES_LAYER = "cam_features"
#: Name of the dense layer giving the pre-softmax scores S(y=k).
LOGITS_LAYER = "logits"

# Keras class name -> names of its variables, in the order Keras stores them
_VARIABLES = {
    "InputLayer": lambda c: [],
    "Conv2D": lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "Dense": lambda c: ["kernel"] + (["bias"] if c.get("use_bias", True) else []),
    "BatchNormalization": lambda c: ((["gamma"] if c.get("scale", True) else [])
                                     + (["beta"] if c.get("center", True) else [])
                                     + ["moving_mean", "moving_variance"]),
    "Activation": lambda c: [], "Dropout": lambda c: [], "Concatenate": lambda c: [],
    "MaxPooling2D": lambda c: [], "AveragePooling2D": lambda c: [],
    "GlobalAveragePooling2D": lambda c: [],
}
_ACTIVATIONS = ("linear", "relu", "softmax")


def _snake(name):
    """Keras' ``to_snake_case``: the weight-file group of a layer class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def inbound_layers(nodes):
    """Names of the layers feeding a layer (``inbound_nodes`` of its Keras 3 config)."""
    names = []

    def walk(obj):
        if isinstance(obj, dict):
            if obj.get("class_name") == "__keras_tensor__":
                names.append(str(obj["config"]["keras_history"][0]))
                return
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(nodes)
    return names


class LayerGraph:
    """Layers of a functional network in evaluation order, with their weights.

    Parameters
    ----------
    layers : list of dict
        ``{"name", "class_name", "config", "inputs"}`` per layer, inputs
        before the layers that use them (the order of a Keras config).
    weights : dict of str to list of ndarray
        Variables of each layer, in Keras' order (see ``_VARIABLES``).
    source : str
        What the graph was read from (for messages).
    """

    def __init__(self, layers, weights, source="network"):
        self.layers = list(layers)
        self.source = str(source)
        self.params = {}
        names = set()
        for layer in self.layers:
            cls, cfg, name = layer["class_name"], layer["config"], layer["name"]
            if cls not in _VARIABLES:
                raise ModelFileError(f"{source}: layer {name!r} of type {cls} is not part of "
                                     "the CAM frame classifier")
            missing = [i for i in layer["inputs"] if i not in names]
            if missing or (cls != "InputLayer" and not layer["inputs"]):
                raise ModelFileError(f"{source}: layer {name!r} uses unknown input(s) {missing}")
            names.add(name)
            want = _VARIABLES[cls](cfg)
            got = weights.get(name, [])
            if len(got) != len(want):
                raise ModelFileError(f"{source}: layer {name!r} has {len(got)} variables, "
                                     f"expected {len(want)} ({', '.join(want)})")
            self._check(name, cls, cfg)
            self.params[name] = self._prepare(cls, cfg, dict(zip(want, got)))
        for name in (FEATURES_LAYER, LOGITS_LAYER):
            if name not in names:
                raise ModelFileError(f"{source}: no layer named {name!r}; not a CAM frame "
                                     "classifier")
        self.kernel = self.params[LOGITS_LAYER]["kernel"]
        self.bias = self.params[LOGITS_LAYER].get("bias", np.zeros(self.kernel.shape[1],
                                                                   np.float32))

    def input_shape(self):
        """``(rows, columns, channels)`` of the network's input (None: any size).

        Raises
        ------
        ModelFileError
            No input layer, several, or one without a 4-D ``batch_shape``.
        """
        inputs = [layer for layer in self.layers if layer["class_name"] == "InputLayer"]
        if len(inputs) != 1:
            raise ModelFileError(f"{self.source}: {len(inputs)} input layers; the CAM frame "
                                 "classifier has one")
        cfg = inputs[0]["config"]
        shape = cfg.get("batch_shape", cfg.get("batch_input_shape"))
        if not isinstance(shape, (list, tuple)) or len(shape) != 4:
            raise ModelFileError(f"{self.source}: input layer {inputs[0]['name']!r} has shape "
                                 f"{shape!r}; expected (batch, rows, columns, channels)")
        return tuple(None if v is None else int(v) for v in shape[1:])

    def _check(self, name, cls, cfg):
        def bad(what):
            raise ModelFileError(f"{self.source}: layer {name!r} ({cls}) has {what}, which "
                                 "xcrfilter does not evaluate")
        if cfg.get("data_format", "channels_last") != "channels_last":
            bad(f"data_format {cfg.get('data_format')!r}")
        if cfg.get("activation", "linear") not in _ACTIVATIONS:
            bad(f"activation {cfg.get('activation')!r}")
        if cls == "Conv2D" and (tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1)
                                or cfg.get("groups", 1) != 1
                                or cfg.get("padding") not in ("same", "valid")):
            bad("dilation, groups or padding other than 1, 1 and same/valid")
        if cls in ("MaxPooling2D", "AveragePooling2D") and (
                cfg.get("padding") != "valid"
                or tuple(cfg.get("strides") or cfg["pool_size"]) != tuple(cfg["pool_size"])):
            bad("a stride other than its pool size or padding other than valid")
        if cls == "BatchNormalization" and cfg.get("axis", -1) not in (-1, 3, [-1], [3]):
            bad(f"axis {cfg.get('axis')!r}")
        if cls == "Concatenate" and cfg.get("axis", -1) not in (-1, 3):
            bad(f"axis {cfg.get('axis')!r}")
        if cls == "GlobalAveragePooling2D" and cfg.get("keepdims", False):
            bad("keepdims")

    @staticmethod
    def _prepare(cls, cfg, var):
        var = {k: np.asarray(v, np.float32) for k, v in var.items()}
        if cls != "BatchNormalization":
            return var
        # what Keras computes at inference: x * inv + (beta - mean * inv)
        inv = np.float32(1.0) / np.sqrt(var["moving_variance"] + np.float32(cfg["epsilon"]))
        if "gamma" in var:
            inv = inv * var["gamma"]
        off = -var["moving_mean"] * inv
        if "beta" in var:
            off = off + var["beta"]
        return {"scale": inv.astype(np.float32), "offset": off.astype(np.float32)}

    def stride(self, name=FEATURES_LAYER):
        """Ratio of input to ``name``'s resolution (4 for the paper's network)."""
        jump = {}
        for layer in self.layers:
            ins = [jump[i] for i in layer["inputs"]] or [1]
            j = max(ins)
            cfg = layer["config"]
            if layer["class_name"] == "Conv2D":
                j *= int(cfg["strides"][0])
            elif layer["class_name"] in ("MaxPooling2D", "AveragePooling2D"):
                j *= int(cfg["pool_size"][0])
            jump[layer["name"]] = j
            if layer["name"] == name:
                return j
        raise KeyError(name)

    def receptive_field(self, name=FEATURES_LAYER):
        """Receptive-field size in input pixels of one cell of ``name`` (66 px for the paper's)."""
        rf, jump = {}, {}
        for layer in self.layers:
            r = max([rf[i] for i in layer["inputs"]] or [1])
            j = max([jump[i] for i in layer["inputs"]] or [1])
            cfg = layer["config"]
            if layer["class_name"] == "Conv2D":
                k, s = int(cfg["kernel_size"][0]), int(cfg["strides"][0])
            elif layer["class_name"] in ("MaxPooling2D", "AveragePooling2D"):
                k = s = int(cfg["pool_size"][0])
            else:
                k, s = 1, 1
            rf[layer["name"]], jump[layer["name"]] = r + (k - 1) * j, j * s
            if layer["name"] == name:
                return int(rf[name])
        raise KeyError(name)

    def multiply_adds(self, rows=64, cols=64, as_run=True):
        """Multiply-adds of one pass over a ``rows x cols`` input (convolutions and dense).

        Parameters
        ----------
        rows, cols : int, optional
            Input size [pixel] (64 x 64: one event window).
        as_run : bool, optional
            Count the transition's 1 x 1 convolution after its average
            pooling, as ONNX Runtime runs it (`xcrfilter.ml.onnxnet`);
            False: as the Keras graph defines it.

        Returns
        -------
        int
            Up to the ``cam_features`` and ``logits`` layers, plus the class
            activation maps (``K`` per ``cam_features`` cell).
        """
        pooled = self.pool_before_conv((FEATURES_LAYER, LOGITS_LAYER)) if as_run else set()
        shape, total = {}, 0
        for layer in self.layers:
            cls, cfg, name = layer["class_name"], layer["config"], layer["name"]
            ins = [shape[i] for i in layer["inputs"]]
            if cls == "InputLayer":
                shape[name] = (rows, cols, 1)
                continue
            h, w, c = ins[0]
            if cls == "Conv2D":
                k = self.params[name]["kernel"]
                s = int(cfg["strides"][0])
                if cfg["padding"] == "valid":
                    h, w = (h - k.shape[0]) // s + 1, (w - k.shape[1]) // s + 1
                else:
                    h, w = -(-h // s), -(-w // s)
                f = k.shape[-1]
                cells = h * w // 4 if name in pooled else h * w
                total += cells * k.shape[0] * k.shape[1] * c * f
                shape[name] = (h, w, f)
            elif cls in ("MaxPooling2D", "AveragePooling2D"):
                q = int(cfg["pool_size"][0])
                shape[name] = (h // q, w // q, c)
            elif cls == "Concatenate":
                shape[name] = (h, w, sum(i[2] for i in ins))
            elif cls == "GlobalAveragePooling2D":
                shape[name] = (1, 1, c)
            elif cls == "Dense":
                f = self.params[name]["kernel"].shape[-1]
                total += c * f
                shape[name] = (1, 1, f)
            else:
                shape[name] = ins[0]
        h, w, c = shape[FEATURES_LAYER]
        return int(total + h * w * c * self.kernel.shape[1])

    def pool_before_conv(self, outputs):
        """Linear 1 x 1 convolutions whose only use is an average pooling.

        Such a convolution commutes with the pooling, and pooling first is
        four times less work (the DenseNet transition).  ``outputs``: layer
        names that must be computed as they are.
        """
        users = {}
        for layer in self.layers:
            for i in layer["inputs"]:
                users.setdefault(i, []).append(layer)
        out = set()
        for layer in self.layers:
            cfg, use = layer["config"], users.get(layer["name"], [])
            if (layer["class_name"] == "Conv2D" and tuple(cfg["kernel_size"]) == (1, 1)
                    and tuple(cfg["strides"]) == (1, 1) and cfg.get("activation") == "linear"
                    and layer["name"] not in outputs and len(use) == 1
                    and use[0]["class_name"] == "AveragePooling2D"):
                out.add(layer["name"])
        return out


def _layer_list(config, source):
    try:
        layers = config["config"]["layers"]
        return [{"name": str(layer["config"]["name"]), "class_name": str(layer["class_name"]),
                 "config": layer["config"],
                 "inputs": inbound_layers(layer.get("inbound_nodes", []))}
                for layer in layers]
    except (KeyError, TypeError, IndexError) as exc:
        raise ModelFileError(f"{source}: not a functional Keras network configuration "
                             f"({type(exc).__name__}: {exc})") from exc


def read_keras_file(path, data=None):
    """Read a ``.keras`` file into a :class:`LayerGraph` (no Keras import).

    Parameters
    ----------
    path : path-like
        The file (named in messages).
    data : bytes, optional
        Its contents, when already read (e.g. for the checksum).

    Raises
    ------
    ModelFileError
        Not a Keras 3 zip archive, or a layer or weight layout this module
        does not know.
    """
    import h5py
    source = str(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as z:
            config = json.loads(z.read("config.json"))
            weights_bytes = z.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise ModelFileError(f"{source}: not a loadable Keras model (Keras 3 zip file; "
                             f"{type(exc).__name__}: {exc})") from exc
    layers = _layer_list(config, source)
    weights, counters = {}, {}
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
            for layer in layers:
                # Keras stores layer variables under layers/<class in snake case>[_k]/vars/i
                key = _snake(layer["class_name"])
                k = counters[key] = counters.get(key, -1) + 1
                group = h5.get(f"layers/{key}_{k}" if k else f"layers/{key}")
                if group is None or "vars" not in group:
                    weights[layer["name"]] = []
                    continue
                v = group["vars"]
                weights[layer["name"]] = [np.asarray(v[str(i)]) for i in range(len(v))]
    except (OSError, KeyError, ValueError) as exc:
        raise ModelFileError(f"{source}: unreadable weights ({type(exc).__name__}: "
                             f"{exc})") from exc
    return LayerGraph(layers, weights, source)


def graph_from_keras(model):
    """The :class:`LayerGraph` of a Keras functional network in memory."""
    layers = _layer_list({"config": model.get_config()}, model.name)
    weights = {layer.name: [np.asarray(w) for w in layer.get_weights()]
               for layer in model.layers}
    return LayerGraph(layers, weights, model.name)
