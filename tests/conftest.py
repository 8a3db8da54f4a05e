"""Shared fixtures: a tiny simulated survey and its conversion, built once per test session."""

import pytest

from tools.conversion import convert
from tools.simulation import survey

TINY_SURVEY = survey.SurveyConfig(
    num_objects=16, seed=7, class_mix=tuple((c, 1.0) for c in ("BZ", "AGN", "CV", "OTHER", "SN", "NT")),
    median_nights=7.0, missing_max_fraction=0.3, few_dates_fraction=0.1)


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory):
    """A 16-object simulated survey (uniform classes, some objects made to be dropped)."""
    out = tmp_path_factory.mktemp("survey")
    survey.simulate_survey(str(out), TINY_SURVEY, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_records(tiny_survey, tmp_path_factory):
    """The tiny survey converted with default options; returns (output dir, manifest)."""
    out = tmp_path_factory.mktemp("records")
    manifest = convert.convert([str(tiny_survey)], str(out), convert.ConvertOptions(workers=2), progress=False)
    return out, manifest
