"""TAO-Net (paper 3.2): a DenseNet over sliding triplets, then a GRU stack over time.

Inputs: images [B, T, roi, roi, 3] (T may be unknown), dt [B, T, 2] (years between the
dates of each triplet), length [B] (valid steps; padding beyond it is ignored).
Outputs: probabilities [B, C] and aux_probabilities [B, T, C], the per-step classifier
after the backbone used for double supervision in joint training (zero on padded steps).
With the statistics expert (TAONetConfig.statistics_expert), "probabilities" is the mean of
two classifiers' probabilities, which are outputs of their own: "head_probabilities" (the
GRU's, as without the expert) and "expert_probabilities" (the mean of expert_members small
networks on the whole-sequence photometry statistics alone, fitted apart from the rest of the
model and frozen inside it: tao_keras.training.expert).
"""

import dataclasses
import hashlib

import keras
import numpy as np
from keras import layers

from tao_keras.models import densenet
from tao_keras.models import layers as tao_layers

AGGREGATIONS = ("last", "add", "mean")
# The per-date photometry input (tao_keras.pipeline.forced_photometry): signal and noise
PHOTOMETRY_PER_DATE = 2
# ... of each of a step's three dates
PHOTOMETRY_WIDTH = 3 * PHOTOMETRY_PER_DATE
# the column of a step's middle date's signal (its noise follows): the date each step adds to
# the whole-sequence photometry statistics (config.photometry_statistics)
MIDDLE_SIGNAL = PHOTOMETRY_PER_DATE
STATISTICS_UNITS = 16  # the Dense (relu) layer between those statistics and the classifier
EXPERT_UNITS = 16  # the statistics expert's hidden Dense (relu) layer
# the outputs of a TAO-Net with the statistics expert, besides "probabilities" (their mean)
# and "aux_probabilities"
HEAD_OUTPUT = "head_probabilities"
EXPERT_OUTPUT = "expert_probabilities"
# the statistics the expert reads ([B, 8]: tao_layers.statistic_names(eta=True))
EXPERT_STATISTICS = "expert_statistics"


@dataclasses.dataclass(frozen=True)
class TAONetConfig:
    backbone: densenet.DenseNetConfig = densenet.DenseNetConfig()
    gru_layers: int = 2
    gru_units: int = 128  # H
    bidirectional: bool = False
    aggregation: str = "add"  # 'last' valid step, masked sum ('add') or mean over time
    use_dt: bool = True  # concatenate the relative-date feature
    # concatenate each step's per-date forced photometry ([B, T, PHOTOMETRY_WIDTH], computed by
    # the pipeline and the serving graph from the same pixels) to the GRU's input
    photometry: bool = False
    # whole-sequence statistics of that photometry (tao_layers.PhotometryStatistics: mean,
    # spread, extremes, chi2 against a constant, skewness, count over the valid steps), through
    # a Dense layer, concatenated to the aggregated GRU output before the classifier
    photometry_statistics: bool = False
    # and among them the von Neumann ratio of successive dates (tao_layers.ETA_STATISTIC): is
    # the change correlated in time or noise?
    photometry_eta: bool = False
    # in training, the probability that an object's aggregated GRU output is zeroed, so that
    # the classifier also learns to read the photometry statistics alone (modality dropout;
    # inference never drops: the layer is the identity there)
    modality_dropout: float = 0.0
    # a second classifier on the photometry statistics alone (with the von Neumann ratio
    # whatever photometry_eta says), fitted apart on the training objects' statistics and
    # frozen inside the model (tao_keras.training.expert); the model's probabilities are the
    # mean of it and the GRU's classifier (a late fusion inside the graph: the two err on
    # different objects; docs/science.md)
    statistics_expert: bool = False
    # the expert is the mean of this many members (each Dense(EXPERT_UNITS, relu) -> softmax,
    # from its own initialization): an ensemble of small networks errs less than one. A
    # contract written before this field reads as 1 (the expert then was one network).
    expert_members: int = 1
    dropout: float = 0.0

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation {self.aggregation!r} not in {AGGREGATIONS}")
        if self.photometry_statistics and not self.photometry:
            raise ValueError("photometry_statistics needs the photometry input (photometry=True)")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout {self.modality_dropout}: in [0, 1) (0: off)")
        if self.modality_dropout and not self.photometry_statistics:
            raise ValueError(
                "modality_dropout drops the GRU's output so the classifier reads the photometry "
                "statistics alone: it needs photometry_statistics=True"
            )
        if self.photometry_eta and not self.photometry_statistics:
            raise ValueError(
                "photometry_eta is one of the photometry statistics: it needs "
                "photometry_statistics=True"
            )
        if self.statistics_expert and not self.photometry_statistics:
            raise ValueError(
                "statistics_expert classifies from the photometry statistics: it needs "
                "photometry_statistics=True"
            )
        if self.expert_members < 1:
            raise ValueError(f"expert_members {self.expert_members}: 1 or more")


