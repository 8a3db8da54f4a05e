"""Floating-point operations counted by TensorFlow's profiler on a model's graph (not estimated).

The profiler counts the registered ops of a graph with static shapes (convolutions, matrix
products, element-wise arithmetic). TAO-Net's backbone runs on a dynamic number of valid
steps, so it is counted per triplet and multiplied by the steps; its GRU stack (a while
loop the profiler does not enter) is counted as the matrix products of its cells.
"""

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tensorflow.python.profiler import model_analyzer, option_builder


def graph_flops(fn, *specs):
    """FLOPs of one call of fn on inputs of the given (static) TensorSpecs."""
    concrete = tf.function(fn, autograph=False).get_concrete_function(*specs)
    graph = convert_variables_to_constants_v2(concrete).graph
    options = option_builder.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(model_analyzer.profile(graph, options=options).total_float_ops)


def gru_flops(input_size, units, steps):
    """Multiply-adds x 2 of a GRU's input and recurrent matrix products over `steps` steps."""
    return 2 * 3 * (input_size + units) * units * steps


def taonet_flops(model, steps=17, roi=None):
    """{backbone_per_triplet, recurrent_per_sequence, forward_per_sequence} of a TAO-Net model;
    roi: the side of its input images (default: the model's own, e.g. 16 for the cpu preset)."""
    from tao_keras.models import taonet

    roi = roi or int(model.input["images"].shape[2])
    per_triplet = graph_flops(
        lambda x: taonet.triplet_features(model, x), tf.TensorSpec([1, roi, roi, 3], tf.float32)
    )
    import keras

    recurrent = 0
    for layer in model.layers:
        cells = (
            [layer.forward_layer, layer.backward_layer]
            if isinstance(layer, keras.layers.Bidirectional)
            else [layer]
            if isinstance(layer, keras.layers.GRU)
            else []
        )
        for gru in cells:
            recurrent += gru_flops(int(gru.cell.kernel.shape[0]), gru.cell.units, steps)
    return {
        "backbone_per_triplet": per_triplet,
        "recurrent_per_sequence": recurrent,
        "forward_per_sequence": per_triplet * steps + recurrent,
    }


def matmul_gflops(size=2048, repeats=5, rounds=3, dtype=tf.float32):
    """This machine's dense matrix-multiply rate (GFLOP/s), the ceiling for compute-bound steps:
    the best of `rounds` timings (a shared machine's noise only ever slows a round down)."""
    import time

    a = tf.random.normal([size, size], dtype=tf.float32)
    b = tf.random.normal([size, size], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    product = tf.function(lambda x, y: tf.matmul(x, y))
    product(a, b).numpy()
    best = 0.0
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            out = product(a, b)
        out.numpy()
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - began) / 1e9)
    return best
