"""The model contract: one typed value from the trainer to the SavedModel and back."""

import dataclasses
import json

import pytest

from tao_keras import contract
from tao_keras.models import densenet, presets, taonet
from tao_keras.pipeline import datasets


def tiny_contract(**changes):
    architecture = taonet.TAONetConfig(
        backbone=densenet.DenseNetConfig(growth_rate=4, depth=10, roi_size=16),
        gru_layers=1,
        gru_units=8,
        aggregation="mean",
    )
    return contract.ModelContract(architecture, roi_size=64, **changes)


def test_a_contract_survives_the_disk_as_the_same_type(tmp_path):
    original = tiny_contract(per_date="coadd", normalization="image", sequence_length=7)
    contract.save(original, tmp_path / "contract.json")
    loaded = contract.load(tmp_path / "contract.json")
    assert isinstance(loaded, contract.ModelContract)
    assert isinstance(loaded.architecture.backbone, densenet.DenseNetConfig)
    assert loaded == original
    assert loaded.model_roi_size == 16 and loaded.class_names[-1] == "NT"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda v: v.update(per_date="median"), "per_date 'median'"),
        (lambda v: v.update(colour="red"), r"unknown field\(s\) \['colour'\]"),
        (lambda v: v["architecture"].update(gru_cells=3), "architecture: unknown field"),
        (lambda v: v.update(version=99), "version 99"),
        (lambda v: v.update(roi_size=8), "roi_size 8 smaller than the model's 16"),
        (lambda v: v.pop("architecture"), "field 'architecture' missing"),
        (lambda v: v.update(bands=2), "only 1 band"),
    ],
)
def test_a_bad_contract_file_is_named_with_its_field(tmp_path, edit, message):
    values = contract.to_dict(tiny_contract())
    edit(values)
    path = tmp_path / "contract.json"
    path.write_text(json.dumps(values))
    with pytest.raises(contract.ContractError, match=message) as caught:
        contract.load(path)
    assert str(path) in str(caught.value)


def test_a_model_is_checked_against_its_contract_by_layer_types():
    agreed = tiny_contract()
    model = taonet.build_taonet(agreed.architecture, len(agreed.class_names))
    contract.check_model(agreed, model)  # no error
    other = dataclasses.replace(agreed.architecture, gru_units=12, aggregation="add")
    with pytest.raises(contract.ContractError, match="GRU widths \\[8\\], contract 12") as caught:
        contract.check_model(dataclasses.replace(agreed, architecture=other), model)
    assert "aggregation mean, contract add" in str(caught.value)
    triplets = densenet.build_densenet(agreed.architecture.backbone, 6)  # stage 1's model
    contract.check_model(agreed, triplets)  # its backbone and classes agree; no GRUs to check
    binary = dataclasses.replace(agreed, task="supernova")
    with pytest.raises(contract.ContractError, match="6 classes, task supernova has 2"):
        contract.check_model(binary, model)


def test_the_pipeline_takes_the_model_side_of_the_contract():
    agreed = tiny_contract(per_date="coadd", normalization="image", stride=2)
    config = datasets.for_contract(agreed, mode="sequence", batch_size=3)
    assert (config.per_date, config.normalization, config.model_roi_size, config.stride) == (
        "coadd",
        "image",
        16,
        2,
    )
    assert config.task == agreed.task and config.batch_size == 3


def test_the_trainer_builds_the_contract_from_its_settings():
    from tao_keras.training import config as train_config
    from tao_keras.training import protocol

    settings = dataclasses.replace(
        train_config.TRAINING_PRESETS["cpu"], aggregation="last", model_roi_size=32
    )
    built = protocol.model_contract(settings, 64)
    assert built.architecture.aggregation == "last" and built.model_roi_size == 32
    assert built.architecture.gru_units == presets.preset("cpu").gru_units
    assert (built.per_date, built.normalization, built.roi_size) == ("coadd", "object", 64)
    assert built.sequence_length is None  # every stage is scored and served on whole sequences
    with pytest.raises(contract.ContractError, match="roi_size 16 smaller than the model's 32"):
        protocol.model_contract(settings, 16)


def test_the_photometry_statistics_setting_and_its_pixels_only_switch():
    from tao_keras.training import config as train_config
    from tao_keras.training import protocol

    base = train_config.TRAINING_PRESETS["cpu"]
    default = protocol.model_contract(base, 64).architecture
    assert default.photometry and default.photometry_statistics  # the cpu preset's
    pixels = dataclasses.replace(base, photometry=False)
    assert not protocol.model_contract(pixels, 64).architecture.photometry_statistics
    assert not protocol.model_contract(
        dataclasses.replace(base, photometry_statistics=False), 64
    ).architecture.photometry_statistics
    with pytest.raises(ValueError, match="photometry_statistics.*need.*photometry on"):
        dataclasses.replace(base, photometry=False, photometry_statistics=True)
    with pytest.raises(ValueError, match="needs the photometry input"):
        dataclasses.replace(presets.preset("paper"), photometry_statistics=True)
    # the DenseNet on triplets reads neither: a pixels-only run's stage 1 is reused
    assert protocol._settings(pixels, "densenet") == protocol._settings(base, "densenet")
    assert protocol._contract_part(
        protocol.model_contract(pixels, 64), "densenet"
    ) == protocol._contract_part(protocol.model_contract(base, 64), "densenet")
    assert protocol._settings(pixels, "gru") != protocol._settings(base, "gru")


