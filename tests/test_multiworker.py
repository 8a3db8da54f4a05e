"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy (TF_CONFIG)."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np

import tao_keras.models.layers  # noqa: F401  (registers the custom layers the loads below need)

from conftest import REPO, trainer_command


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(command, timeout=600):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        procs.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results


def test_upstream_keras_still_needs_the_fix():
    """When this fails, Keras fixed multi-worker fit: delete tao_keras/training/multiworker.py."""
    results = run_workers(
        [sys.executable, os.path.join(REPO, "tests", "multiworker_fit.py"), "unpatched"]
    )
    assert all(code != 0 for code, _, _ in results), "upstream Keras now works without the fix"
    assert any("PerReplica" in err for _, _, err in results)


def test_patched_fit_gives_identical_weights_on_both_workers():
    results = run_workers(
        [sys.executable, os.path.join(REPO, "tests", "multiworker_fit.py"), "patched"]
    )
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-3000:]
    weights = [float(out.split("WEIGHTS")[1]) for _, out, _ in results]
    assert weights[0] == weights[1]


def test_trainer_on_two_workers(tiny_records, tmp_path):
    records, _ = tiny_records
    out = tmp_path / "run"
    results = run_workers(
        trainer_command(
            records,
            out,
            "--stages",
            "densenet",
            "--epochs_densenet",
            "2",
            "--batch_size",
            "4",
        )
    )
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-3000:] + results[1][2][-3000:]
    chief = keras.saving.load_model(str(out / "densenet" / "model.keras"))
    other = keras.saving.load_model(str(out / ".worker-1" / "densenet" / "model.keras"))
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (out / "report.json").exists()
    assert not (
        out / "export"
    ).exists()  # a DenseNet on triplets is not exported (needs the max date)
