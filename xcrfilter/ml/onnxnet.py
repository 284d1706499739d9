"""The frame classifier as an ONNX graph, run by ONNX Runtime.

:func:`export_onnx` writes the layer graph of a ``densenet.keras`` file
(`xcrfilter.ml.netgraph.LayerGraph`) as one ONNX model (opset 17) that
returns what the CAM filter needs:

* ``probs`` ``(n, K)``: the softmax class probabilities;
* ``logits`` ``(n, K)``: the pre-softmax scores ``S_k``;
* ``cams`` ``(n, rows/stride, cols/stride, K)``: the class activation maps
  ``CAM_k = sum_i w_i^k a_i`` (Eq. 1, no bias) at the network's resolution.

The input is the scaled log energy, ``(n, rows, cols)`` float32; batch size
and window side are free (the same model serves event windows and the
tiles of whole frames).  Dropout is the identity, every batch normalisation
the scale and offset that Keras computes from its moving statistics, and
the linear 1 x 1 convolution of the DenseNet transition runs after its
average pooling (they commute; four times less work).

The model is written by training (``densenet.onnx`` beside
``densenet.keras``) and converted from the Keras file on loading a model
directory without one.  :class:`OnnxNetwork` runs it with ONNX Runtime.
Only the layers of :func:`xcrfilter.ml.densenet.build_densenet` are
understood (`~xcrfilter.ml.netgraph.LayerGraph` refuses the others).
"""
from __future__ import annotations

import os

import numpy as np

from .checksums import ModelFileError
from .netgraph import FEATURES_LAYER, LOGITS_LAYER

__all__ = ["export_onnx", "OnnxNetwork", "cpu_session", "OPSET", "OUTPUTS"]

#: ONNX operator set of the exported model (ONNX Runtime >= 1.13 runs it).
OPSET = 17
#: Output names of the exported model, in order.
OUTPUTS = ("probs", "logits", "cams")


def _nchw_kernel(p):
    """Keras ``(kh, kw, in, out)`` kernel as ONNX ``(out, in, kh, kw)``."""
    k = p["kernel"]
    return np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1)), dtype=np.float32)


