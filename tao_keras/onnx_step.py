"""TAO-Net's one time step written as an ONNX graph from the Keras weights, with the `onnx`
package alone.

Why not a converter: tf2onnx (what Keras' own ONNX export uses under TensorFlow) cannot
translate the `update` graph (tf.map_fn, assertions), and its wheel installs top-level
`tools/` and `tests/` folders that shadow this project's `tools` package. The step is small
and made of few operations, so it is written here directly: the DenseNet (convolutions,
BatchNorm folded to a scale and shift, ReLU, average pooling, concatenation, global pooling),
each GRU cell (Keras' reset-after form), the aggregation over time and the classifier (and
with the statistics expert its classifier, and the mean of the two).
tests/test_onnx_export.py checks it against the Keras model.

Inputs: triplets [B, h, w, 3] (normalized, cropped), gaps [B, 2] (years), hidden_<i> [B, H]
per GRU, total [B, H] (running sum), steps [B] (float), step [B] (bool: this row takes a
step), photometry [B, 6] for a model with that input, and statistics [B, 7] for a model with
whole-sequence photometry statistics (their values after this step, as
tao_layers.PhotometryStatistics gives them, 8 wide with the von Neumann ratio or the
statistics expert: statistics_width; the numpy side keeps their running moments,
tao_keras.update_numpy). Outputs: hidden_<i>_out, total_out, steps_out, probabilities [B, C]
(before the calibration). Rows without a step keep their state, as streaming.NightUpdate.step does.
"""

import numpy as np

from tao_keras.models import densenet, taonet
from tao_keras.models import layers as tao_layers

OPSET = 17


class _Graph:
    """Nodes and constants of an ONNX graph under construction."""

    def __init__(self):
        self.nodes, self.constants, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, array, hint="c"):
        from onnx import numpy_helper

        name = self.name(hint)
        self.constants.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind, inputs, hint=None, output=None, **attributes):
        from onnx import helper

        output = output or self.name(hint or kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [output], **attributes))
        return output


def _same_pads(size, kernel, stride):
    """TensorFlow's 'same' padding of one axis as (before, after), and the output size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2), out


def _conv(g, x, layer, size, stride=1):
    """A bias-free Keras Conv2D on NCHW x of spatial side `size` -> (output, its side)."""
    kernel = np.asarray(layer.kernel, np.float32)  # [kh, kw, in, out]
    k = kernel.shape[0]
    if layer.padding == "same":
        (before, after), out = _same_pads(size, k, stride)
    else:
        before, after, out = 0, 0, (size - k) // stride + 1
    weights = g.const(np.transpose(kernel, [3, 2, 0, 1]), "kernel")
    y = g.op(
        "Conv",
        [x, weights],
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=[before, before, after, after],
    )
    return y, out


def _bn_relu(g, x, layer):
    """Inference BatchNorm (moving statistics) folded into a per-channel scale and shift."""
    gamma = np.asarray(layer.gamma, np.float64)
    beta = np.asarray(layer.beta, np.float64)
    mean = np.asarray(layer.moving_mean, np.float64)
    variance = np.asarray(layer.moving_variance, np.float64)
    scale = gamma / np.sqrt(variance + layer.epsilon)
    shift = beta - mean * scale
    x = g.op("Mul", [x, g.const(scale.astype(np.float32).reshape(1, -1, 1, 1), "scale")])
    x = g.op("Add", [x, g.const(shift.astype(np.float32).reshape(1, -1, 1, 1), "shift")])
    return g.op("Relu", [x])


def _backbone(g, x, backbone, config):
    """The DenseNet on NCHW x -> features [B, F], following densenet.build_backbone's layers
    (densenet.layer_plan and its layer names)."""
    size = config.roi_size
    x, size = _conv(g, x, backbone.get_layer("stem_conv"), size, config.stem_stride)
    for kind, name in densenet.layer_plan(config):
        if kind == "dense_layer":
            y = x
            if config.bottleneck:
                y = _bn_relu(g, y, backbone.get_layer(f"{name}_1_bn"))
                y, _ = _conv(g, y, backbone.get_layer(f"{name}_1_conv"), size)
            y = _bn_relu(g, y, backbone.get_layer(f"{name}_2_bn"))
            y, _ = _conv(g, y, backbone.get_layer(f"{name}_2_conv"), size)
            x = g.op("Concat", [x, y], axis=1)
        else:  # transition
            x = _bn_relu(g, x, backbone.get_layer(f"{name}_bn"))
            x, size = _conv(g, x, backbone.get_layer(f"{name}_conv"), size)
            x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            size //= 2
    x = _bn_relu(g, x, backbone.get_layer("final_bn"))
    return g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)


def _gru_cell(g, x, h, gru):
    """Keras' GRUCell (reset_after, sigmoid gates, tanh) -> the new hidden state."""
    cell = gru.cell
    units = cell.units
    kernel = np.asarray(cell.kernel, np.float32)
    recurrent = np.asarray(cell.recurrent_kernel, np.float32)
    bias = np.asarray(cell.bias, np.float32).reshape(2, 3 * units)
    gates_x = g.op("Add", [g.op("MatMul", [x, g.const(kernel)]), g.const(bias[0])])
    gates_h = g.op("Add", [g.op("MatMul", [h, g.const(recurrent)]), g.const(bias[1])])
    split = g.const(np.array([units, units, units], np.int64))
    xz, xr, xh = (g.name("x_gate") for _ in range(3))
    hz, hr, hh = (g.name("h_gate") for _ in range(3))
    g.nodes.append(_split_node(gates_x, split, [xz, xr, xh]))
    g.nodes.append(_split_node(gates_h, split, [hz, hr, hh]))
    z = g.op("Sigmoid", [g.op("Add", [xz, hz])])
    r = g.op("Sigmoid", [g.op("Add", [xr, hr])])
    candidate = g.op("Tanh", [g.op("Add", [xh, g.op("Mul", [r, hh])])])
    one_minus_z = g.op("Sub", [g.const(np.float32(1.0)), z])
    return g.op("Add", [g.op("Mul", [z, h]), g.op("Mul", [one_minus_z, candidate])])


