"""FLOP counting used by the benchmark: exact on layers whose cost is known in closed form."""

import keras
import tensorflow as tf

from tao_keras.models import densenet, taonet
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
