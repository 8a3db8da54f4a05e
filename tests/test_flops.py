"""FLOP counting used by the benchmark: exact on layers whose cost is known in closed form."""

import keras
import tensorflow as tf

from tao_keras.models import densenet, presets, taonet
from tools import flops


def test_dense_and_convolution_flops_are_counted_exactly():
    dense = keras.Sequential([keras.Input((100,)), keras.layers.Dense(10, use_bias=False)])
    assert (
        flops.graph_flops(lambda x: dense(x), tf.TensorSpec([4, 100], tf.float32))
        == 2 * 4 * 100 * 10
    )
    conv = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, padding="same", use_bias=False)]
    )
    assert (
        flops.graph_flops(lambda x: conv(x), tf.TensorSpec([1, 16, 16, 3], tf.float32))
        == 2 * 16 * 16 * 8 * 3 * 9
    )


def test_taonet_flops_scale_with_steps_and_count_the_grus():
    config = taonet.TAONetConfig(
        backbone=densenet.DenseNetConfig(growth_rate=4, depth=10, stem_stride=2),
        gru_layers=2,
        gru_units=8,
    )
    model = taonet.build_taonet(config, 6)
    five, ten = flops.taonet_flops(model, steps=5), flops.taonet_flops(model, steps=10)
    assert five["backbone_per_triplet"] == ten["backbone_per_triplet"] > 0
    assert ten["recurrent_per_sequence"] == 2 * five["recurrent_per_sequence"] > 0
    assert (
        ten["forward_per_sequence"]
        == 10 * ten["backbone_per_triplet"] + ten["recurrent_per_sequence"]
    )


def test_closed_form_count_matches_the_profiler_on_matrix_layers():
    dense = keras.Sequential([keras.Input((100,)), keras.layers.Dense(10, use_bias=False)])
    conv = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(8, 3, strides=2, padding="same")]
    )
    assert flops.layer_flops(dense) == 2 * 100 * 10
    assert flops.layer_flops(conv) == 2 * 8 * 8 * 8 * 3 * 9
    # the paper's backbone: 9.37 GFLOP of convolutions per triplet, below the profiler's count
    # (which adds BatchNorm and element-wise work) by a few percent only
    model = taonet.build_taonet(presets.preset("cpu"), 6)
    counted = flops.layer_flops(taonet.backbone_of(model))
    profiled = flops.taonet_flops(model)["backbone_per_triplet"]
    assert 0.85 * profiled < counted < profiled
    paper = taonet.build_taonet(presets.preset("paper"), 6)
    assert round(flops.layer_flops(taonet.backbone_of(paper)) / 1e9, 2) == 9.37
    assert flops.recurrent_flops(paper, 17) == flops.taonet_flops(paper)["recurrent_per_sequence"]