def _split_node(x, sizes, outputs):
    from onnx import helper

    return helper.make_node("Split", [x, sizes], outputs, axis=1)


def _temporal_head(g, x, model, grus, architecture):
    """The GRU cells on the features x (rows without a step keep their state), the
    aggregation over time and the classifier: the graph's outputs hidden_<i>_out,
    steps_out, total_out and probabilities."""
    from onnx import TensorProto

    keep = g.op("Unsqueeze", ["step", g.const(np.array([1], np.int64))])
    for i, gru in enumerate(grus):
        out = _gru_cell(g, x, f"hidden_{i}", gru)
        g.op("Where", [keep, out, f"hidden_{i}"], output=f"hidden_{i}_out")
        x = out
    g.op("Add", ["steps", g.op("Cast", ["step"], to=TensorProto.FLOAT)], output="steps_out")
    if architecture.aggregation == "last":
        g.op("Identity", ["total"], output="total_out")
        pooled = f"hidden_{len(grus) - 1}_out"
    else:
        zeros = g.const(np.float32(0.0))
        g.op("Add", ["total", g.op("Where", [keep, x, zeros])], output="total_out")
        pooled = "total_out"
        if architecture.aggregation == "mean":
            count = g.op("Max", ["steps_out", g.const(np.float32(1.0))])
            count = g.op("Unsqueeze", [count, g.const(np.array([1], np.int64))])
            pooled = g.op("Div", ["total_out", count])
    if architecture.photometry_statistics:  # through their Dense (relu), beside the pooled
        statistics = "statistics"
        if architecture.statistics_expert and not architecture.photometry_eta:
            # the input carries the von Neumann ratio for the expert alone: the GRU's side
            # reads the first columns
            width = len(tao_layers.statistic_names(False))
            statistics = g.op(
                "Slice",
                [
                    statistics,
                    g.const(np.array([0], np.int64)),
                    g.const(np.array([width], np.int64)),
                    g.const(np.array([1], np.int64)),
                ],
            )
        statistics = _dense(g, statistics, model.get_layer("statistics_dense"), "Relu")
        pooled = g.op("Concat", [pooled, statistics], axis=1)
    head = taonet.final_classifier(model)
    if not architecture.statistics_expert:
        _dense(g, pooled, head, "Softmax", "probabilities")
        return
    head = _dense(g, pooled, head, "Softmax")
    members = [
        _dense(g, _dense(g, "statistics", hidden, "Relu"), softmax, "Softmax")
        for hidden, softmax in taonet.expert_layers(model)
    ]
    # the mean of the GRU's classifier and the expert (the mean of its members)
    expert = g.op("Mul", [g.op("Sum", members), g.const(np.float32(1.0 / len(members)))])
    g.op("Mul", [g.op("Add", [head, expert]), g.const(np.float32(0.5))], output="probabilities")