def build_taonet(config, num_classes, name="taonet"):
    """TAO-Net as a Keras functional model.

    config: a TAONetConfig (backbone DenseNetConfig, GRU layers and width, aggregation over
    time, dt feature, dropout); num_classes: the task's C; name: the model's name.
    Inputs {"images": [B, T, roi, roi, 3], "dt": [B, T, 2] (years), "length": [B] (valid
    steps), and with config.photometry "photometry": [B, T, PHOTOMETRY_WIDTH]}; outputs
    {"probabilities": [B, C], "aux_probabilities": [B, T, C]} (the per-step head after the
    backbone, zero on padded steps), and with config.statistics_expert HEAD_OUTPUT and
    EXPERT_OUTPUT [B, C] (the two classifiers whose mean "probabilities" is).
    """
    roi = config.backbone.roi_size
    images = keras.Input((None, roi, roi, 3), name="images")
    dt = keras.Input((None, 2), name="dt")
    length = keras.Input((), dtype="int32", name="length")
    mask = tao_layers.LengthMask(name="mask")(length, images)

    backbone = densenet.build_backbone(config.backbone, channels=3, sample_mask=True)
    features = tao_layers.StepwiseBackbone(backbone, name="stepwise_backbone")(images, mask)
    aux = layers.Dense(num_classes, activation="softmax", dtype="float32", name="aux_classifier")(
        features
    )
    aux = tao_layers.ZeroPadded(name="aux_probabilities", dtype="float32")(aux, mask)
    inputs = {"images": images, "dt": dt, "length": length}
    x = _recurrent_input(features, inputs, config)
    outputs = _temporal_head(x, mask, config, num_classes, inputs)
    return keras.Model(inputs, {**outputs, "aux_probabilities": aux}, name=name)


def _recurrent_input(features, inputs, config):
    """The GRU's input [B, T, F (+2) (+PHOTOMETRY_WIDTH)]: the backbone's features, the date
    gaps (config.use_dt) and the photometry (config.photometry, whose Input joins `inputs`)."""
    parts = [features]
    if config.use_dt:
        parts.append(inputs["dt"])
    if config.photometry:
        inputs["photometry"] = keras.Input((None, PHOTOMETRY_WIDTH), name="photometry")
        parts.append(inputs["photometry"])
    return layers.Concatenate(name="features_dt")(parts) if len(parts) > 1 else features


def _temporal_head(x, mask, config, num_classes, inputs):
    """The GRU stack, the aggregation over time (and with config.photometry_statistics the
    whole-sequence statistics of inputs["photometry"] through STATISTICS_UNITS relu units,
    concatenated to it) and the classifier: [B, T, F] -> {"probabilities": [B, C]}, with
    config.statistics_expert also HEAD_OUTPUT and EXPERT_OUTPUT ([B, C] each; "probabilities"
    is their mean)."""
    for i in range(config.gru_layers):
        last_layer = i == config.gru_layers - 1
        return_sequences = not last_layer or config.aggregation != "last"
        gru = layers.GRU(
            config.gru_units,
            return_sequences=return_sequences,
            dropout=config.dropout,
            name=f"gru{i + 1}",
        )
        if config.bidirectional:
            gru = layers.Bidirectional(gru, name=f"bigru{i + 1}")
        x = gru(x, mask=mask)
    if config.aggregation == "add":
        x = tao_layers.MaskedSum(name="masked_sum")(x, mask)
    elif config.aggregation == "mean":
        x = tao_layers.MaskedMean(name="masked_mean")(x, mask)
    if config.photometry_statistics:
        statistics = tao_layers.PhotometryStatistics(
            signal_index=MIDDLE_SIGNAL,
            eta=config.photometry_eta,
            dtype="float32",
            name="photometry_statistics",
        )(inputs["photometry"], mask)
        if config.modality_dropout:  # one draw per object: the whole GRU output or nothing
            x = layers.Dropout(
                config.modality_dropout, noise_shape=(None, 1), name="modality_dropout"
            )(x)
        statistics = layers.Dense(STATISTICS_UNITS, activation="relu", name="statistics_dense")(
            statistics
        )
        x = layers.Concatenate(name="with_statistics")([x, statistics])
    if not config.statistics_expert:
        return {
            "probabilities": layers.Dense(
                num_classes, activation="softmax", dtype="float32", name="probabilities"
            )(x)
        }
    head = layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD_OUTPUT)(x)
    statistics = tao_layers.PhotometryStatistics(
        signal_index=MIDDLE_SIGNAL, eta=True, dtype="float32", name=EXPERT_STATISTICS
    )(inputs["photometry"], mask)
    members = _expert_members(statistics, num_classes, config.expert_members)
    if len(members) > 1:
        expert = layers.Average(dtype="float32", name=EXPERT_OUTPUT)(members)
    else:
        expert = members[0]
    fused = layers.Average(dtype="float32", name="probabilities")([head, expert])
    return {"probabilities": fused, HEAD_OUTPUT: head, EXPERT_OUTPUT: expert}