def export_onnx(graph):
    """The ONNX model of a frame classifier, serialised.

    Parameters
    ----------
    graph : xcrfilter.ml.netgraph.LayerGraph
        The network (``read_keras_file`` or ``graph_from_keras``).

    Returns
    -------
    bytes
        An ONNX ``ModelProto`` with input ``x`` of shape ``(n, rows, cols)``
        [scaled log energy, float32] and the outputs of `OUTPUTS`.

    Raises
    ------
    ModelFileError
        A layer that the CAM frame classifier does not have (already
        refused by the graph).
    ImportError
        The ``onnx`` package is not installed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def node(op, inputs, name, final=False, **attrs):
        if not final:                    # layer names may be output names ("logits")
            name = "t/" + name
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    layers, params = graph.layers, graph.params
    by_name = {layer["name"]: layer for layer in layers}
    pooled_first = graph.pool_before_conv((FEATURES_LAYER, LOGITS_LAYER))
    t = {}

    def conv(x, name, out):
        p, cfg = params[name], by_name[name]["config"]
        w = _nchw_kernel(p)
        kh, kw = w.shape[2:]
        if cfg["padding"] == "same":
            # Keras (TensorFlow) 'same': k - s pixels, the odd one at the end
            # (inputs are multiples of the stride)
            sy, sx = (int(v) for v in cfg["strides"])
            py, px = max(int(kh) - sy, 0), max(int(kw) - sx, 0)
            pads = [py // 2, px // 2, py - py // 2, px - px // 2]
        else:
            pads = [0, 0, 0, 0]
        ins = [x, const(f"{name}/W", w)]
        if "bias" in p:
            ins.append(const(f"{name}/B", p["bias"]))
        y = node("Conv", ins, out if cfg.get("activation", "linear") == "linear" else out + "/lin",
                 kernel_shape=[int(kh), int(kw)], strides=[int(s) for s in cfg["strides"]],
                 pads=pads)
        if cfg.get("activation", "linear") == "relu":
            y = node("Relu", [y], out)
        elif cfg.get("activation", "linear") == "softmax":
            raise ModelFileError(f"{graph.source}: layer {name!r}: softmax convolution")
        return y

    x = node("Unsqueeze", ["x", const_int(inits, "x/axes", [1])], "x/nchw")
    last = max(i for i, la in enumerate(layers) if la["name"] in (FEATURES_LAYER, LOGITS_LAYER))
    for layer in layers[:last + 1]:
        cls, cfg, name = layer["class_name"], layer["config"], layer["name"]
        a = [t.get(i) for i in layer["inputs"]]
        if name in pooled_first:
            continue
        if cls == "InputLayer":
            y = x
        elif cls == "Conv2D":
            y = conv(a[0], name, name)
        elif layer["inputs"][0] in pooled_first:
            src = by_name[layer["inputs"][0]]
            size = int(cfg["pool_size"][0])
            pooled = node("AveragePool", [t[src["inputs"][0]]], name + "/pool",
                          kernel_shape=[size, size], strides=[size, size])
            y = conv(pooled, src["name"], name)
        elif cls == "Dense":
            p = params[name]
            y = node("MatMul", [a[0], const(f"{name}/W", p["kernel"])],
                     name if "bias" not in p else name + "/mm")
            if "bias" in p:
                y = node("Add", [y, const(f"{name}/B", p["bias"])], name)
            if cfg.get("activation", "linear") == "softmax":
                y = node("Softmax", [y], name + "/softmax", axis=-1)
            elif cfg.get("activation", "linear") == "relu":
                y = node("Relu", [y], name + "/relu")
        elif cls == "BatchNormalization":
            p = params[name]
            c = len(p["scale"])
            y = node("Mul", [a[0], const(f"{name}/scale", p["scale"].reshape(1, c, 1, 1))],
                     name + "/mul")
            y = node("Add", [y, const(f"{name}/offset", p["offset"].reshape(1, c, 1, 1))], name)
        elif cls == "Activation":
            if cfg["activation"] == "relu":
                y = node("Relu", [a[0]], name)
            elif cfg["activation"] == "softmax":
                y = node("Softmax", [a[0]], name, axis=-1)
            else:
                y = a[0]
        elif cls == "Dropout":
            y = a[0]
        elif cls == "Concatenate":
            y = node("Concat", a, name, axis=1)
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            size = int(cfg["pool_size"][0])
            y = node("MaxPool" if cls == "MaxPooling2D" else "AveragePool", [a[0]], name,
                     kernel_shape=[size, size], strides=[size, size])
        else:  # GlobalAveragePooling2D
            y = node("ReduceMean", [a[0]], name, axes=[2, 3], keepdims=0)
        t[name] = y
    feats_nhwc = node("Transpose", [t[FEATURES_LAYER]], "features/nhwc", perm=[0, 2, 3, 1])
    node("Softmax", [t[LOGITS_LAYER]], "probs", final=True, axis=-1)
    node("Identity", [t[LOGITS_LAYER]], "logits", final=True)
    node("MatMul", [feats_nhwc, const("cam/W", graph.kernel)], "cams", final=True)
    k = int(graph.kernel.shape[1])
    model = helper.make_model(
        helper.make_graph(
            nodes, "xcrfilter_cam_frame_classifier",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "rows", "cols"])],
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", k]),
             helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", k]),
             helper.make_tensor_value_info("cams", TensorProto.FLOAT,
                                           ["n", "h", "w", k])],
            inits),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="xcrfilter",
        doc_string=f"CAM frame classifier from {os.path.basename(graph.source)}")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def const_int(inits, name, value):
    """Add an int64 initializer ``name`` (ONNX axes and shapes); return its name."""
    from onnx import numpy_helper
    if not any(i.name == name for i in inits):
        inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
    return name


def cpu_session(model, threads=0):
    """An ONNX Runtime session of ``model`` on the CPU, as the package runs its networks.

    Parameters
    ----------
    model : bytes or path-like
        A serialised ONNX model or its file.
    threads : int, optional
        Intra-operator threads (0: ONNX Runtime's default, one per physical
        core); one inter-operator thread, all graph optimisations, warnings
        and errors only in the log.

    Returns
    -------
    onnxruntime.InferenceSession

    Raises
    ------
    ModelFileError
        ONNX Runtime cannot load the model.
    ImportError
        ``onnxruntime`` is not installed.
    """
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelFileError(f"not a loadable ONNX model ({type(exc).__name__}: "
                             f"{str(exc)[:300]})") from exc


class OnnxNetwork:
    """An exported frame classifier in an ONNX Runtime session.

    Parameters
    ----------
    model : bytes or path-like
        The ONNX model (from :func:`export_onnx`, or a ``densenet.onnx``).
    threads : int, optional
        Intra-operator threads of ONNX Runtime (0: its default, one per
        physical core).

    Raises
    ------
    ModelFileError
        ONNX Runtime cannot load the model, or its inputs and outputs are
        not those of `OUTPUTS`.
    ImportError
        ``onnxruntime`` is not installed.
    """

    def __init__(self, model, threads=0):
        self.session = cpu_session(model, threads)
        names = tuple(o.name for o in self.session.get_outputs())
        if names != OUTPUTS or [i.name for i in self.session.get_inputs()] != ["x"]:
            inputs = [i.name for i in self.session.get_inputs()]
            raise ModelFileError(f"ONNX model has inputs {inputs} and outputs {list(names)}; "
                                 f"expected ['x'] and {list(OUTPUTS)}")

    def __call__(self, x):
        """Run the network on scaled inputs.

        Parameters
        ----------
        x : ndarray, shape (n, rows, cols), float32
            Scaled log energies (sides multiples of the output stride).

        Returns
        -------
        probs, logits : ndarray, shape (n, K)
        cams : ndarray, shape (n, rows/stride, cols/stride, K)
        """
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
