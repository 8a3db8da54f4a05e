"""tools.error_breakdown: which objects each model gets wrong, by catalogue group and magnitude."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from tools import error_breakdown
from tools.conversion import sources

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["BZ", "AGN", "CV", "OTHER", "SN", "NT"]


def one_hot(index):
    return [0.9 if i == index else 0.02 for i in range(len(NAMES))]


def report(model_predictions):
    """A report dict with test predictions {model: [(object id, true, predicted)]}."""
    return {
        "class_names": NAMES,
        "predictions": {
            model: {
                "test": {
                    "object_id": [r[0] for r in rows],
                    "label": [NAMES.index(r[1]) for r in rows],
                    "probabilities": [one_hot(NAMES.index(r[2])) for r in rows],
                }
            }
            for model, rows in model_predictions.items()
        },
    }


CATALOG = {
    "s1": {"label": "NT", "subtype": "STAR", "peak_mag": "14.5"},
    "s2": {"label": "NT", "subtype": "STAR", "peak_mag": "19.5"},
    "g1": {"label": "NT", "subtype": "GALAXY", "peak_mag": "17.2"},
    "a1": {"label": "AGN", "subtype": "", "peak_mag": ""},
}


def test_breakdown_groups_pools_trainings_and_counts_a_repeated_model_once():
    forest = [("s1", "NT", "NT"), ("s2", "NT", "AGN"), ("g1", "NT", "NT"), ("a1", "AGN", "AGN")]
    first = [("s1", "NT", "AGN"), ("s2", "NT", "AGN"), ("g1", "NT", "NT"), ("a1", "AGN", "NT")]
    second = [("s1", "NT", "NT"), ("s2", "NT", "AGN"), ("g1", "NT", "OTHER"), ("a1", "AGN", "AGN")]
    # two trainings of one survey: each report repeats the same forest
    reports = [report({"forest": forest, "net": first}), report({"forest": forest, "net": second})]
    rows = error_breakdown.outcomes(reports, [CATALOG, CATALOG], "test", "subtype", "peak_mag")
    assert len(rows["forest"]) == 4 and len(rows["net"]) == 8
    table = error_breakdown.breakdown(rows)
    # the empty subtype falls back to the true class
    assert table["forest"]["STAR"] == {"objects": 2, "right": 0.5, "predicted": {"AGN": 1}}
    assert table["forest"]["AGN"]["right"] == 1.0
    assert table["net"]["STAR"] == {"objects": 4, "right": 0.25, "predicted": {"AGN": 3}}
    assert table["net"]["GALAXY"] == {"objects": 2, "right": 0.5, "predicted": {"OTHER": 1}}
    assert table["net"]["AGN"] == {"objects": 2, "right": 0.5, "predicted": {"NT": 1}}

    magnitudes = error_breakdown.by_magnitude(rows, [15.0, 19.0])
    assert error_breakdown.bin_labels([15.0, 19.0]) == ["<15", "15-19", ">=19"]
    # STAR: s1 (14.5) right once in two trainings, s2 (19.5) never
    low, middle, high = magnitudes["net"]["STAR"]
    assert low == (2, 0.5) and middle[0] == 0 and math.isnan(middle[1]) and high == (2, 0.0)
    assert [n for n, _ in magnitudes["net"]["AGN"]] == [0, 0, 0]  # no magnitude: left out
    text = error_breakdown.markdown(
        error_breakdown.breakdown(rows), magnitudes, [15.0, 19.0], "test"
    )
    assert "| STAR | 4 | 25% | AGN 3 |" in text
    assert "| STAR | 50% (2) | – | 0% (2) |" in text


def test_breakdown_names_what_is_missing():
    reports = [report({"net": [("zz", "NT", "NT")]})]
    with pytest.raises(ValueError, match="object zz of net is not in the catalogue"):
        error_breakdown.outcomes(reports, [CATALOG], "test", "subtype")
    reports = [report({"net": [("s1", "NT", "NT")]})]
    with pytest.raises(ValueError, match="no column 'host'"):
        error_breakdown.outcomes(reports, [CATALOG], "test", "host")
    bad = {"s1": {"subtype": "STAR", "peak_mag": "bright"}}
    with pytest.raises(ValueError, match="object s1: peak_mag 'bright' is not a number"):
        error_breakdown.outcomes(reports, [bad], "test", "subtype", "peak_mag")
    assert error_breakdown.outcomes(reports, [CATALOG], "val", "subtype") == {}


def test_catalog_columns_refuses_a_repeated_object(tmp_path):
    path = tmp_path / "catalog.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["object_id", "label", "subtype"])
        writer.writerow(["a", "NT", "STAR"])
        writer.writerow(["b", "AGN", " AGN "])
    assert sources.catalog_columns(str(tmp_path)) == {
        "a": {"label": "NT", "subtype": "STAR"},
        "b": {"label": "AGN", "subtype": "AGN"},
    }
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(["a", "NT", "GALAXY"])
    with pytest.raises(sources.ConversionError, match=r"catalog.csv:4: object_id 'a' again"):
        sources.catalog_columns(str(tmp_path))


def test_error_breakdown_runs_on_a_trained_run(trained_run, tiny_survey, tmp_path):
    out = tmp_path / "breakdown.md"
    done = subprocess.run(
        [sys.executable, "-m", "tools.error_breakdown", str(trained_run), "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text().strip() == done.stdout.strip()
    with open(trained_run / "report.json") as f:
        saved = json.load(f)
    catalog = sources.catalog_columns(str(tiny_survey))
    for model, by_split in saved["predictions"].items():
        assert f"### {model}, test: arg-max outcome by group" in done.stdout
        ids = by_split["test"]["object_id"]
        groups = {catalog[i]["subtype"] for i in ids}
        section = done.stdout.split(f"### {model}, test")[1].split("Share right")[0]
        counted = sum(int(line.split("|")[2]) for line in section.splitlines()[4:] if line)
        assert counted == len(ids) and all(f"| {g} |" in section for g in groups)
    # a run directory that is not one: a clear error, no traceback
    bad = subprocess.run(
        [sys.executable, "-m", "tools.error_breakdown", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode != 0 and "report.json: not found" in bad.stderr
    assert "Traceback" not in bad.stderr
