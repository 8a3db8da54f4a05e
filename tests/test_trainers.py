"""trainers.multiclass end to end on the tiny converted survey: report, TensorBoard, SavedModel."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tao_keras import classes, run_layout
from tao_keras import contract as contract_module
from tao_keras.models import taonet
from tao_keras.training import protocol

from conftest import REPO, TINY_RUN_FLAGS, trainer_command


def tags(log_dir):
    found = set()
    for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
        accumulator = EventAccumulator(path, size_guidance={"tensors": 0, "scalars": 0})
        accumulator.Reload()
        found |= set(accumulator.Tags()["tensors"]) | set(accumulator.Tags()["scalars"])
    return found


@pytest.fixture(scope="module")
def run_dir(trained_run):
    return trained_run


def test_report_has_every_stage_and_split(run_dir):
    report = json.load(open(run_dir / "report.json"))
    assert report["task"] == "multiclass" and report["class_names"] == list(classes.CLASS_NAMES)
    assert list(report["results"]) == list(protocol.MODEL_NAMES.values())
    for scores in report["results"].values():
        val = scores["val"]
        assert set(val["f1"]) == set(classes.CLASS_NAMES)
        assert 0.0 <= val["mean_f1"] <= 1.0
        assert np.array(val["confusion_matrix"]).sum() == sum(val["support"].values())
    text = (run_dir / "report.md").read_text()
    assert "| model | BZ | AGN | CV | OTHER | SN | NT | mean ± std |" in text


def test_report_has_f1_versus_nights_for_the_tao_net_stages(run_dir):
    from tfrecords import manifest as manifest_file
    from tfrecords import parser

    report = json.load(open(run_dir / "report.json"))
    early = report["early_f1"]
    assert list(early) == [protocol.MODEL_NAMES["gru"], protocol.MODEL_NAMES["joint"]]
    records_dir = report["records"]
    shards = manifest_file.shards(manifest_file.load(records_dir), records_dir, "val")
    longest = max(r.num_dates for r in parser.read_records([p for p, _, _ in shards]))
    for model, by_split in early.items():
        val = by_split["val"]
        assert list(val) == ["3", "5", "7", "10", "15", "20", "all"]
        assert val["all"]["mean_f1"] == pytest.approx(report["results"][model]["val"]["mean_f1"])
        # N at least every object's number of dates is the whole sequence
        for n in ("3", "5", "7", "10", "15", "20"):
            if int(n) >= longest:
                assert val[n] == val["all"]
    text = (run_dir / "report.md").read_text()
    assert "## F1 versus nights observed" in text and "| model | N=3 | N=5 |" in text
    assert (run_dir / "early_f1.png").stat().st_size > 10_000
    assert "early_mean_f1/val" in tags(str(run_dir / "logs" / "joint" / "evaluation"))


def test_each_stage_keeps_its_best_epoch_as_model_and_score(run_dir):
    report = json.load(open(run_dir / "report.json"))
    for stage in protocol.STAGES:
        with open(run_dir / stage / "history.csv") as f:
            history = [float(row["val_mean_f1"]) for row in csv.DictReader(f)]
        reported = report["results"][protocol.MODEL_NAMES[stage]]["val"]["mean_f1"]
        # the saved model is the best epoch's: scored again, it gives the history's best value
        assert reported == pytest.approx(max(history), abs=1e-6)
        saved = json.load(open(run_dir / stage / "scores.json"))["scores"]["val"]["mean_f1"]
        assert saved == pytest.approx(reported)


def test_tensorboard_has_losses_and_f1(run_dir):
    found = tags(str(run_dir / "logs" / "joint"))
    agreed = contract_module.load(run_layout.stage_file(run_dir, "joint", run_layout.CONTRACT))
    # with the statistics expert (the cpu preset; fitted apart, so without a loss here) the
    # GRU's classifier has the final loss
    final = taonet.HEAD_OUTPUT if agreed.architecture.statistics_expert else "probabilities"
    assert {
        "epoch_loss",
        f"epoch_{final}_loss",
        "epoch_aux_probabilities_loss",
        "mean_f1",
        "f1/NT",
    } <= found, found
    assert f"epoch_{taonet.EXPERT_OUTPUT}_loss" not in found
    assert {"epoch_loss", "mean_f1"} <= tags(str(run_dir / "logs" / "densenet"))


def test_training_ends_with_an_exported_savedmodel(run_dir):
    loaded = tf.saved_model.load(str(run_dir / "export" / "taonet_multiclass" / "1"))
    assert {"serving_default", "serialized", "metadata"} <= set(loaded.signatures)
    assert json.loads(loaded.metadata()["json"].numpy())["training_config"]["stage"] == "joint"


def test_tensorboard_has_pr_curves_confusion_examples_and_hparams(run_dir):
    log_dir = str(run_dir / "logs" / "joint" / "evaluation")
    found = tags(log_dir)
    assert {
        "pr_curve/BZ/pr_curves",
        "pr_curve/NT/pr_curves",
        "confusion_matrix",
        "kept_model/confusion_matrix",
        "kept_model/examples",
        "_hparams_/session_start_info",
    } <= found
    path = glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))[0]
    accumulator = EventAccumulator(path, size_guidance={"tensors": 0})
    accumulator.Reload()
    assert (
        accumulator.SummaryMetadata("pr_curve/NT/pr_curves").plugin_data.plugin_name == "pr_curves"
    )
    assert (
        accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.plugin_name
        == "hparams"
    )
    assert "epoch_learning_rate" in tags(str(run_dir / "logs" / "joint"))


def test_confusion_figure_names_classes_and_writes_counts():
    from tao_keras.training import figures

    fig = figures.confusion_figure([[3, 1], [0, 0]], ["SN", "NT"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SN", "NT"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["SN", "NT"]
    assert sorted(t.get_text() for t in ax.texts) == ["0\n0%", "0\n0%", "1\n25%", "3\n75%"]
    shades = ax.images[0].get_array()
    np.testing.assert_allclose(shades, [[0.75, 0.25], [0.0, 0.0]])  # rows normalized
    image = figures.confusion_image([[3, 1], [0, 0]], ["SN", "NT"])
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


def test_example_strips_show_every_date_in_grey_with_days():
    from tao_keras.training import figures

    rng = np.random.default_rng(0)
    sequence = rng.normal(size=(1, 4, 8, 8, 3)).astype(np.float32)  # 4 steps over 6 dates
    dates = np.stack([rng.normal(size=(8, 8)) for _ in range(6)]).astype(np.float32)
    for k in range(4):
        sequence[0, k] = np.moveaxis(dates[k : k + 3], 0, -1)
    dt = np.full((1, 4, 2), 10 / 365.25, np.float32)
    per_date, days = figures.example_dates(sequence, dt)
    np.testing.assert_array_equal(per_date[0], dates)
    np.testing.assert_allclose(days[0], [0, 10, 20, 30, 40, 50], atol=1e-4)
    strip = figures.example_strip(per_date[0])
    assert strip.shape == (8, 6 * 8 + 5 * 2) and 0.0 <= strip.min() and strip.max() <= 1.0
    # one stretch for the whole strip: a brighter date stays brighter
    bright = per_date[0].copy()
    bright[2] += 5.0
    strip = figures.example_strip(bright)
    assert strip[:, 2 * 10 : 2 * 10 + 8].mean() > strip[:, :8].mean()


def test_killed_training_resumes_where_it_stopped(tiny_records, tmp_path):
    import csv
    import signal
    import time

    records, _ = tiny_records
    out = tmp_path / "resume"
    command = trainer_command(
        records,
        out,
        "--stages",
        "densenet",
        "--epochs_densenet",
        "5",
        "--batch_size",
        "4",
        "--epoch_fraction",
        "6",
    )
    history = out / "densenet" / "history.csv"

    def epochs_logged():
        if not history.exists():
            return []
        with open(history) as f:
            return [int(row["epoch"]) for row in csv.DictReader(f)]

    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(epochs_logged()) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = epochs_logged()
    assert 2 <= len(done_before) < 5, f"kill landed outside the run: epochs {done_before}"
    assert (out / "densenet" / "backup").exists()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=600)
    logged = epochs_logged()
    resumed = logged[len(done_before) :]
    assert resumed and resumed[0] >= done_before[-1]  # not restarted from epoch 0
    assert set(logged) == set(range(5)) and logged[-1] == 4  # every epoch, ending at the last
    assert (out / "report.json").exists()


def test_binary_finetunes_from_multiclass_with_frozen_gru(run_dir, tmp_path):
    import keras

    out = tmp_path / "binary"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.supernova",
            "--data",
            str(json.load(open(run_dir / "config.json"))["records"]),
            "--output",
            str(out),
            "--init_from",
            str(run_dir),
            "--stages",
            "joint",
            "--epochs_joint",
            "1",
            "--batch_size",
            "2",
            "--sequence_length",
            "5",
            "--learning_rate_scale",
            "0.1",
            "--freeze",
            "recurrent",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    report = json.load(open(out / "report.json"))
    assert report["class_names"] == ["SN", "NT"]
    # the RF on the same records first; early F1 for it and the finetuned TAO-Net
    assert list(report["results"])[0] == "Random Forest (light curves)"
    assert set(report["early_f1"]) == {
        "Random Forest (light curves)",
        "TAO-Net, joint + double supervision",
    }
    assert (out / "early_f1.png").exists()
    rf = "Random Forest (light curves)"
    for split, by_nights in report["early_f1"][rf].items():
        assert by_nights["all"]["mean_f1"] == report["results"][rf][split]["mean_f1"]
    source = keras.saving.load_model(str(run_dir / "joint" / "model.keras"))
    tuned = keras.saving.load_model(str(out / "joint" / "model.keras"))
    for a, b in zip(source.get_layer("gru1").get_weights(), tuned.get_layer("gru1").get_weights()):
        np.testing.assert_array_equal(a, b)  # frozen and carried over
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(
            source.get_layer("stepwise_backbone").get_weights(),
            tuned.get_layer("stepwise_backbone").get_weights(),
        )
    ]
    assert any(moved)  # the backbone was finetuned
    assert taonet.final_classifier(tuned).get_weights()[0].shape[-1] == 2


def test_batchnorm_is_synchronized_only_across_several_replicas():
    import keras

    from tao_keras.training import config as train_config

    for replicas, expected in ((1, False), (2, True)):
        config = train_config.TrainConfig()
        contract = protocol.model_contract(config, 64)
        model = protocol.build_model("joint", config, contract, None, replicas)
        norms = [
            layer
            for layer in protocol.taonet.backbone_of(model).layers
            if isinstance(layer, keras.layers.BatchNormalization)
        ]
        assert norms and all(layer.synchronized == expected for layer in norms)


def images_of(log_dir, tag):
    """The images (decoded PNGs) of a TensorBoard image summary, last event of the tag."""
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        accumulator = EventAccumulator(path, size_guidance={"tensors": 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["tensors"]:
            encoded = tf.make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto)[2:]
            return [tf.io.decode_png(e).numpy() for e in encoded]
    raise AssertionError(f"no {tag} in {log_dir}")


def test_tensorboard_shows_the_kept_model_and_one_example_per_class(run_dir):
    report = json.load(open(run_dir / "report.json"))
    joint = report["results"][protocol.MODEL_NAMES["joint"]]["val"]
    log_dir = str(run_dir / "logs" / "joint" / "evaluation")
    strips = images_of(log_dir, "kept_model/examples")
    present = [c for c, n in joint["support"].items() if n > 0]
    assert len(strips) == len(present)  # one strip per class of the validation split
    assert all(s.ndim == 3 and s.shape[-1] == 3 and s.shape[0] > 60 for s in strips)
    # the kept model's confusion matrix: the best epoch's, the one the report gives
    assert images_of(log_dir, "kept_model/confusion_matrix")[0].shape[-1] == 3


def test_report_shows_chance_decisions_intervals_and_calibration(run_dir):
    report = json.load(open(run_dir / "report.json"))
    text = (run_dir / "report.md").read_text()
    for model, by_split in report["results"].items():
        for split, r in by_split.items():
            assert {"accuracy", "macro_f1", "chance_mean_f1", "chance_mean_f1_p95"} <= set(r)
            assert 0.0 < r["chance_mean_f1"] < 1.0
            interval = report["intervals"][split][model]["ci"]
            assert interval[0] <= interval[1]
        assert report["calibration"][model]["temperature"] > 0
    # the tiny survey's splits hold a few objects per class: the report says so
    assert "> **Warning** — Validation set: fewer than 10 objects of" in text
    assert "| model | mean max-F1 | 95% CI | chance |" in text and "## Calibration" in text
    for model in report["results"]:
        assert (run_dir / reports_module().reliability_png_name(model)).exists()
    joint = json.load(open(run_dir / "joint" / "scores.json"))
    val = joint["predictions"]["val"]
    assert (
        len(val["object_id"])
        == len(val["label"])
        == sum(report["results"][protocol.MODEL_NAMES["joint"]]["val"]["support"].values())
    )


def reports_module():
    from tao_keras.training import reports

    return reports


def test_the_exported_model_carries_the_fitted_temperature(run_dir, served):
    fitted = json.load(open(run_dir / "joint" / "scores.json"))["temperature"]
    metadata = json.loads(served.metadata()["json"].numpy())
    assert metadata["calibration"]["temperature"] == pytest.approx(fitted)
    assert fitted != 1.0  # a real fit, not the default


def test_same_command_same_seed_same_numbers(trained_run, tiny_records, tmp_path):
    """Reproducible runs: the trained_run fixture's command again, into another directory."""
    records, _ = tiny_records
    again = tmp_path / "again"
    subprocess.run(
        trainer_command(records, again, *TINY_RUN_FLAGS),
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    first, second = (json.load(open(d / "report.json")) for d in (trained_run, again))
    for key in ("results", "early_f1", "intervals", "calibration", "predictions"):
        assert first[key] == second[key], key


def test_the_stage_table_is_the_run_layouts_stages_in_order():
    from tao_keras import run_layout
    from tao_keras.training import config

    assert tuple(config.STAGES) == run_layout.STAGES
    assert [s.on_sequences for s in config.STAGES.values()] == [False, True, True]
    assert [s.name for s in config.STAGES.values() if s.auxiliary_loss] == ["joint"]
    with pytest.raises(ValueError, match="unknown stage 'finetune'"):
        config.stage("finetune")
