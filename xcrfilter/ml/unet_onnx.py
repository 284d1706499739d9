"""The U-Net as an ONNX graph, run by ONNX Runtime.

:func:`export_unet_onnx` writes the Keras network of
:func:`xcrfilter.ml.unet.build_unet` (its layers and the weights that
``layer.get_weights()`` gives) as one ONNX model (opset 17,
`xcrfilter.ml.onnxnet.OPSET`):

* input ``x``, ``(n, rows, cols)`` float32: the scaled log energy
  (`xcrfilter.ml.scaling.LogEnergyScaler`); batch size and sides are free
  (sides multiples of ``2**(levels - 1)``, as for the Keras network);
* output ``probs``, ``(n, rows, cols, 3)`` float32: the per-pixel softmax
  probabilities of noise, X-ray and CR (`xcrfilter.ml.unet_model.CLASS_NAMES`).

The graph runs in NCHW: the input gains its channel axis, every
convolution kernel is transposed from Keras' ``(kh, kw, in, out)`` (or
``(kh, kw, out, in)`` for the transposed convolution) to ONNX's layout, the
skip connections concatenate along the channel axis, and the last 1 x 1
convolution's output is transposed back to channels last before its
softmax.  Only the layers of ``build_unet`` are understood (``InputLayer``,
``Conv2D``, ``MaxPooling2D``, ``Conv2DTranspose`` with kernel = stride,
``Concatenate``); any other layer or option raises ValueError naming the
layer.

The model is written by training (``unet.onnx`` beside ``unet.keras``,
:func:`xcrfilter.ml.unet_model.save_unet_model`) and converted from the
Keras file on loading a model directory whose ``SHA256SUMS`` does not list
one.  :class:`UnetRuntime` runs it with ONNX Runtime: inference imports
neither Keras nor JAX.
"""
from __future__ import annotations

import numpy as np

from .checksums import ModelFileError
from .netgraph import inbound_layers
from .onnxnet import OPSET, cpu_session

__all__ = ["export_unet_onnx", "UnetRuntime", "INPUT", "OUTPUT"]

#: Input name of the exported model.
INPUT = "x"
#: Output name of the exported model.
OUTPUT = "probs"

_ACTIVATIONS = ("linear", "relu", "softmax")


def _layer_names(spec):
    """Layer names of a config's ``input_layers`` / ``output_layers``.

    One tensor is ``[name, node, index]``, several a list of those.
    """
    if not spec:
        return []
    if isinstance(spec[0], str):
        return [spec[0]]
    return [str(s[0]) for s in spec]


def _pair(value, what, name):
    v = tuple(int(a) for a in (value if isinstance(value, (list, tuple)) else (value, value)))
    if len(v) != 2:
        raise ValueError(f"layer {name!r}: {what} {value!r} is not two integers")
    return v


