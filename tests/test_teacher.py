"""Distillation from the light-curve forest (lightcurves.teacher, TrainConfig.teacher_weight):
out-of-fold probabilities, the mixed targets, the training batches that carry them, the joint
stage's loss on them, and the settings that keep a kept run's first stages reusable."""

import dataclasses
import subprocess

import keras
import numpy as np
import pytest

from tao_keras import classes
from tao_keras.lightcurves import baseline, teacher
from tao_keras.lightcurves import curves as curve_io
from tao_keras.lightcurves.curves import LightCurve
from tao_keras.models import taonet
from tao_keras.pipeline import datasets
from tao_keras.training import config, protocol

from conftest import REPO, TINY_RUN_FLAGS, trainer_command

NAMES = classes.task_class_names("multiclass")


def _curves(per_class=6, dates=12, seed=3):
    """Training curves whose scatter grows with the class (a forest separates them), a short
    one that must get no teacher row, and a validation curve that must be left out."""
    rng = np.random.default_rng(seed)
    out = []
    for label in range(len(NAMES)):
        for k in range(per_class):
            t = np.sort(rng.uniform(0, 900, dates))
            mag = 17 + rng.normal(0, 0.05 + 0.3 * label, dates)
            out.append(LightCurve(f"c{label}-{k}", label, "train", t, mag, np.full(dates, 0.05)))
    t = np.arange(3.0)
    out.append(LightCurve("short", 0, "train", t, np.full(3, 17.0), np.full(3, 0.05)))
    out.append(LightCurve("held", 1, "val", np.arange(8.0), np.full(8, 17.0), np.full(8, 0.05)))
    return out


def test_every_training_object_is_scored_by_a_forest_that_did_not_see_it(monkeypatch):
    curves = _curves()
    fitted_sets, real_fit = [], baseline.fit

    def spying_fit(train_curves, labels, num_classes, trees=200, seed=0):
        fitted_sets.append({id(c[0]) for c in train_curves})
        fold = len(fitted_sets)
        forest = real_fit(train_curves, labels, num_classes, 10, seed)

        class Marked:  # probabilities that say which fold's forest gave them
            def predict_proba(self, features):
                rows = np.zeros((len(features), num_classes))
                rows[:, 0] = fold
                return rows

        assert forest is not None
        return Marked()

    monkeypatch.setattr(baseline, "fit", spying_fit)
    ids, labels, probabilities = teacher.out_of_fold(curves, "multiclass", folds=3, trees=10)
    by_id = {c.object_id: c for c in curves}
    assert sorted(ids) == sorted(c.object_id for c in curves[:-2])  # not short, not val
    assert len(fitted_sets) == 3
    for object_id, label, row in zip(ids, labels, probabilities):
        fold = int(row[0])
        assert 1 <= fold <= 3
        assert id(by_id[object_id].arrays()[0]) not in fitted_sets[fold - 1]
        assert label == by_id[object_id].label
    # each object was held out by exactly one fold
    held = [sum(id(by_id[i].mjd) not in s for s in fitted_sets) for i in ids]
    assert held == [1] * len(ids)


def test_out_of_fold_probabilities_are_rows_of_a_real_forest_and_repeat_per_seed():
    curves = _curves()
    ids, labels, first = teacher.out_of_fold(curves, "multiclass", folds=3, trees=20, seed=1)
    _, _, again = teacher.out_of_fold(curves, "multiclass", folds=3, trees=20, seed=1)
    assert first.shape == (len(ids), len(NAMES))
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    np.testing.assert_array_equal(first, again)
    # the classes differ by their scatter: the held-out forests mostly get them right
    assert (first.argmax(axis=1) == labels).mean() > 0.5


def test_a_class_with_one_training_curve_is_refused_naming_the_task():
    curves = [c for c in _curves() if not c.object_id.startswith("c2-") or c.object_id == "c2-0"]
    with pytest.raises(
        teacher.NoTeacher, match="task multiclass: a class has 1 training light curve"
    ):
        teacher.out_of_fold(curves, "multiclass")


def test_the_targets_mix_the_label_and_the_teacher_and_keep_the_label_first():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(6) * 0.3, size=50)
    labels = rng.integers(0, 6, 50)
    _, plain = teacher.soft_targets(range(50), labels, probabilities, 0.0)
    np.testing.assert_array_equal(plain, np.eye(6)[labels])
    _, mixed = teacher.soft_targets(range(50), labels, probabilities, 0.5)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mixed, 0.5 * np.eye(6)[labels] + 0.5 * probabilities, rtol=1e-6)
    assert (mixed.argmax(axis=1) == labels).all()
    with pytest.raises(ValueError, match="teacher weight 1.0"):
        teacher.soft_targets(range(50), labels, probabilities, 1.0)


def _sequence_config(seed=0):
    return datasets.PipelineConfig(
        mode="sequence", sequence_length=5, batch_size=4, deterministic=True, seed=seed
    )


def _train_objects(records):
    """(ids, labels) of the training split of the tiny records."""
    cfg = dataclasses.replace(_sequence_config(), augment=False)
    ids = datasets.evaluation_object_ids(records, cfg, "train")
    labels = np.concatenate(
        [y for _, y in datasets.evaluation_dataset(records, cfg, "train").as_numpy_iterator()]
    )
    return ids, labels


