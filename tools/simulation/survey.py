"""Plan a simulated survey, simulate objects in parallel, write the catalog layout.

Output (docs/data-format.md, catalog layout): DIR/catalog.csv, DIR/images/<id>/*.fits
and DIR/simulation.json. Every object draws from its own generator seeded by (seed, index),
so the data do not depend on the number of workers. catalog.csv is written last: a run that
was interrupted leaves no catalog, and the converter refuses the directory.
"""

import csv
import dataclasses
import json
import logging
import os
import shutil
import time

import numpy as np
from astropy.io import fits
from astropy.time import Time
from tqdm import tqdm

from tao_keras import classes
from tools import worker_pool
from tools.simulation import calibration, observing, rendering, variability

CATALOG_COLUMNS = (
    "object_id",
    "label",
    "ra",
    "dec",
    "max_mjd",
    "subtype",
    "peak_mag",
    "num_exposures",
    "num_nights",
)
SURVEY_START_MJD = (53000.0, 55000.0)  # window starts 2004-2009: CSS images 2003-2012


@dataclasses.dataclass(frozen=True)
class SurveyConfig:
    """What to simulate. missing_max_fraction: transients whose maximum was not observed
    (the converter drops them, as the paper did); few_dates_fraction: objects seen on 2 nights."""

    num_objects: int = 300
    seed: int = 0
    class_mix: tuple = tuple(calibration.PAPER_CLASS_COUNTS.items())
    median_nights: float = 19.0
    missing_max_fraction: float = 0.03
    few_dates_fraction: float = 0.01


@dataclasses.dataclass(frozen=True)
class ObjectPlan:
    index: int
    object_id: str
    label: str
    ra: float
    dec: float


def _crts_like_id(index, ra, dec):
    """'SIM000123:HHMMSS+DDMMSS': CRTS-style, with the ':' and '+' that real ids carry."""
    h = ra / 15.0
    hh, mm = int(h), int((h % 1) * 60)
    ss = int(round(((h * 60) % 1) * 60)) % 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d % 1) * 60)
    ds = int(round(((d * 60) % 1) * 60)) % 60
    return f"SIM{index:06d}:{hh:02d}{mm:02d}{ss:02d}{sign}{dd:02d}{dm:02d}{ds:02d}"


def plan_survey(config):
    """Labels (exact class counts, shuffled) and sky positions in the CSS footprint."""
    rng = np.random.default_rng([config.seed, 2**31 - 1])
    counts = calibration.class_counts(config.num_objects, dict(config.class_mix))
    labels = np.array([name for name, n in counts.items() for _ in range(n)])
    rng.shuffle(labels)
    ra = rng.uniform(0.0, 360.0, size=config.num_objects)
    dec = np.degrees(
        np.arcsin(
            rng.uniform(
                np.sin(np.radians(-30.0)), np.sin(np.radians(70.0)), size=config.num_objects
            )
        )
    )
    return [
        ObjectPlan(i, _crts_like_id(i, ra[i], dec[i]), str(labels[i]), float(ra[i]), float(dec[i]))
        for i in range(config.num_objects)
    ]


def _num_nights(rng, config):
    if rng.uniform() < config.few_dates_fraction:
        return 2
    return int(np.clip(round(config.median_nights * np.exp(rng.normal(0.0, 0.45))), 3, 60))


def simulate_object(plan, config, images_dir):
    """Simulate and write one object's exposures; return its catalog row."""
    rng = np.random.default_rng([config.seed, plan.index])
    start = rng.uniform(*SURVEY_START_MJD)
    candidates = observing.allowed_nights(plan.ra, start, start + observing.WINDOW_DAYS)
    year2 = candidates[(candidates >= start + 365.25) & (candidates < start + 730.5)]
    peak_night = float(rng.choice(year2))
    num_nights = _num_nights(rng, config)
    if plan.label != "NT" and rng.uniform() < config.missing_max_fraction:
        nights = observing.choose_nights(
            rng, candidates, num_nights, avoid_near=peak_night, avoid_days=15.0
        )
    else:
        nights = observing.choose_nights(rng, candidates, num_nights, must_include=peak_night)
    exposures = observing.schedule_exposures(rng, nights)
    times = np.array([e.mjd for e in exposures])
    t_peak = peak_night + 0.3 + rng.uniform(-1.5, 1.5)
    source = variability.draw_source(rng, plan.label, times, t_peak)
    field = rendering.field_sources(rng)

    folder = os.path.join(images_dir, plan.object_id)
    shutil.rmtree(folder, ignore_errors=True)  # no stale exposures from an earlier run
    os.makedirs(folder)
    dates = Time(times, format="mjd", scale="utc").isot
    for i, exposure in enumerate(exposures):
        data, true_mag = rendering.render_exposure(rng, exposure, source, i, field)
        header = rendering.exposure_header(
            plan.ra, plan.dec, exposure, dates[i], plan.object_id, true_mag
        )
        fits.PrimaryHDU(data=data, header=header).writeto(
            os.path.join(folder, f"exp{i:03d}_{exposure.mjd:.5f}.fits"),
            overwrite=True,
            output_verify="ignore",
        )  # headers are built valid; verification doubles the cost
    return {
        "object_id": plan.object_id,
        "label": plan.label,
        "ra": f"{plan.ra:.6f}",
        "dec": f"{plan.dec:.6f}",
        "max_mjd": "" if source.max_mjd is None else f"{source.max_mjd:.6f}",
        "subtype": source.subtype,
        "peak_mag": f"{source.peak_mag:.3f}",
        "num_exposures": len(exposures),
        "num_nights": len(nights),
    }


def _simulate_task(args):
    return simulate_object(*args)


def simulate_survey(output_dir, config, workers=None, progress=True):
    """Simulate config.num_objects objects into output_dir; return a summary dict."""
    images_dir = os.path.join(output_dir, "images")
    os.makedirs(images_dir, exist_ok=True)
    catalog_path = os.path.join(output_dir, "catalog.csv")
    if os.path.exists(catalog_path):
        os.remove(catalog_path)  # the directory is being rewritten: not a dataset until the end
    plans = plan_survey(config)
    workers = workers or os.cpu_count() or 1
    tasks = [(plan, config, images_dir) for plan in plans]
    began = time.perf_counter()
    rows = []
    bar = tqdm(total=len(tasks), unit="obj", desc="simulate", disable=not progress)
    pool = worker_pool.spawn_pool(workers)
    results = (
        map(_simulate_task, tasks)
        if pool is None
        else pool.imap(_simulate_task, tasks, chunksize=2)
    )
    try:
        for row in results:
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    elapsed = time.perf_counter() - began
    num_exposures = sum(r["num_exposures"] for r in rows)
    summary = {
        "config": dataclasses.asdict(config),
        "objects": len(rows),
        "exposures": num_exposures,
        "objects_per_class": {
            name: sum(r["label"] == name for r in rows) for name in classes.CLASS_NAMES
        },
        "seconds": round(elapsed, 2),
        "exposures_per_second": round(num_exposures / elapsed, 1),
        "workers": workers,
    }
    with open(os.path.join(output_dir, "simulation.json"), "w") as f:
        json.dump(summary, f, indent=2)
    tmp = catalog_path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CATALOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, catalog_path)
    logging.info(
        "simulated %d objects, %d exposures in %.1f s (%.0f exposures/s, %d workers)",
        len(rows),
        num_exposures,
        elapsed,
        num_exposures / elapsed,
        workers,
    )
    return summary
