"""The `update` signature (night-by-night classification for brokers): after the last night it
gives the full-sequence signature's answer, in a process with tensorflow alone; its edge cases
(no usable exposure, several dates in one call, nights out of order) and the replay helper."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tao_keras import classes, contract, export
from tao_keras.models import presets, taonet
from tfrecords import parser
from tools import replay_nights

from conftest import REPO, call_update, pack


def test_last_night_equals_the_whole_sequence_with_tensorflow_alone(trained_run, objects, tmp_path):
    _, _, records = objects
    images, mjd, num_exposures = pack(records, pad=2)
    np.savez(tmp_path / "inputs.npz", images=images, mjd=mjd, num_exposures=num_exposures)
    model_dir = trained_run / "export" / "taonet_multiclass" / "1"
    run = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "tests", "update_client.py"),
            str(model_dir),
            str(tmp_path / "inputs.npz"),
            str(tmp_path / "out.npz"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert out["loaded"].size == 0
    history, dates = out["history"], out["dates"]
    np.testing.assert_allclose(history[-1], out["full"], atol=1e-5)
    np.testing.assert_array_equal(dates[-1], out["full_dates"])
    assert list(out["class_name"]) == [classes.CLASS_NAMES[i] for i in out["full"].argmax(1)]
    # nights 1 and 2: no triplet yet, no class; from the third on, a distribution
    assert np.all(history[:2] == 0) and np.all(dates[0] == 1) and np.all(dates[1] == 2)
    np.testing.assert_allclose(history[2:].sum(axis=-1), 1.0, atol=1e-5)
    # every object gains one date per call until its last night
    nights = np.array([r.num_dates for r in records])
    np.testing.assert_array_equal(dates, np.minimum(np.arange(1, len(dates) + 1)[:, None], nights))


@pytest.mark.parametrize(
    "aggregation, per_date, scale, statistics, eta, expert",
    [
        ("add", "choose", "image", False, False, False),
        ("last", "coadd", "object", False, False, False),
        ("mean", "choose", "object", True, True, False),
        # the statistics expert (its statistics carry the von Neumann ratio, the GRU's not)
        ("mean", "coadd", "object", True, False, True),
    ],
)
def test_every_aggregation_and_per_date_rule_updates_exactly(
    objects, tmp_path, aggregation, per_date, scale, statistics, eta, expert
):
    _, _, records = objects
    config = dataclasses.replace(
        presets.preset("cpu"),
        aggregation=aggregation,
        photometry=True,
        photometry_statistics=statistics,
        photometry_eta=eta,
        statistics_expert=expert,
    )
    served = contract.ModelContract(config, 64, per_date=per_date, normalization=scale)
    export.export_model(taonet.build_taonet(config, 6), str(tmp_path / "m"), served)
    model = tf.saved_model.load(str(tmp_path / "m"))
    images, mjd, counts = pack(records[:4], pad=0)
    _, history, _ = replay_nights.replay(model, images, mjd, counts)
    full = model.signatures["serving_default"](
        images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
    )["probabilities"].numpy()
    np.testing.assert_allclose(history[-1], full, atol=1e-5)


def _first_nights(record, same_date_days, nights):
    return replay_nights.split_nights(record.images, record.mjd, same_date_days)[:nights]


def test_a_night_without_usable_exposures_changes_nothing_and_bad_calls_are_refused(
    served, objects
):
    _, _, records = objects
    metadata = json.loads(served.metadata()["json"].numpy())
    size = metadata["update"]["state_size"]
    state = np.zeros((1, size), np.float32)
    previous, previous_mjd = np.zeros((1, 2, 64, 64)), np.zeros((1, 2))
    nights = _first_nights(records[0], metadata["same_date_days"], 5)
    for images, times in nights[:4]:
        out = call_update(
            served, state, previous, previous_mjd, images[None], times[None], [len(times)]
        )
        state, previous, previous_mjd = (
            out["state"].numpy(),
            out["previous_images"].numpy(),
            out["previous_mjd"].numpy(),
        )
    blank = np.full_like(nights[4][0], np.nan)[None]
    same = call_update(served, state, previous, previous_mjd, blank, nights[4][1][None], [3])
    np.testing.assert_array_equal(same["state"].numpy(), state)
    np.testing.assert_array_equal(same["previous_images"].numpy(), previous)
    np.testing.assert_array_equal(same["probabilities"].numpy(), out["probabilities"].numpy())
    assert int(same["num_dates"][0]) == 4
    two_dates = np.concatenate([nights[4][0], nights[4][0]])[None]
    two_times = np.concatenate([nights[4][1], nights[4][1] + 1.0])[None]
    with pytest.raises(tf.errors.InvalidArgumentError, match="batch row 0: the exposures span"):
        call_update(
            served, state, previous, previous_mjd, two_dates, two_times, [two_times.shape[1]]
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match="time order"):
        call_update(
            served, state, previous, previous_mjd, nights[0][0][None], nights[0][1][None], [1]
        )
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"state must be \\[batch, {size}\\]"):
        call_update(served, state[:, :-1], previous, previous_mjd, blank, nights[4][1][None], [1])


def test_replay_tool_prints_every_night(trained_run, objects):
    records_dir, _, _ = objects
    shard = sorted(p for p in os.listdir(records_dir) if p.startswith("train-"))[0]
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.replay_nights",
            "--model",
            str(trained_run / "export" / "taonet_multiclass" / "1"),
            "--records",
            os.path.join(records_dir, shard),
            "--max_objects",
            "2",
            "--check",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    first = next(parser.read_records([os.path.join(records_dir, shard)], 64))
    assert f"{first.object_id}:" in run.stdout
    assert "after  2 dates (MJD " in run.stdout and "not yet (< 3 dates)" in run.stdout
    assert f"after {first.num_dates:2d} dates (MJD " in run.stdout
    difference = float(run.stdout.rsplit("after the last night: ", 1)[1].split()[0])
    assert difference < 1e-5


def test_running_moments_give_the_whole_sequence_photometry_statistics():
    """The update's one-pass moments (streaming.update_moments) against the model's layer on
    the same values, for sequences of 1 to 40 steps with padding, bright and faint dates, and
    rows that skip steps (which must leave their moments alone)."""
    from tao_keras import streaming
    from tao_keras.models import layers as tao_layers

    rng = np.random.default_rng(3)
    batch, steps = 6, 40
    photometry = rng.normal(size=(batch, steps, taonet.PHOTOMETRY_WIDTH)).astype(np.float32)
    photometry[..., taonet.MIDDLE_SIGNAL] *= rng.uniform(0.01, 8.0, size=(batch, 1))
    photometry[..., taonet.MIDDLE_SIGNAL] += rng.uniform(-1.0, 12.0, size=(batch, 1))
    length = np.array([1, 2, 3, 17, 40, 33], np.int32)
    mask = np.arange(steps)[None] < length[:, None]
    whole = tao_layers.PhotometryStatistics(signal_index=taonet.MIDDLE_SIGNAL, eta=True)(
        photometry, mask
    )

    moments = {name: tf.zeros([batch]) for name in streaming.MOMENTS}
    count = tf.zeros([batch])
    for t in range(steps):
        value, weight = tao_layers.photometry_point(
            photometry[:, t, taonet.MIDDLE_SIGNAL], photometry[:, t, taonet.MIDDLE_SIGNAL + 1]
        )
        step = tf.constant(mask[:, t])
        moments = streaming.update_moments(moments, value, weight, count, step)
        count = count + tf.cast(step, tf.float32)
    np.testing.assert_array_equal(count.numpy(), length)
    running = streaming.statistics(moments, count, eta=True).numpy()
    np.testing.assert_allclose(running, whole.numpy(), rtol=1e-4, atol=1e-4)
    # without the ratio: the same first 7 columns
    np.testing.assert_allclose(
        streaming.statistics(moments, count).numpy(), running[:, :7], rtol=1e-6, atol=1e-6
    )
    # one value: the spread at its floor, no chi2, no skew, no successive step, nothing NaN
    np.testing.assert_allclose(running[0, 1:], [np.log(1e-3), 0, 0, 0, 0, 0, 0], atol=1e-6)
    # the von Neumann ratio from its definition on the valid steps
    for row, n in enumerate(length[1:], start=1):
        s = photometry[row, :n, taonet.MIDDLE_SIGNAL].astype(np.float64)
        eta = (np.sum(np.diff(s) ** 2) / (n - 1) + 1e-6) / (np.var(s) + 1e-6)
        np.testing.assert_allclose(running[row, 7], np.log(eta), rtol=1e-3, atol=1e-3)