def expert_member_names(members):
    """The layer names [(hidden Dense, softmax Dense)] of a statistics expert of `members`
    members: one member keeps the names of the expert before it had several ("expert_dense",
    EXPERT_OUTPUT), so models saved then load, serve and are checked as they were."""
    if members == 1:
        return [("expert_dense", EXPERT_OUTPUT)]
    return [(f"expert_dense_{k}", f"expert_member_{k}") for k in range(members)]


def _expert_members(statistics, num_classes, members):
    """Each member's probabilities [B, C] from the statistics [B, 8]."""
    outputs = []
    for hidden, softmax in expert_member_names(members):
        x = layers.Dense(EXPERT_UNITS, activation="relu", dtype="float32", name=hidden)(statistics)
        outputs.append(
            layers.Dense(num_classes, activation="softmax", dtype="float32", name=softmax)(x)
        )
    return outputs


def build_expert(num_classes, members, statistics_width):
    """The statistics expert alone, to be fitted apart (tao_keras.training.expert): statistics
    [B, statistics_width] -> {member softmax layer name: [B, C]}, one output per member so each
    learns with its own loss (an ensemble, not one wider network). Its layers carry
    build_taonet's names: the fitted weights pass into TAO-Net by name."""
    statistics = keras.Input((statistics_width,), name="statistics")
    members = _expert_members(statistics, num_classes, members)
    names = [softmax for _, softmax in expert_member_names(len(members))]
    return keras.Model(statistics, dict(zip(names, members)), name="statistics_expert")


def expert_layers(model):
    """The Dense layers [(hidden, softmax)] of each member of a built TAO-Net's statistics
    expert ([] without one), in order: what the night-by-night update and the ONNX step run
    (the expert's probabilities are the mean of the members' softmax outputs)."""
    names = {layer.name for layer in model.layers}
    if EXPERT_OUTPUT not in names:
        return []
    members = sum(name.startswith("expert_member_") for name in names) or 1
    return [
        (model.get_layer(hidden), model.get_layer(softmax))
        for hidden, softmax in expert_member_names(members)
    ]


def build_head(config, num_classes, feature_width, name="taonet_head"):
    """TAO-Net without its backbone, on backbone features computed beforehand (a frozen
    backbone's features cached for the GRU stage): {"features": [B, T, feature_width],
    "dt": [B, T, 2], "length": [B]} -> probabilities [B, C]. Its layers carry build_taonet's
    names, so weights pass between the two by name (protocol.transfer_matching_weights); with
    config.photometry it also takes "photometry" [B, T, PHOTOMETRY_WIDTH]; with
    config.statistics_expert its outputs are build_taonet's less "aux_probabilities"."""
    features = keras.Input((None, feature_width), name="features")
    dt = keras.Input((None, 2), name="dt")
    length = keras.Input((), dtype="int32", name="length")
    mask = tao_layers.LengthMask(name="mask")(length, features)
    inputs = {"features": features, "dt": dt, "length": length}
    x = _recurrent_input(features, inputs, config)
    outputs = _temporal_head(x, mask, config, num_classes, inputs)
    if not config.statistics_expert:
        outputs = outputs["probabilities"]
    return keras.Model(inputs, outputs, name=name)


