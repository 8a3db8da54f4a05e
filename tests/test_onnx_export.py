"""The night-by-night update as ONNX: parity with the SavedModel, --verify, a stream run by
onnxruntime without TensorFlow (tao_keras.onnx_step, update_numpy, onnx_export)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from tao_keras import alert_state, contract, export, onnx_export, update_numpy
from tao_keras.models import presets, taonet

from conftest import REPO


@pytest.fixture(scope="module")
def onnx_export_dir(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-export")
    return export.export_run(str(trained_run), str(root), onnx=True)


def recorded(trained_run, limit=12):
    records = json.load(open(trained_run / "config.json"))["records"]
    return onnx_export.recorded_objects(records, "train", limit)


def test_the_trained_models_onnx_update_matches_the_savedmodel(onnx_export_dir, trained_run):
    objects = recorded(trained_run)
    result = onnx_export.verify(onnx_export_dir, objects)
    assert result["classes_identical"] and result["max_probability_difference"] <= 1e-4
    assert result["objects"] == len(objects) and result["nights"] > 5
    spec = json.load(open(f"{onnx_export_dir}/onnx/{update_numpy.SPEC}"))
    served = json.load(open(f"{onnx_export_dir}/assets.extra/tao_keras.json"))
    assert json.loads(spec["metadata"]) == served  # one model, one identity
    assert spec["temperature"] == pytest.approx(served["calibration"]["temperature"])


@pytest.mark.parametrize(
    "aggregation, per_date, normalization, statistics, eta, expert",
    [  # the trained run: mean, coadd
        ("add", "choose", "image", False, False, False),
        ("last", "coadd", "object", False, False, False),
        ("mean", "choose", "object", True, True, False),
        # the statistics expert (the von Neumann ratio its own, not the GRU's side's)
        ("mean", "coadd", "object", True, False, True),
    ],
)
def test_every_aggregation_and_rule_converts_exactly(
    trained_run, tmp_path, aggregation, per_date, normalization, statistics, eta, expert
):
    architecture = dataclasses.replace(
        presets.preset("cpu"),
        aggregation=aggregation,
        gru_layers=2,
        photometry=True,
        photometry_statistics=statistics,
        photometry_eta=eta,
        statistics_expert=expert,
    )
    agreed = contract.ModelContract(
        architecture, 64, per_date=per_date, normalization=normalization
    )
    model = taonet.build_taonet(architecture, 6)
    for layer in model.layers:  # non-trivial BatchNorm statistics, as after training
        if hasattr(layer, "moving_mean"):
            layer.moving_mean.assign(np.linspace(-0.2, 0.3, layer.moving_mean.shape[0]))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, layer.moving_variance.shape[0]))
    export.export_model(model, str(tmp_path / "m"), agreed, temperature=1.3, onnx=True)
    result = onnx_export.verify(str(tmp_path / "m"), recorded(trained_run, 6))
    assert result["classes_identical"] and result["max_probability_difference"] <= 1e-4


def test_verify_fails_loudly_when_the_runtimes_disagree(onnx_export_dir, trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(onnx_export_dir, copy)
    spec_path = copy / "onnx" / update_numpy.SPEC
    spec = json.load(open(spec_path))
    spec["temperature"] *= 3  # as if the numpy side were out of step with the graph
    spec_path.write_text(json.dumps(spec))
    with pytest.raises(onnx_export.VerificationError, match="disagrees with the SavedModel"):
        onnx_export.verify(str(copy), recorded(trained_run, 4))


def test_the_export_command_writes_and_verifies_the_onnx_update(trained_run, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.export_savedmodel",
            f"--run={trained_run}",
            f"--output={tmp_path}",
            "--onnx",
            "--verify",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "verified:" in done.stdout and "classes identical" in done.stdout
    assert (tmp_path / "taonet_multiclass" / "1" / "onnx" / update_numpy.STEP_MODEL).exists()


# The ONNX runtime's stream in a process where TensorFlow and Keras cannot be imported.
WITHOUT_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys
class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax"):
            return importlib.machinery.ModuleSpec(name, self)
    def create_module(self, spec):
        raise ImportError(spec.name + " is blocked: the ONNX runtime must not need it")
    def exec_module(self, module):
        raise ImportError(module.__name__ + " is blocked")
sys.meta_path.insert(0, Blocker())
from tools import stream_alerts
tally, _ = stream_alerts.stream(sys.argv[1], stream_alerts.alert_files([sys.argv[2]]),
                                sys.argv[3], sys.argv[4], 64, True, "onnx")
print("classified", tally.classified)
"""


def test_both_runtimes_give_the_same_stream_answers(onnx_export_dir, tiny_survey, tmp_path):
    from tools import stream_alerts
    from tools.simulation import alerts

    alerts.write_alerts(str(tiny_survey), str(tmp_path / "alerts"))
    files = stream_alerts.alert_files([str(tmp_path / "alerts")])
    stream_alerts.stream(
        onnx_export_dir, files, str(tmp_path / "saved.sqlite"), str(tmp_path / "saved.jsonl")
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_TENSORFLOW,
            onnx_export_dir,
            str(tmp_path / "alerts"),
            str(tmp_path / "onnx.sqlite"),
            str(tmp_path / "onnx.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    saved = alert_state.final_classes(_connect(tmp_path / "saved.sqlite"))
    onnx = alert_state.final_classes(_connect(tmp_path / "onnx.sqlite"))
    assert sorted(saved) == sorted(onnx)
    for object_id, (name, probabilities, dates) in saved.items():
        assert onnx[object_id][0] == name and onnx[object_id][2] == dates
        np.testing.assert_allclose(onnx[object_id][1], probabilities, atol=1e-4)
    query = "SELECT candid, class_name, num_dates FROM classifications ORDER BY candid"
    saved_rows = _connect(tmp_path / "saved.sqlite").execute(query).fetchall()
    assert _connect(tmp_path / "onnx.sqlite").execute(query).fetchall() == saved_rows


def _connect(path):
    import sqlite3

    return sqlite3.connect(path)
