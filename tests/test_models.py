"""DenseNet (early/late fusion) and TAO-Net: shapes, parameter counts, padding invariance,
BatchNorm hygiene, auxiliary head, weight transfer, freezing, .keras round trip."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tao_keras.models import densenet, presets, taonet

TINY = densenet.DenseNetConfig(growth_rate=4, depth=10, stem_stride=2)


def tiny_taonet(**changes):
    config = taonet.TAONetConfig(**{"backbone": TINY, "gru_layers": 2, "gru_units": 8, **changes})
    return taonet.build_taonet(config, 6)


def sequences(batch=3, steps=6, roi=64, lengths=None, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "images": rng.normal(size=(batch, steps, roi, roi, 3)).astype("float32"),
        "dt": rng.uniform(0, 0.3, size=(batch, steps, 2)).astype("float32"),
        "length": np.array(lengths or [steps] * batch, "int32"),
    }


def pad(inputs, extra):
    return {
        k: np.concatenate([v, np.zeros((v.shape[0], extra) + v.shape[2:], v.dtype)], axis=1)
        if v.ndim > 1
        else v
        for k, v in inputs.items()
    }


def dense_net_bc_parameters(k, depth, channels=3, compression=0.5):
    """Independent count for DenseNet-BC: convs without bias, BN = 4 numbers per channel."""
    n = (depth - 4) // 6
    total, c = 9 * channels * 2 * k, 2 * k
    for block in range(3):
        for _ in range(n):
            total += 4 * c + c * 4 * k + 4 * 4 * k + 9 * 4 * k * k
            c += k
        if block < 2:
            out = int(c * compression)
            total += 4 * c + c * out
            c = out
    return total + 4 * c, c


@pytest.mark.parametrize("k, depth", [(16, 50), (32, 70), (64, 90)])
def test_backbone_parameter_counts_follow_densenet_bc(k, depth):
    backbone = densenet.build_backbone(densenet.DenseNetConfig(growth_rate=k, depth=depth))
    expected, features = dense_net_bc_parameters(k, depth)
    assert backbone.count_params() == expected and backbone.output_shape == (None, features)


def test_paper_preset_is_about_three_million_parameters():
    model = taonet.build_taonet(presets.preset("paper"), 6)
    assert taonet.backbone_of(model).count_params() == 2_983_360
    assert 3.0e6 < model.count_params() < 3.5e6  # paper: 3.1M


@pytest.mark.parametrize("roi", [64, 32, 16])
@pytest.mark.parametrize("fusion", ["early", "late"])
def test_densenet_shapes(roi, fusion):
    config = densenet.DenseNetConfig(growth_rate=4, depth=10, roi_size=roi)
    model = densenet.build_densenet(config, 5, fusion)
    out = model({"images": np.zeros((2, roi, roi, 3), "float32")})
    assert out.shape == (2, 5)
    np.testing.assert_allclose(out.numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_late_fusion_shares_one_backbone_over_the_dates():
    model = densenet.build_densenet(TINY, 6, "late")
    backbone = taonet.backbone_of(model)
    assert backbone.input_shape == (None, 64, 64, 1)
    # shared weights: one single-channel backbone plus a classifier over 3 concatenated streams
    features = backbone.output_shape[-1]
    assert model.count_params() == backbone.count_params() + 3 * features * 6 + 6
    images = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    swapped = images[..., [2, 1, 0]]
    assert not np.allclose(
        model({"images": images}), model({"images": swapped})
    )  # date order matters


@pytest.mark.parametrize("aggregation", ["last", "add", "mean"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("use_dt", [True, False])
def test_taonet_shapes_and_padding_invariance(aggregation, bidirectional, use_dt):
    model = tiny_taonet(aggregation=aggregation, bidirectional=bidirectional, use_dt=use_dt)
    inputs = sequences(lengths=[6, 4, 1])
    out = model(inputs, training=False)
    assert out["probabilities"].shape == (3, 6) and out["aux_probabilities"].shape == (3, 6, 6)
    padded = model(pad(inputs, 7), training=False)
    np.testing.assert_allclose(padded["probabilities"], out["probabilities"], atol=1e-5)
    # steps beyond each length change nothing either
    garbage = dict(inputs, images=inputs["images"].copy())
    garbage["images"][1, 4:] = 1e3
    np.testing.assert_allclose(
        model(garbage, training=False)["probabilities"], out["probabilities"], atol=1e-5
    )


def test_dynamic_batch_and_time_through_tf_function():
    model = tiny_taonet()
    signature = {
        "images": tf.TensorSpec([None, None, 64, 64, 3]),
        "dt": tf.TensorSpec([None, None, 2]),
        "length": tf.TensorSpec([None], tf.int32),
    }
    call = tf.function(lambda x: model(x, training=False), input_signature=[signature])
    for batch, steps in [(2, 3), (4, 3), (1, 9), (5, 2)]:
        inputs = sequences(batch, steps)
        out = call(inputs)
        assert out["probabilities"].shape == (batch, 6) and out["aux_probabilities"].shape == (
            batch,
            steps,
            6,
        )
        np.testing.assert_allclose(
            out["probabilities"], model(inputs, training=False)["probabilities"], atol=1e-6
        )


def _batchnorm_state(model):
    return [w.numpy().copy() for w in taonet.backbone_of(model).non_trainable_weights]


def test_padded_steps_leave_batchnorm_statistics_untouched():
    inputs = sequences(lengths=[6, 2, 4])
    a, b = tiny_taonet(), tiny_taonet()
    b.set_weights(a.get_weights())
    a(inputs, training=True)
    garbage = pad(inputs, 5)
    garbage["images"][:, 6:] = 50.0  # padded steps full of bright junk
    b(garbage, training=True)
    before = _batchnorm_state(tiny_taonet())
    for x, y, z in zip(_batchnorm_state(a), _batchnorm_state(b), before):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert any(not np.allclose(x, z) for x, z in zip(_batchnorm_state(a), before)), (
        "statistics did move"
    )


def test_masked_path_gives_the_gathered_paths_outputs_and_statistics():
    """The path other backends take (every step run, BatchNorm statistics masked to the valid
    steps) against TensorFlow's (valid steps gathered): same outputs, same statistics."""
    inputs = pad(sequences(lengths=[6, 2, 4]), 3)
    inputs["images"][:, 6:] = 50.0
    gathered, masked = tiny_taonet(), tiny_taonet()
    masked.set_weights(gathered.get_weights())
    masked.get_layer("stepwise_backbone").gather = False
    for training in (False, True):
        a, b = gathered(inputs, training=training), masked(inputs, training=training)
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-5)
    for x, y in zip(_batchnorm_state(gathered), _batchnorm_state(masked)):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_auxiliary_head_is_zero_on_padded_steps():
    out = tiny_taonet()(sequences(lengths=[6, 2, 4]), training=False)["aux_probabilities"].numpy()
    np.testing.assert_allclose(out[0].sum(axis=-1), 1.0, rtol=1e-5)
    assert (out[1, 2:] == 0).all() and (out[2, 4:] == 0).all()


