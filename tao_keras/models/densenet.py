"""DenseNet-BC (Huang et al. 2017) for small astronomical cutouts, in Keras layers only.

Three dense blocks of (depth - 4) // 6 bottleneck layers (BN-ReLU-Conv1x1(4k)-BN-ReLU-
Conv3x3(k)), transitions that compress channels by `compression` and halve the size, a
3x3 stem of 2k filters. Early fusion: a triplet of dates is the 3 input channels. Late
fusion: one single-image backbone, shared, applied to each date, streams concatenated.
"""

import dataclasses

import keras
from keras import layers

from tao_keras.models import layers as tao_layers


@dataclasses.dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int = 32  # k
    depth: int = 70  # L
    bottleneck: bool = True
    compression: float = 0.5
    stem_stride: int = 1  # 2 halves the cost of every later layer (cpu preset)
    dropout: float = 0.0
    roi_size: int = 64  # 64, 32, 16 (paper Table 10)
    # Batch statistics over the global batch across replicas/workers (set by the trainer when
    # it trains on several; costs ~17% of a CPU step for nothing on a single device).
    synchronized_batchnorm: bool = False

    @property
    def layers_per_block(self):
        per_layer = 2 if self.bottleneck else 1
        n = (self.depth - 4) // (3 * per_layer)
        if n < 1:
            raise ValueError(f"depth {self.depth} too small for a 3-block DenseNet")
        return n


def _bn_relu(x, config, name, valid=None):
    x = tao_layers.SampleMaskedBatchNormalization(
        epsilon=1.001e-5, synchronized=config.synchronized_batchnorm, name=f"{name}_bn"
    )(x, valid=valid)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _dense_layer(x, config, name, valid=None):
    y = x
    if config.bottleneck:
        y = _bn_relu(y, config, f"{name}_1", valid)
        y = layers.Conv2D(4 * config.growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, config, f"{name}_2", valid)
    y = layers.Conv2D(config.growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(
        y
    )
    if config.dropout:
        y = layers.Dropout(config.dropout, name=f"{name}_drop")(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def _transition(x, config, name, valid=None):
    channels = int(x.shape[-1] * config.compression)
    x = _bn_relu(x, config, name, valid)
    x = layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, name=f"{name}_pool")(x)


def layer_plan(config):
    """The backbone's units after the stem, in order: ("dense_layer", name) for each bottleneck
    layer of the three blocks and ("transition", name) between blocks; then comes "final"'s
    BN-ReLU and the global pooling. build_backbone and the ONNX writer (tao_keras.onnx_step)
    both follow it."""
    plan = []
    for block in range(3):
        plan += [
            ("dense_layer", f"block{block + 1}_layer{i + 1}")
            for i in range(config.layers_per_block)
        ]
        if block < 2:
            plan.append(("transition", f"transition{block + 1}"))
    return plan


def build_backbone(config, channels=3, name="backbone", sample_mask=False):
    """Feature extractor [B, roi, roi, channels] -> [B, F] (global average pooled).

    sample_mask: the model then takes {"images": [B, roi, roi, channels], "valid": [B] bool
    or None}, and in training every BatchNorm computes its statistics over the valid images
    only (None: all), so that a batch of padded sequences can be run whole, with static
    shapes (what jit needs), while padding never reaches the statistics.
    """
    inputs = keras.Input((config.roi_size, config.roi_size, channels), name="images")
    valid = keras.Input((), dtype="bool", name="valid", optional=True) if sample_mask else None
    x = layers.Conv2D(
        2 * config.growth_rate,
        3,
        strides=config.stem_stride,
        padding="same",
        use_bias=False,
        name="stem_conv",
    )(inputs)
    for kind, unit in layer_plan(config):
        build = _dense_layer if kind == "dense_layer" else _transition
        x = build(x, config, unit, valid)
    x = _bn_relu(x, config, "final", valid)
    features = layers.GlobalAveragePooling2D(name="pool")(x)
    if sample_mask:
        return keras.Model({"images": inputs, "valid": valid}, features, name=name)
    return keras.Model(inputs, features, name=name)


def build_densenet(config, num_classes, fusion="early", name="densenet"):
    """Classifier of triplets {"images": [B, roi, roi, 3]} -> class probabilities [B, num_classes].

    The backbone is the nested layer named 'backbone' (single-channel for late fusion),
    so its weights can be carried into TAO-Net.
    """
    inputs = keras.Input((config.roi_size, config.roi_size, 3), name="images")
    if fusion == "early":
        features = build_backbone(config, channels=3)(inputs)
    elif fusion == "late":
        # [B, H, W, 3] -> [B*3, H, W, 1]: one shared backbone over the three dates.
        streams = build_backbone(config, channels=1)(
            tao_layers.SplitChannels(name="split_dates")(inputs)
        )
        features = tao_layers.MergeStreams(3, name="merge_streams")(streams)
    else:
        raise ValueError(f"fusion {fusion!r} is not 'early' or 'late'")
    probabilities = layers.Dense(
        num_classes, activation="softmax", dtype="float32", name="classifier"
    )(features)
    return keras.Model({"images": inputs}, probabilities, name=name)
