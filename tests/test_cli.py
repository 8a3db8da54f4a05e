"""The command-line tools as a user runs them: help, a small end-to-end run, failure exit codes."""

import json
import subprocess
import sys

import conftest
from conftest import REPO


def run_module(*args, check=True):
    return conftest.run_module(*args, check=check, timeout=300)


def test_simulate_then_convert_from_the_command_line(tmp_path):
    sim, out = tmp_path / "sim", tmp_path / "out"
    result = run_module(
        "tools.simulate_survey",
        "--output",
        str(sim),
        "--num_objects",
        "8",
        "--seed",
        "3",
        "--class_mix",
        "SN=1,NT=1",
        "--median_nights",
        "5",
    )
    assert "exposures/s" in result.stderr
    result = run_module(
        "tools.fits_to_tfrecords", "--input", str(sim), "--output", str(out), "--min_shards", "1"
    )
    assert "exposures/s" in result.stderr
    manifest = json.load(open(out / "dataset.json"))
    written = sum(sum(e["records"].values()) for e in manifest["splits"].values())
    assert (
        written
        == manifest["summary"]["objects_written"]
        == 8 - manifest["summary"]["objects_dropped"]
    )
    assert set(manifest["splits"]["train"]["records"]) <= {"SN", "NT"}


def test_bad_flags_and_unusable_input_exit_non_zero(tmp_path):
    result = run_module(
        "tools.simulate_survey", "--output", str(tmp_path), "--class_mix", "SN", check=False
    )
    assert result.returncode != 0 and "expected NAME=WEIGHT" in result.stderr
    result = run_module(
        "tools.fits_to_tfrecords",
        "--input",
        str(tmp_path / "nowhere"),
        "--output",
        str(tmp_path / "out"),
        check=False,
    )
    assert result.returncode == 1 and "input directory does not exist" in result.stderr


def test_tools_called_from_piped_code_work_in_process(tmp_path):
    code = (
        "from tools.simulation import survey\n"
        "from tools.conversion import convert\n"
        f"survey.simulate_survey({str(tmp_path / 's')!r}, "
        "survey.SurveyConfig(num_objects=3, median_nights=4),"
        " workers=2, progress=False)\n"
        f"m = convert.convert([{str(tmp_path / 's')!r}], {str(tmp_path / 'r')!r},"
        " convert.ConvertOptions(workers=2), progress=False)\n"
        "print('written', m['summary']['objects_written'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-"], input=code, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert "written" in result.stdout, result.stderr[-2000:]
    assert "running in-process" in result.stderr