def _dense(g, x, layer, activation, output=None):
    """A Keras Dense layer (kernel [in, out], bias) on x [B, in], then `activation` (an ONNX
    op: Relu, or Softmax over the last axis) -> its output's name (`output` if given)."""
    y = g.op(
        "Add",
        [
            g.op("MatMul", [x, g.const(np.asarray(layer.kernel, np.float32))]),
            g.const(np.asarray(layer.bias, np.float32)),
        ],
    )
    attributes = {"axis": -1} if activation == "Softmax" else {}
    return g.op(activation, [y], output=output, **attributes)


def statistics_width(architecture):
    """The width of the step graph's "statistics" input: the 7 whole-sequence statistics, 8
    when the von Neumann ratio is among them or the statistics expert reads it
    (tao_layers.statistic_names)."""
    return len(
        tao_layers.statistic_names(architecture.photometry_eta or architecture.statistics_expert)
    )


def step_model(model, architecture, class_count):
    """The ONNX ModelProto of one time step of a float32 TAO-Net (a Keras model built by
    taonet.build_taonet from `architecture`, a TAONetConfig), class_count outputs."""
    from onnx import TensorProto, helper

    g = _Graph()
    roi = architecture.backbone.roi_size
    grus = taonet.recurrent_layers(model)
    units = [taonet.recurrent_units(layer) for layer in grus]
    x = g.op("Transpose", ["triplets"], perm=[0, 3, 1, 2])
    x = _backbone(g, x, taonet.backbone_of(model), architecture.backbone)
    if architecture.use_dt:
        x = g.op("Concat", [x, "gaps"], axis=1)
    if architecture.photometry:
        x = g.op("Concat", [x, "photometry"], axis=1)
    _temporal_head(g, x, model, grus, architecture)

    def value(name, kind, shape):
        return helper.make_tensor_value_info(name, kind, shape)

    inputs = [
        value("triplets", TensorProto.FLOAT, ["batch", roi, roi, 3]),
        value("gaps", TensorProto.FLOAT, ["batch", 2]),
        *(
            [value("photometry", TensorProto.FLOAT, ["batch", taonet.PHOTOMETRY_WIDTH])]
            if architecture.photometry
            else []
        ),
        *(
            [
                value(
                    "statistics",
                    TensorProto.FLOAT,
                    ["batch", statistics_width(architecture)],
                )
            ]
            if architecture.photometry_statistics
            else []
        ),
        *[value(f"hidden_{i}", TensorProto.FLOAT, ["batch", h]) for i, h in enumerate(units)],
        value("total", TensorProto.FLOAT, ["batch", units[-1]]),
        value("steps", TensorProto.FLOAT, ["batch"]),
        value("step", TensorProto.BOOL, ["batch"]),
    ]
    outs = [
        *[value(f"hidden_{i}_out", TensorProto.FLOAT, ["batch", h]) for i, h in enumerate(units)],
        value("total_out", TensorProto.FLOAT, ["batch", units[-1]]),
        value("steps_out", TensorProto.FLOAT, ["batch"]),
        value("probabilities", TensorProto.FLOAT, ["batch", class_count]),
    ]
    graph = helper.make_graph(g.nodes, "taonet_step", inputs, outs, g.constants)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tao-keras"
    )
    proto.ir_version = 8  # readable by onnxruntime releases of the last years
    return proto