def export_unet_onnx(network):
    """The ONNX model of a U-Net, serialised.

    Parameters
    ----------
    network : keras.Model
        A functional model of :func:`xcrfilter.ml.unet.build_unet` (built,
        trained or loaded from ``unet.keras``): one input
        ``(None, None, 1)``, one output ``(None, None, n_classes)``.

    Returns
    -------
    bytes
        An ONNX ``ModelProto`` (opset `~xcrfilter.ml.onnxnet.OPSET`, checked
        by ``onnx.checker.check_model``) with input ``x`` of shape
        ``(n, rows, cols)`` [scaled log energy, float32] and output
        ``probs`` of shape ``(n, rows, cols, n_classes)`` [probabilities,
        float32]; ``n``, ``rows`` and ``cols`` are free.

    Raises
    ------
    ValueError
        A layer of a type or with an option that ``build_unet`` does not
        use (the message names the layer), more than one input or output,
        an input with other than one channel.
    ImportError
        The ``onnx`` package is not installed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    config = network.get_config()
    layers = config.get("layers") if isinstance(config, dict) else None
    if not layers:
        raise ValueError(f"{network.name!r}: not a Keras functional model (no layer graph)")
    ins, outs = _layer_names(config.get("input_layers")), _layer_names(config.get("output_layers"))
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"{network.name!r}: {len(ins)} inputs and {len(outs)} outputs; a U-Net "
                         "has one of each")
    out_layer = outs[0]

    nodes, inits = [], []

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def activation(x, cfg, name, out, axis=1):
        act = cfg.get("activation", "linear")
        if act not in _ACTIVATIONS:
            raise ValueError(f"layer {name!r}: activation {act!r} (understood: "
                             f"{', '.join(_ACTIVATIONS)})")
        if act == "relu":
            return node("Relu", [x], out)
        if act == "softmax":
            return node("Softmax", [x], out, axis=axis)
        return node("Identity", [x], out) if out == OUTPUT else x

    def check_common(cfg, name):
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise ValueError(f"layer {name!r}: data_format {cfg['data_format']!r}, "
                             "expected 'channels_last'")
        if "dilation_rate" in cfg and _pair(cfg["dilation_rate"], "dilation_rate",
                                            name) != (1, 1):
            raise ValueError(f"layer {name!r}: dilation_rate {cfg['dilation_rate']!r}, "
                             "expected 1")
        if int(cfg.get("groups", 1)) != 1:
            raise ValueError(f"layer {name!r}: groups {cfg['groups']!r}, expected 1")

    t = {}
    n_classes = None
    for entry in layers:
        cls, name = entry.get("class_name"), entry.get("name")
        layer = network.get_layer(name)
        cfg = layer.get_config()
        src = [t[i] for i in inbound_layers(entry.get("inbound_nodes", []))]
        weights = [np.asarray(w, np.float32) for w in layer.get_weights()]
        lin = f"t/{name}"
        if cls == "InputLayer":
            shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
            if shape is None or len(shape) != 4 or shape[-1] != 1:
                raise ValueError(f"layer {name!r}: input shape {shape!r}, expected "
                                 "(None, rows, cols, 1): one channel, the scaled log energy")
            y = node("Unsqueeze", [INPUT, const("x/axes", [1], np.int64)], lin)
        elif cls == "Conv2D":
            check_common(cfg, name)
            kh, kw = _pair(cfg["kernel_size"], "kernel_size", name)
            sy, sx = _pair(cfg["strides"], "strides", name)
            if cfg["padding"] == "same":
                if (sy, sx) != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
                    raise ValueError(f"layer {name!r}: 'same' padding with strides "
                                     f"{(sy, sx)} and kernel {(kh, kw)} (only stride 1 and "
                                     "odd kernels)")
                pads = [kh // 2, kw // 2, kh // 2, kw // 2]
            elif cfg["padding"] == "valid":
                pads = [0, 0, 0, 0]
            else:
                raise ValueError(f"layer {name!r}: padding {cfg['padding']!r}")
            # Keras (kh, kw, in, out) -> ONNX (out, in, kh, kw)
            args = [src[0], const(f"{name}/W", np.transpose(weights[0], (3, 2, 0, 1)))]
            if cfg.get("use_bias", True):
                args.append(const(f"{name}/B", weights[1]))
            y = node("Conv", args, lin + "/conv", kernel_shape=[kh, kw], strides=[sy, sx],
                     pads=pads)
            if name == out_layer:
                n_classes = int(weights[0].shape[3])
                y = node("Transpose", [y], lin + "/nhwc", perm=[0, 2, 3, 1])
                y = activation(y, cfg, name, OUTPUT, axis=-1)
            else:
                y = activation(y, cfg, name, lin)
        elif cls == "Conv2DTranspose":
            check_common(cfg, name)
            kh, kw = _pair(cfg["kernel_size"], "kernel_size", name)
            sy, sx = _pair(cfg["strides"], "strides", name)
            if (kh, kw) != (sy, sx) or cfg.get("output_padding") is not None \
                    or cfg["padding"] not in ("valid", "same"):
                # kernel = stride: every output pixel gets one input pixel,
                # 'same' and 'valid' both give rows * stride
                raise ValueError(f"layer {name!r}: transposed convolution with kernel "
                                 f"{(kh, kw)}, strides {(sy, sx)}, padding "
                                 f"{cfg['padding']!r}, output_padding "
                                 f"{cfg.get('output_padding')!r} (only kernel = strides, "
                                 "no output padding)")
            # Keras (kh, kw, out, in) -> ONNX (in, out, kh, kw)
            args = [src[0], const(f"{name}/W", np.transpose(weights[0], (3, 2, 0, 1)))]
            if cfg.get("use_bias", True):
                args.append(const(f"{name}/B", weights[1]))
            y = node("ConvTranspose", args, lin + "/conv", kernel_shape=[kh, kw],
                     strides=[sy, sx])
            y = activation(y, cfg, name, lin)
        elif cls == "MaxPooling2D":
            check_common(cfg, name)
            size = _pair(cfg["pool_size"], "pool_size", name)
            strides = _pair(cfg.get("strides") or size, "strides", name)
            if cfg.get("padding", "valid") != "valid":
                raise ValueError(f"layer {name!r}: padding {cfg['padding']!r}, expected 'valid'")
            y = node("MaxPool", [src[0]], lin, kernel_shape=list(size), strides=list(strides))
        elif cls == "Concatenate":
            if int(cfg.get("axis", -1)) not in (-1, 3):
                raise ValueError(f"layer {name!r}: concatenation along axis {cfg['axis']!r}, "
                                 "expected the channels (-1)")
            y = node("Concat", src, lin, axis=1)
        else:
            raise ValueError(f"layer {name!r}: {cls} is not a layer of the U-Net "
                             "(understood: InputLayer, Conv2D, MaxPooling2D, Conv2DTranspose, "
                             "Concatenate)")
        t[name] = y
    if t.get(out_layer) != OUTPUT:
        raise ValueError(f"layer {out_layer!r}: the output is not a convolution")
    model = helper.make_model(
        helper.make_graph(
            nodes, "xcrfilter_unet",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["n", "rows", "cols"])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                           ["n", "rows", "cols", n_classes])],
            inits),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="xcrfilter",
        doc_string=f"U-Net pixel segmentation {network.name!r}")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


class UnetRuntime:
    """An exported U-Net in an ONNX Runtime session.

    The session options are those of `xcrfilter.ml.onnxnet.OnnxNetwork`
    (CPU execution provider, all graph optimisations, one inter-operator
    thread).

    Parameters
    ----------
    model : bytes or path-like
        The ONNX model (from :func:`export_unet_onnx`, or a ``unet.onnx``).
    threads : int, optional
        Intra-operator threads of ONNX Runtime (0: its default, one per
        physical core).

    Attributes
    ----------
    n_classes : int
        Classes of the output (last axis).

    Raises
    ------
    ModelFileError
        ONNX Runtime cannot load the model, or its input and output are not
        ``x`` and ``probs`` of the shapes of :func:`export_unet_onnx`.
    ImportError
        ``onnxruntime`` is not installed.
    """

    def __init__(self, model, threads=0):
        self.session = cpu_session(model, threads)
        ins, outs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in ins] != [INPUT] or [o.name for o in outs] != [OUTPUT] \
                or len(ins[0].shape) != 3 or len(outs[0].shape) != 4 \
                or not isinstance(outs[0].shape[3], int):
            raise ModelFileError(
                f"ONNX model has inputs {[(i.name, i.shape) for i in ins]} and outputs "
                f"{[(o.name, o.shape) for o in outs]}; expected {INPUT!r} (n, rows, cols) and "
                f"{OUTPUT!r} (n, rows, cols, classes)")
        self.n_classes = int(outs[0].shape[3])

    def __call__(self, x):
        """Run the network on scaled inputs.

        Parameters
        ----------
        x : ndarray, shape (n, rows, cols), float32
            Scaled log energies (sides multiples of ``2**(levels - 1)``).

        Returns
        -------
        ndarray, shape (n, rows, cols, n_classes), float32
            Per-pixel class probabilities.
        """
        return self.session.run(None, {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]
