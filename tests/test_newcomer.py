"""A newcomer's first hour: the usual mistakes give one line and a non-zero exit (no
traceback), --help shows a command's own flags, the console scripts exist, and the Python API
classifies and replays arrays."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tao_keras

from conftest import REPO, pack

TRACEBACK = "Traceback"


def run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def refused(result, *expected):
    """The command failed with one last stderr line holding every expected part."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert TRACEBACK not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    for part in expected:
        assert part in line, line
    return line


@pytest.fixture
def empty_dir(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_trainer_on_an_empty_folder_is_one_line(empty_dir, tmp_path):
    refused(
        run("trainers.multiclass", "--data", str(empty_dir), "--output", str(tmp_path / "r")),
        "error:",
        str(empty_dir),
    )


def test_predict_mistakes_are_one_line(trained_run, empty_dir, tmp_path):
    def predict(model, data):
        return run(
            "tools.predict", "--model", model, "--data", data, "--output", str(tmp_path / "p.csv")
        )

    refused(predict(str(empty_dir), str(empty_dir)), "--model")
    refused(predict(str(trained_run), str(tmp_path / "nowhere")), "--data", "not a directory")
    fits = tmp_path / "fits"
    (fits / "images").mkdir(parents=True)  # a FITS folder without catalog.csv
    refused(predict(str(trained_run), str(fits)), "error:")
    (empty_dir / "none.tfrecord").write_bytes(b"")  # records, but no object in them
    refused(
        predict(str(trained_run), str(empty_dir)),
        "no object of",
        "could be classified",
    )


def test_replay_mistakes_are_one_line(trained_run, empty_dir, tmp_path):
    refused(
        run("tools.replay_nights", "--model", str(trained_run), "--records", str(tmp_path / "x")),
        "--records",
        "no such file",
    )
    refused(
        run("tools.replay_nights", "--model", str(trained_run), "--records", str(empty_dir)),
        "--records",
    )
    refused(run("tools.replay_nights", "--model", str(empty_dir), "--data", str(empty_dir)))


def test_converter_export_and_compare_mistakes_are_one_line(empty_dir, tmp_path):
    refused(
        run(
            "tools.fits_to_tfrecords",
            "--data",
            str(tmp_path / "nowhere"),
            "--output",
            str(tmp_path / "out"),
        ),
        str(tmp_path / "nowhere"),
    )
    refused(
        run("tools.export_savedmodel", "--model", str(empty_dir), "--output", str(tmp_path / "e")),
        "config.json",
        "must be a directory written by a trainer",
    )
    refused(run("tools.compare", str(empty_dir)), "report.json")


def test_models_are_found_from_a_run_an_export_or_a_version(trained_run, objects, tmp_path):
    records_dir, _, _ = objects
    export = trained_run / "export" / "taonet_multiclass"
    for model in (trained_run, export, export / "1"):
        out = tmp_path / f"nights-{len(str(model))}.csv"
        result = run(
            "tools.replay_nights",
            "--model",
            str(model),
            "--data",
            str(records_dir),
            "--max_objects",
            "1",
            "--output",
            str(out),
        )
        assert result.returncode == 0, result.stderr[-2000:]
        header = out.read_text().splitlines()[0]
        assert header.startswith("object_id,night,mjd,num_dates,class,p_BZ")


def test_help_lists_the_commands_own_flags():
    shown = run("trainers.multiclass", "--help").stdout
    for flag in ("--data", "--output", "--preset", "--stages", "--[no]deterministic", "--seed"):
        assert flag in shown, flag
    assert "--tpu" not in shown and "--pdb" not in shown  # absl's and TensorFlow's stay hidden
    replay = run("tools.replay_nights", "--help").stdout
    assert "--data" in replay and "--max_objects" in replay and "--pdb_post_mortem" not in replay


def test_console_scripts_are_installed_for_every_command():
    import ast
    import configparser
    import shutil

    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    scripts = dict(
        line.split(" = ")
        for line in config["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    assert scripts["tao-train-multiclass"] == "trainers.multiclass:cli"
    for name, target in scripts.items():
        module, function = target.split(":")
        source = open(os.path.join(REPO, *module.split(".")) + ".py").read()
        defined = {f.name for f in ast.parse(source).body if isinstance(f, ast.FunctionDef)}
        assert function in defined, target
        assert shutil.which(name), f"{name} is not installed (pip install -e .)"
    shown = subprocess.run(
        ["tao-replay", "--help"], capture_output=True, text=True, timeout=300
    ).stdout
    assert "--max_objects" in shown
    metadata = config["metadata"]
    assert metadata["author"] and "arxiv.org/abs/2004.13877" in metadata["project_urls"]


def test_python_api_classifies_and_replays_arrays(trained_run, objects):
    _, _, records = objects
    model = tao_keras.load(str(trained_run))
    assert model.class_names == ["BZ", "AGN", "CV", "OTHER", "SN", "NT"]
    images, mjd, counts = pack(records[:3], pad=1)
    out = model.classify(images, mjd, counts)
    assert out["probabilities"].shape == (3, 6)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    assert list(out["class_name"]) == [model.class_names[i] for i in out["class_id"]]
    nights = model.replay(images, mjd, counts)
    np.testing.assert_allclose(nights["probabilities"][-1], out["probabilities"], atol=1e-5)
    one = model.classify(images[0, : counts[0]], mjd[0, : counts[0]])  # one object, no batch
    np.testing.assert_allclose(one["probabilities"][0], out["probabilities"][0], atol=1e-5)
    with pytest.raises(ValueError, match="64x64 cutouts"):
        model.classify(images[:, :, :32, :32], mjd)
    metadata = json.loads(model.saved_model.metadata()["json"].numpy())
    assert metadata == model.metadata
    # the contract the trainer saved with the joint model comes back as the same value
    from tao_keras import contract

    assert model.contract == contract.load(trained_run / "joint" / "contract.json")
    assert model.contract.roi_size == 64 and model.contract.task == "multiclass"
    del metadata["contract"]
    with pytest.raises(contract.ContractError, match="exported without a model contract"):
        tao_keras.api.exported_contract(metadata, "old-export")


def test_a_failed_learning_curve_run_is_one_line_naming_its_log(tmp_path):
    from tools import learning_curve

    (tmp_path / "runs").mkdir()
    with pytest.raises(learning_curve.RunFailed) as failed:
        learning_curve.taonet(
            str(tmp_path / "records"), str(tmp_path / "runs" / "taonet"), 1, 0, "--no_such_flag"
        )
    message = str(failed.value)
    assert "\n" not in message and str(tmp_path / "runs" / "taonet.log") in message
    assert "no_such_flag" in message  # the log's last line says what went wrong


def test_sequence_length_below_one_triplet_is_one_line(tiny_records, tmp_path):
    records, _ = tiny_records
    line = refused(
        run(
            "trainers.multiclass",
            "--data",
            str(records),
            "--output",
            str(tmp_path / "r"),
            "--sequence_length",
            "2",
        ),
        "--sequence_length 2",
    )
    assert "0 (every date)" in line


@pytest.mark.parametrize("given, expected", [(None, "preset"), ("0", None), ("7", 7)])
def test_sequence_length_flag_defaults_to_the_preset_and_zero_means_every_date(given, expected):
    from tao_keras.training import config
    from trainers import common

    argv = ["trainer", "--preset", "cpu", *([] if given is None else ["--sequence_length", given])]
    common.FLAGS(argv)
    try:
        found = common.train_config("multiclass").sequence_length
    finally:
        common.FLAGS.unparse_flags()
    if expected == "preset":
        expected = config.TRAINING_PRESETS["cpu"].sequence_length
    assert found == expected
