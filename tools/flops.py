"""Floating-point operations of a model: counted by TensorFlow's profiler on its graph, or in
closed form from its convolution and dense layers (Keras only, for backends without TF).

The profiler counts the registered ops of a graph with static shapes (convolutions, matrix
products, element-wise arithmetic). TAO-Net's backbone runs on a dynamic number of valid
steps, so it is counted per triplet and multiplied by the steps; its GRU stack (a while
loop the profiler does not enter) is counted as the matrix products of its cells.
The profiler is TensorFlow's own (tensorflow.python.profiler: no public API counts a graph's
FLOPs), imported where it is used so that the closed-form count needs no TensorFlow.
"""

import keras


def graph_flops(fn, *specs):
    """FLOPs of one call of fn on inputs of the given (static) TensorSpecs."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.profiler import model_analyzer, option_builder

    concrete = tf.function(fn, autograph=False).get_concrete_function(*specs)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(model_analyzer.profile(graph, options=options).total_float_ops)


def gru_flops(input_size, units, steps):
    """Multiply-adds x 2 of a GRU's input and recurrent matrix products over `steps` steps."""
    return 2 * 3 * (input_size + units) * units * steps


def layer_flops(model):
    """FLOPs of one sample through the Conv2D and Dense layers of a functional model (nested
    models included), 2 per multiply-add: the matrix work, without BatchNorm and element-wise
    arithmetic (what the TensorFlow profiler adds on top)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += layer_flops(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            height, width, filters = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            total += 2 * height * width * filters * kh * kw * layer.kernel.shape[2]
        elif isinstance(layer, keras.layers.Dense) and len(layer.output.shape) == 2:
            total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return total


def recurrent_flops(model, steps):
    """Matrix work of a model's GRU layers (both directions of a Bidirectional) over `steps`."""
    recurrent = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            cells = [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, keras.layers.GRU):
            cells = [layer]
        else:
            cells = []
        for gru in cells:
            recurrent += gru_flops(int(gru.cell.kernel.shape[0]), gru.cell.units, steps)
    return recurrent


def taonet_flops(model, steps=17, roi=None):
    """{backbone_per_triplet, recurrent_per_sequence, forward_per_sequence} of a TAO-Net model;
    roi: the side of its input images (default: the model's own, e.g. 16 for the cpu preset)."""
    from tao_keras.models import taonet

    roi = roi or int(model.input["images"].shape[2])
    import tensorflow as tf

    per_triplet = graph_flops(
        lambda x: taonet.triplet_features(model, x), tf.TensorSpec([1, roi, roi, 3], tf.float32)
    )
    recurrent = recurrent_flops(model, steps)
    return {
        "backbone_per_triplet": per_triplet,
        "recurrent_per_sequence": recurrent,
        "forward_per_sequence": per_triplet * steps + recurrent,
    }


def matmul_gflops(size=2048, repeats=5, rounds=3, dtype="float32"):
    """This machine's dense matrix-multiply rate (GFLOP/s) under TensorFlow, the ceiling for
    compute-bound steps: the best of `rounds` timings (a shared machine's noise only ever slows
    a round down)."""
    import tensorflow as tf

    a = tf.random.normal([size, size], dtype=tf.float32)
    b = tf.random.normal([size, size], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    product = tf.function(lambda x, y: tf.matmul(x, y))
    return matmul_rate(product, a, b, lambda out: out.numpy(), repeats, rounds) / 1e9


def matmul_rate(product, a, b, wait, repeats=5, rounds=3):
    """FLOP/s of a square matrix product `product(a, b)` (any framework; wait(out) blocks until
    the result exists): the best of `rounds` timings of `repeats` products, after one
    untimed call (tracing, compiling)."""
    import time

    size = a.shape[0]
    wait(product(a, b))
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            out = product(a, b)
        wait(out)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - began))
    return best