def test_training_batches_carry_each_object_s_row_or_its_one_hot_label(tiny_records):
    records, _ = tiny_records
    ids, labels = _train_objects(records)
    rows = 0.5 * np.eye(6)[labels] + 0.5 * np.eye(6)[(labels + 1) % 6]
    train, _ = datasets.training_dataset(records, _sequence_config(), soft_targets=(ids, rows))
    for features, target in train.take(4).as_numpy_iterator():
        label, soft = target["label"], target["soft"]
        assert soft.shape == (len(label), 6)
        expected = 0.5 * np.eye(6)[label] + 0.5 * np.eye(6)[(label + 1) % 6]
        np.testing.assert_allclose(soft, expected)
    strangers = (["not-an-object"], np.full((1, 6), 1 / 6))
    train, _ = datasets.training_dataset(records, _sequence_config(), soft_targets=strangers)
    for _, target in train.take(2).as_numpy_iterator():
        np.testing.assert_array_equal(target["soft"], np.eye(6)[target["label"]])


def test_soft_targets_of_another_task_s_width_are_refused(tiny_records):
    records, _ = tiny_records
    with pytest.raises(ValueError, match=r"expected \[1, 6\]"):
        datasets.training_dataset(
            records, _sequence_config(), soft_targets=(["a"], np.ones((1, 2)))
        )


def test_the_joint_stage_learns_the_soft_rows_and_the_auxiliary_head_the_labels(tiny_records):
    records, manifest = tiny_records
    train_config = config.TrainConfig(
        joint=config.StageConfig(epochs=1, learning_rate=1e-3, batch_size=4), sequence_length=5
    )
    contract = protocol.model_contract(train_config, manifest["roi_size"])
    ids, labels = _train_objects(records)
    pipeline = protocol.pipeline_config(train_config, "joint", contract)
    one_hot = (ids, np.eye(6, dtype="float32")[labels])
    shifted = (ids, np.eye(6, dtype="float32")[(labels + 1) % 6])
    losses, targets = {}, {}
    for name, soft in (("hard", None), ("one_hot", one_hot), ("shifted", shifted)):
        keras.utils.set_random_seed(0)  # the same batch and the same initial weights each time
        data, _ = datasets.training_dataset(records, pipeline, soft_targets=soft)
        x, targets[name] = next(iter(data.map(protocol.training_targets(contract.architecture))))
        model = protocol.build_model("joint", train_config, contract, None)
        protocol.compile_model(
            model, "joint", train_config, train_config.joint, 1, soft is not None
        )
        losses[name] = model.evaluate(x, targets[name], verbose=0, return_dict=True)["loss"]
        assert np.isfinite(model.train_on_batch(x, targets[name])).all()
    # the final output's loss: the GRU's classifier's when the statistics expert is fused with
    # it (the cpu preset; the expert, fitted apart, has no target here), and the auxiliary
    # head learns the labels
    final = taonet.HEAD_OUTPUT if contract.architecture.statistics_expert else "probabilities"
    labels = targets["hard"][final]
    for name in ("one_hot", "shifted"):
        np.testing.assert_array_equal(targets[name]["aux_probabilities"], labels)
        assert taonet.EXPERT_OUTPUT not in targets[name]
    np.testing.assert_array_equal(targets["shifted"][final], np.eye(6)[(labels + 1) % 6])
    assert losses["one_hot"] == pytest.approx(losses["hard"], rel=1e-4)
    assert losses["shifted"] != pytest.approx(losses["hard"], rel=1e-2)


def test_the_teacher_weight_leaves_the_first_stages_of_a_kept_run_reusable():
    base = config.TRAINING_PRESETS["cpu"]
    taught = dataclasses.replace(base, teacher_weight=0.5)
    for stage in ("densenet", "gru"):
        assert protocol._settings(taught, stage) == protocol._settings(base, stage)
    assert protocol._settings(taught, "joint") != protocol._settings(base, "joint")
    assert protocol.teacher_targets("unused", base, "joint") is None
    assert protocol.teacher_targets("unused", taught, "gru") is None
    with pytest.raises(ValueError, match="teacher_weight 1.0"):
        dataclasses.replace(base, teacher_weight=1.0)


def test_the_trainer_flag_sets_the_teacher_weight():
    from trainers import common

    for argv, expected in ((["trainer"], 0.0), (["trainer", "--teacher_weight", "0.5"], 0.5)):
        common.FLAGS(argv)
        try:
            assert common.train_config("multiclass").teacher_weight == expected
        finally:
            common.FLAGS.unparse_flags()


def test_the_trainer_refuses_a_teacher_on_records_without_one_before_training(
    tiny_records, tmp_path
):
    records, _ = tiny_records
    with pytest.raises(teacher.NoTeacher):  # the tiny survey has too few training curves
        teacher.out_of_fold(curve_io.of_records(records), "multiclass")
    out = tmp_path / "run"
    done = subprocess.run(
        trainer_command(records, out, *TINY_RUN_FLAGS, "--teacher_weight", "0.5"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {records}: --teacher_weight: task multiclass: a class has")
    assert not (out / "densenet").exists()  # nothing was trained
