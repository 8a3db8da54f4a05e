"""Training under MirroredStrategy with 2 logical CPU devices equals single-device training."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_two_replica_steps_equal_single_device_steps(tiny_records):
    records, _ = tiny_records
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "mirrored_steps.py"), str(records)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == {"one": 1, "two": 2}
    assert report["weights"] > 0
    assert report["moved"] > 1e-3, report  # training did change the weights
    assert report["max_difference"] < 1e-5, report