def test_densenet_weights_transfer_into_taonet():
    classifier = densenet.build_densenet(TINY, 6, "early")
    rng = np.random.default_rng(3)
    classifier.set_weights(
        [rng.normal(size=w.shape).astype("float32") * 0.1 for w in classifier.get_weights()]
    )
    model = tiny_taonet()
    taonet.load_backbone_weights(model, classifier)
    triplets = rng.normal(size=(4, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        taonet.triplet_features(model, triplets),
        taonet.triplet_features(classifier, triplets),
        atol=1e-6,
    )


def test_freezing_backbone_and_recurrent_parts():
    model = tiny_taonet()
    backbone_weights = len(taonet.backbone_of(model).trainable_weights)
    total = len(model.trainable_weights)
    taonet.set_trainable(model, backbone=False)
    assert len(model.trainable_weights) == total - backbone_weights
    taonet.set_trainable(model, backbone=True, recurrent=False)
    gru_weights = sum(len(model.get_layer(f"gru{i}").weights) for i in (1, 2))
    assert len(model.trainable_weights) == total - gru_weights


@pytest.mark.parametrize(
    "build",
    [
        lambda: tiny_taonet(bidirectional=True, aggregation="last"),
        lambda: densenet.build_densenet(TINY, 4, "late"),
    ],
)
def test_keras_file_round_trip(tmp_path, build):
    model = build()
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode: no lambdas inside
    inputs = (
        sequences(lengths=[6, 3, 5])
        if "taonet" in model.name
        else {"images": np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")}
    )
    expected, got = model(inputs, training=False), loaded(inputs, training=False)
    for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(got)):
        np.testing.assert_array_equal(a, b)


def test_config_validation():
    with pytest.raises(ValueError, match="aggregation"):
        taonet.TAONetConfig(aggregation="median")
    with pytest.raises(ValueError, match="too small"):
        densenet.build_backbone(densenet.DenseNetConfig(depth=6))
    with pytest.raises(ValueError, match="unknown preset"):
        presets.preset("gpu")


def test_head_on_cached_features_gives_the_whole_models_probabilities():
    from tao_keras.training import protocol

    model = tiny_taonet(aggregation="add")
    inputs = sequences(lengths=[6, 2, 4])
    steps = inputs["images"].reshape((-1,) + inputs["images"].shape[2:])
    features = np.asarray(taonet.triplet_features(model, steps)).reshape(3, 6, -1)
    head = taonet.build_head(model_config_of_tiny(), 6, features.shape[-1])
    assert len(protocol.transfer_matching_weights(head, model)) == len(
        [layer for layer in head.layers if layer.weights]
    )
    cached = dict(inputs, features=features)
    del cached["images"]
    np.testing.assert_allclose(
        head(cached, training=False),
        model(inputs, training=False)["probabilities"],
        atol=1e-5,
    )


def test_modality_dropout_drops_whole_objects_in_training_only():
    """Each object's aggregated GRU output is zeroed whole or kept (scaled by 1 / (1 - p)) in
    training, and passed unchanged at inference: the classifier's input, read on the head."""
    config = taonet.TAONetConfig(
        backbone=TINY,
        gru_units=8,
        aggregation="mean",
        photometry=True,
        photometry_statistics=True,
        modality_dropout=0.5,
    )
    rng = np.random.default_rng(0)
    batch, steps, width = 16, 5, 12
    inputs = {
        "features": rng.normal(size=(batch, steps, width)).astype(np.float32),
        "dt": rng.uniform(0, 0.1, size=(batch, steps, 2)).astype(np.float32),
        "length": np.full(batch, steps, np.int32),
        "photometry": rng.normal(size=(batch, steps, taonet.PHOTOMETRY_WIDTH)).astype(np.float32),
    }
    head = taonet.build_head(config, 6, width)
    probe = keras.Model(head.inputs, head.get_layer("with_statistics").output)
    keras.utils.set_random_seed(0)
    kept = np.asarray(probe(inputs, training=False))
    dropped = np.asarray(probe(inputs, training=True))
    gru, statistics = slice(0, 8), slice(8, None)
    np.testing.assert_allclose(dropped[:, statistics], kept[:, statistics], atol=1e-6)
    zero = np.all(dropped[:, gru] == 0.0, axis=1)
    assert 0 < zero.sum() < batch  # both outcomes among 16 objects (seeded)
    np.testing.assert_allclose(dropped[~zero, gru], 2.0 * kept[~zero, gru], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="modality_dropout.*needs photometry_statistics"):
        taonet.TAONetConfig(backbone=TINY, modality_dropout=0.3)


def test_the_statistics_expert_is_a_second_classifier_fitted_apart():
    """With statistics_expert the probabilities are the mean of the GRU's classifier and a
    classifier of the photometry statistics alone (pixels do not reach it) that is the mean of
    expert_members small networks; the stages leave it frozen and train everything else as in
    a model without it (no shared weight, and neither the expert nor the fused output has a
    loss); training.expert fits it apart and copies its weights in."""
    from tao_keras.training import expert as expert_fitting
    from tao_keras.training import losses, protocol

    base = taonet.TAONetConfig(
        backbone=TINY,
        gru_units=8,
        aggregation="mean",
        photometry=True,
        photometry_statistics=True,
    )
    expert = taonet.build_taonet(
        dataclasses.replace(base, statistics_expert=True, expert_members=3), 6
    )
    plain = taonet.build_taonet(base, 6)
    assert taonet.uses_statistics_expert(expert) and not taonet.uses_statistics_expert(plain)
    assert not taonet.uses_photometry_eta(expert)  # the expert's ratio is its own
    assert len(taonet.expert_layers(expert)) == 3 and taonet.expert_layers(plain) == []
    rng = np.random.default_rng(0)
    inputs = sequences(batch=4, steps=5, roi=TINY.roi_size)
    inputs["photometry"] = rng.normal(size=(4, 5, taonet.PHOTOMETRY_WIDTH)).astype("float32")
    out = expert(inputs, training=False)
    np.testing.assert_allclose(
        out["probabilities"],
        (np.asarray(out[taonet.HEAD_OUTPUT]) + np.asarray(out[taonet.EXPERT_OUTPUT])) / 2,
        atol=1e-6,
    )
    # the expert is the mean of its members on the model's own statistics
    statistics_of = keras.Model(expert.input, expert.get_layer(taonet.EXPERT_STATISTICS).output)
    statistics = np.asarray(statistics_of(inputs))
    assert statistics.shape == (4, 8)
    members = [
        np.asarray(softmax(hidden(statistics))) for hidden, softmax in taonet.expert_layers(expert)
    ]
    assert not np.allclose(members[0], members[1])  # each from its own initialization
    np.testing.assert_allclose(np.mean(members, 0), out[taonet.EXPERT_OUTPUT], atol=1e-6)
    other_pixels = {**inputs, "images": rng.normal(size=inputs["images"].shape).astype("float32")}
    np.testing.assert_allclose(
        expert(other_pixels, training=False)[taonet.EXPERT_OUTPUT],
        out[taonet.EXPERT_OUTPUT],
        atol=1e-6,
    )
    assert not np.allclose(
        expert(other_pixels, training=False)[taonet.HEAD_OUTPUT], out[taonet.HEAD_OUTPUT]
    )
    # trained on one batch from the same weights: the GRU's classifier learns as without it,
    # the expert stays as it was
    copied = protocol.transfer_matching_weights(expert, plain)
    assert not any(name.startswith("expert_") for name in copied)
    expert.get_layer(taonet.HEAD_OUTPUT).set_weights(plain.get_layer("probabilities").get_weights())
    labels = np.array([0, 1, 2, 3])
    for model, targets in (
        (plain, protocol.two_outputs(inputs, labels)[1]),
        (expert, protocol.expert_outputs(inputs, labels)[1]),
    ):
        taonet.set_trainable(model)
        losses.compile_stage(model, "joint", 1e-2, 1e-4, 1.0)
        model.fit(inputs, targets, batch_size=4, epochs=2, verbose=0, shuffle=False)
    assert not any(layer.trainable for pair in taonet.expert_layers(expert) for layer in pair)
    np.testing.assert_allclose(
        expert(inputs, training=False)[taonet.HEAD_OUTPUT],
        plain(inputs, training=False)["probabilities"],
        atol=1e-5,
    )
    np.testing.assert_allclose(
        expert(inputs, training=False)[taonet.EXPERT_OUTPUT], out[taonet.EXPERT_OUTPUT], atol=1e-6
    )
    # fitted apart on statistics whose class a line separates, then served by the model
    rows = rng.normal(size=(240, 8)).astype("float32")
    classes_of = (rows[:, 0] > 0).astype("int32") + 2 * (rows[:, 1] > 0).astype("int32")
    fitted = expert_fitting.fit(expert, rows, classes_of, steps=300)
    assert len(fitted) == 3 and max(fitted) < 0.3
    served = np.mean(
        [np.asarray(softmax(hidden(rows))) for hidden, softmax in taonet.expert_layers(expert)], 0
    )
    assert np.mean(served.argmax(1) == classes_of) > 0.9
    assert not np.allclose(
        expert(inputs, training=False)[taonet.EXPERT_OUTPUT], out[taonet.EXPERT_OUTPUT]
    )
    # what the next stage carries (by name and shape), and what it must fit again
    three = dataclasses.replace(base, statistics_expert=True, expert_members=3)
    again = taonet.build_taonet(three, 6)
    assert not expert_fitting.carried(again, None) and not expert_fitting.carried(again, plain)
    protocol.transfer_matching_weights(again, expert)
    assert expert_fitting.carried(again, expert)
    two_classes = taonet.build_taonet(three, 2)
    assert not expert_fitting.carried(two_classes, expert)
    with pytest.raises(ValueError, match="statistics_expert.*needs photometry_statistics"):
        taonet.TAONetConfig(backbone=TINY, photometry=True, statistics_expert=True)
    with pytest.raises(ValueError, match="expert_members 0"):
        dataclasses.replace(base, statistics_expert=True, expert_members=0)


def test_fused_loss_moves_the_gru_classifiers_loss_onto_the_served_mean():
    """TrainConfig.fused_loss w: the stages' loss is (1 - w) x the GRU classifier's
    cross-entropy + w x that of the mean of it and the frozen expert ("probabilities", what is
    served; it has a target and a loss only for w > 0), so at w = 1 an object the expert
    already classifies weighs less. The first stages of a kept run stay reusable (stage 1 does
    not read it); w outside [0, 1] is refused, and the trainer's flag sets it."""
    from tao_keras.training import config, losses, protocol
    from trainers import common

    architecture = taonet.TAONetConfig(
        backbone=TINY,
        gru_units=8,
        aggregation="mean",
        photometry=True,
        photometry_statistics=True,
        statistics_expert=True,
        expert_members=2,
    )
    model = taonet.build_taonet(architecture, 6)
    rng = np.random.default_rng(1)
    inputs = sequences(batch=4, steps=5, roi=TINY.roi_size)
    inputs["photometry"] = rng.normal(size=(4, 5, taonet.PHOTOMETRY_WIDTH)).astype("float32")
    labels = np.array([0, 3, 5, 2])
    out = model(inputs, training=False)

    def crossentropy(probabilities):
        return -np.mean(np.log(np.asarray(probabilities)[np.arange(4), labels]))

    head, fused = crossentropy(out[taonet.HEAD_OUTPUT]), crossentropy(out["probabilities"])
    assert abs(head - fused) > 1e-3  # the two losses differ, so the weights are seen
    for weight in (0.0, 0.5, 1.0):
        targets = protocol.training_targets(architecture, weight)(inputs, labels)[1]
        assert ("probabilities" in targets) == (weight > 0)  # no target where no loss
        losses.compile_stage(model, "gru", 1e-3, 1e-4, 0.0, fused_loss=weight)
        loss = model.evaluate(inputs, targets, batch_size=4, verbose=0, return_dict=True)["loss"]
        np.testing.assert_allclose(loss, (1 - weight) * head + weight * fused, rtol=1e-4)
    base = config.TRAINING_PRESETS["cpu"]
    assert base.fused_loss == 0.0
    fused_run = dataclasses.replace(base, fused_loss=1.0)
    assert protocol._settings(fused_run, "densenet") == protocol._settings(base, "densenet")
    assert protocol._settings(fused_run, "gru") != protocol._settings(base, "gru")
    with pytest.raises(ValueError, match="fused_loss 1.5"):
        dataclasses.replace(base, fused_loss=1.5)
    assert protocol.model_contract(fused_run, 64).architecture.statistics_expert
    for without_expert in (
        dataclasses.replace(config.TRAINING_PRESETS["paper"], fused_loss=1.0),
        dataclasses.replace(fused_run, statistics_expert=False),
    ):
        with pytest.raises(ValueError, match="fused_loss 1.0: .* has no expert"):
            protocol.model_contract(without_expert, 64)
    for argv, expected in ((["trainer"], 0.0), (["trainer", "--fused_loss", "0.5"], 0.5)):
        common.FLAGS(argv)
        try:
            assert common.train_config("multiclass").fused_loss == expected
        finally:
            common.FLAGS.unparse_flags()


def model_config_of_tiny():
    return taonet.TAONetConfig(backbone=TINY, gru_layers=2, gru_units=8, aggregation="add")


@pytest.mark.parametrize("aggregation", ["last", "add", "mean"])
@pytest.mark.parametrize("use_dt", [True, False])
def test_the_temporal_head_is_read_from_layer_types(aggregation, use_dt):
    model = tiny_taonet(aggregation=aggregation, use_dt=use_dt, gru_layers=3)
    grus = taonet.recurrent_layers(model)
    assert [g.name for g in grus] == ["gru1", "gru2", "gru3"]  # in the order they run
    assert taonet.aggregation_of(model) == aggregation
    assert taonet.uses_dt(model) == use_dt
    renamed = keras.Model(model.inputs, model.outputs)
    for i, layer in enumerate(renamed.layers):
        layer.name = f"anything_{i}"  # names carry no meaning
    assert taonet.aggregation_of(renamed) == aggregation and taonet.uses_dt(renamed) == use_dt
    assert len(taonet.recurrent_layers(renamed)) == 3