def test_the_von_neumann_ratio_setting_follows_the_statistics():
    from tao_keras.training import config as train_config
    from tao_keras.training import protocol

    base = train_config.TRAINING_PRESETS["cpu"]
    eta = dataclasses.replace(base, photometry_eta=True)
    assert protocol.model_contract(eta, 64).architecture.photometry_eta
    # turning the photometry or its statistics off turns the ratio off, unless asked for
    for off in ({"photometry": False}, {"photometry_statistics": False}):
        built = protocol.model_contract(dataclasses.replace(base, **off), 64).architecture
        assert not built.photometry_eta and not built.photometry_statistics
        with pytest.raises(ValueError, match="photometry_eta.*needs photometry and"):
            dataclasses.replace(base, photometry_eta=True, **off)
    with pytest.raises(ValueError, match="photometry_eta.*needs photometry_statistics"):
        dataclasses.replace(presets.preset("cpu"), photometry_statistics=False, photometry_eta=True)
    # a model built with the ratio is refused by a contract without it, and back
    with_eta = protocol.model_contract(eta, 64)
    model = taonet.build_taonet(with_eta.architecture, 6)
    assert taonet.uses_photometry_eta(model)
    contract.check_model(with_eta, model)
    without = dataclasses.replace(
        with_eta, architecture=dataclasses.replace(with_eta.architecture, photometry_eta=False)
    )
    with pytest.raises(contract.ContractError, match="von Neumann ratio"):
        contract.check_model(without, model)
    # the DenseNet on triplets does not read it: stage 1 is reused
    assert protocol._settings(eta, "densenet") == protocol._settings(base, "densenet")
    assert protocol._settings(eta, "gru") != protocol._settings(base, "gru")


def test_the_statistics_expert_setting_follows_the_statistics():
    from tao_keras.training import config as train_config
    from tao_keras.training import protocol

    base = train_config.TRAINING_PRESETS["cpu"]
    with_expert = dataclasses.replace(base, statistics_expert=True)
    assert protocol.model_contract(with_expert, 64).architecture.statistics_expert
    # turning the photometry or its statistics off turns the expert off, unless asked for
    for off in ({"photometry": False}, {"photometry_statistics": False}):
        built = protocol.model_contract(dataclasses.replace(base, **off), 64).architecture
        assert not built.statistics_expert
        with pytest.raises(ValueError, match="statistics_expert.*needs photometry and"):
            dataclasses.replace(base, statistics_expert=True, **off)
    # a model built with the expert is refused by a contract without it, and back
    agreed = protocol.model_contract(with_expert, 64)
    model = taonet.build_taonet(agreed.architecture, 6)
    contract.check_model(agreed, model)
    without = dataclasses.replace(
        agreed, architecture=dataclasses.replace(agreed.architecture, statistics_expert=False)
    )
    with pytest.raises(contract.ContractError, match="statistics expert"):
        contract.check_model(without, model)
    with pytest.raises(contract.ContractError, match="statistics expert"):
        contract.check_model(agreed, taonet.build_taonet(without.architecture, 6))
    # and so is one of other members; a contract written before members existed reads as one
    assert agreed.architecture.expert_members == 5  # the cpu preset's
    three = dataclasses.replace(agreed.architecture, expert_members=3)
    with pytest.raises(contract.ContractError, match="3 statistics expert members, contract 5"):
        contract.check_model(agreed, taonet.build_taonet(three, 6))
    older = contract.to_dict(agreed)
    del older["architecture"]["expert_members"]
    one = contract.from_dict(older)
    assert one.architecture.expert_members == 1
    contract.check_model(one, taonet.build_taonet(one.architecture, 6))
    # the DenseNet on triplets does not read it: stage 1 is reused
    fewer = dataclasses.replace(with_expert, expert_members=2)
    for other in (base, fewer):
        assert protocol._settings(with_expert, "densenet") == protocol._settings(other, "densenet")
        assert protocol._settings(with_expert, "gru") != protocol._settings(other, "gru")


def test_the_gru_stack_is_a_setting_that_leaves_stage_1_reusable():
    from tao_keras.training import config as train_config
    from tao_keras.training import protocol

    base = train_config.TRAINING_PRESETS["cpu"]
    wider = dataclasses.replace(base, gru_layers=2, gru_units=128)
    built = protocol.model_contract(wider, 64)
    assert (built.architecture.gru_layers, built.architecture.gru_units) == (2, 128)
    assert built.architecture.backbone == protocol.model_contract(base, 64).architecture.backbone
    # the DenseNet on triplets does not read the GRU stack: a kept run's stage 1 is reused
    assert protocol._settings(wider, "densenet") == protocol._settings(base, "densenet")
    assert protocol._settings(wider, "gru") != protocol._settings(base, "gru")
    sparser = dataclasses.replace(base, date_dropout=0.2)  # a sequence stage's augmentation
    assert protocol._settings(sparser, "densenet") == protocol._settings(base, "densenet")
    assert protocol._settings(sparser, "gru") != protocol._settings(base, "gru")
    assert protocol.pipeline_config(sparser, "joint", built).date_dropout == 0.2
    assert protocol.pipeline_config(sparser, "densenet", built).date_dropout == 0.0
    with pytest.raises(ValueError, match="gru_units 0: 1 or more"):
        dataclasses.replace(base, gru_units=0)