def backbone_of(model):
    """The DenseNet feature extractor inside a TAO-Net or a DenseNet classifier (found by type:
    the StepwiseBackbone's model, or the classifier's one nested model)."""
    for layer in model.layers:
        if isinstance(layer, tao_layers.StepwiseBackbone):
            return layer.backbone
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"model {model.name!r} has no DenseNet backbone")


def recurrent_layers(model):
    """The GRU layers of a TAO-Net (or its head), in order; a Bidirectional wrapper stands for
    its pair (found by type, not by name)."""
    return [
        layer for layer in model.layers if isinstance(layer, (layers.GRU, layers.Bidirectional))
    ]


def recurrent_units(layer):
    """The width H of one of recurrent_layers' GRUs (of each direction, for a Bidirectional)."""
    return layer.forward_layer.units if isinstance(layer, layers.Bidirectional) else layer.units


def aggregation_of(model):
    """The aggregation over time a built TAO-Net uses (AGGREGATIONS), read from its layers'
    types: what the night-by-night update must reproduce."""
    kinds = {type(layer) for layer in model.layers}
    if tao_layers.MaskedMean in kinds:
        return "mean"
    if tao_layers.MaskedSum in kinds:
        return "add"
    return "last"


def uses_photometry(model):
    """True when the built TAO-Net takes the per-date photometry input (config.photometry)."""
    return isinstance(model.input, dict) and "photometry" in model.input


def uses_photometry_statistics(model):
    """True when the built TAO-Net reads whole-sequence photometry statistics
    (config.photometry_statistics): it holds a PhotometryStatistics layer."""
    return any(isinstance(layer, tao_layers.PhotometryStatistics) for layer in model.layers)


def uses_photometry_eta(model):
    """True when the built TAO-Net's photometry statistics (those beside the GRU's output; the
    statistics expert's always include it) include the von Neumann ratio
    (config.photometry_eta)."""
    return any(
        isinstance(layer, tao_layers.PhotometryStatistics)
        and layer.eta
        and layer.name != EXPERT_STATISTICS
        for layer in model.layers
    )


def uses_statistics_expert(model):
    """True when the built TAO-Net fuses its GRU classifier with a classifier on the
    photometry statistics alone (config.statistics_expert): it has an EXPERT_OUTPUT layer."""
    return any(layer.name == EXPERT_OUTPUT for layer in model.layers)


def final_classifier(model):
    """The Dense (softmax) layer of a built TAO-Net's GRU classifier: the layer behind
    "probabilities", or with the statistics expert behind HEAD_OUTPUT ("probabilities" is then
    the mean of it and the expert). What finetuning replaces and the night-by-night update
    runs."""
    return model.get_layer(HEAD_OUTPUT if uses_statistics_expert(model) else "probabilities")


def uses_dt(model):
    """True when the built TAO-Net concatenates the date gaps to the features (config.use_dt):
    its first Concatenate in graph order (the GRU's input; the statistics' one comes after the
    GRUs) has an input besides the features and the photometry."""
    for layer in model.layers:
        if isinstance(layer, layers.Concatenate):
            return len(layer.input) > 1 + uses_photometry(model)
    return False


def triplet_features(model, triplets, training=False):
    """The backbone's features [N, F] of triplets [N, roi, roi, 3] (no padding), for a TAO-Net
    or a DenseNet classifier: what the per-night update and the FLOP count run."""
    backbone = backbone_of(model)
    if isinstance(backbone.input, dict):  # TAO-Net's backbone also takes a sample mask
        return backbone({"images": triplets, "valid": None}, training=training)
    return backbone(triplets, training=training)


def load_backbone_weights(taonet, densenet_model):
    """Carry a trained (early-fusion) DenseNet's backbone weights into TAO-Net (stage 2)."""
    backbone_of(taonet).set_weights(backbone_of(densenet_model).get_weights())


def set_trainable(model, backbone=True, recurrent=True):
    """Freeze or unfreeze the DenseNet and the GRU stack (the paper's stage-wise variants).
    The statistics expert's layers are always frozen: it is fitted apart
    (tao_keras.training.expert), not by the stages' gradients."""
    backbone_of(model).trainable = backbone
    for layer in recurrent_layers(model):
        layer.trainable = recurrent
    for pair in expert_layers(model):
        for layer in pair:
            layer.trainable = False


def weights_digest(model):
    """SHA-256 (hex) of a model's weights in order: the identity of what a stage started from
    (training) and of the model a night-by-night state belongs to (serving)."""
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(np.asarray(w).tobytes())
    return digest.hexdigest()
