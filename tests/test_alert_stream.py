"""The alert stream: simulated Avro packets, the SQLite state, exactly-once handling, kills and
restarts, bad packets (tools.stream_alerts, tao_keras.alert_stream)."""

import collections
import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from tao_keras import alert_packets, alert_state, alert_stream
from tools.conversion import exposures as exposure_io
from tools.conversion import sources
from tools.simulation import alerts

from conftest import REPO


@pytest.fixture(scope="module")
def stream_dir(tiny_survey, tmp_path_factory):
    out = tmp_path_factory.mktemp("alerts")
    summary = alerts.write_alerts(str(tiny_survey), str(out))
    return out, summary


@pytest.fixture(scope="module")
def model_dir(trained_run):
    return str(trained_run / "export" / "taonet_multiclass" / "1")


@pytest.fixture(scope="module")
def runtime(model_dir):
    return alert_stream.SavedModelRuntime(model_dir)


def all_packets(directory):
    files = sorted(str(p) for p in directory.glob("*.avro"))
    return [p for f in files for p in alert_packets.read_file(f, 64)]


def run_stream(runtime, items, tmp_path, name="run", chunk_size=64, finish=True):
    db = alert_state.connect(str(tmp_path / f"{name}.sqlite"), runtime.identity)
    classifier = alert_stream.StreamClassifier(
        runtime, db, str(tmp_path / f"{name}.jsonl"), chunk_size
    )
    try:
        tally = classifier.run(items, finish=finish)
    finally:
        classifier.close()
    return db, tally


def test_a_simulated_survey_round_trips_as_alert_packets(tiny_survey, stream_dir):
    directory, summary = stream_dir
    packets = all_packets(directory)
    assert all(isinstance(p, alert_packets.Packet) for p in packets)
    assert len(packets) == summary["packets"] and summary["files"] > 10
    candids = [p.candid for p in packets]
    assert candids == sorted(set(candids))  # unique, in delivery order
    for path in sorted(directory.glob("*.avro")):  # a night per file, in time order
        times = [p.mjd for p in alert_packets.read_file(str(path), 64)]
        assert times == sorted(times)
        assert len({alerts.night_of(t) for t in times}) == 1
    found, _, _, _ = sources.discover([str(tiny_survey)])
    source = found[0]
    expected, _ = exposure_io.read_folder(source, 64)
    mine = [p for p in packets if p.object_id == source.object_id]
    assert len(mine) == len(expected)
    for packet, exposure in zip(mine, sorted(expected, key=lambda e: e.mjd)):
        assert packet.mjd == pytest.approx(exposure.mjd, abs=1e-8)  # JD in a double: ~1e-9 d
        np.testing.assert_array_equal(packet.image, exposure.roi)
    assert len({p.object_id for p in packets[:20]}) > 1  # objects interleaved


def test_the_stream_ends_with_the_whole_sequence_answer(runtime, stream_dir, tmp_path):
    import tensorflow as tf

    directory, summary = stream_dir
    packets = all_packets(directory)
    db, tally = run_stream(runtime, packets, tmp_path)
    assert tally.classified == len(packets) and tally.bad == tally.out_of_order == 0
    lines = [json.loads(line) for line in open(tmp_path / "run.jsonl")]
    assert [line["candid"] for line in lines] == [p.candid for p in packets]
    rows = db.execute("SELECT COUNT(*) FROM classifications").fetchone()[0]
    assert rows == len(packets)
    final = alert_state.final_classes(db)
    by_object = collections.defaultdict(list)
    for p in packets:
        by_object[p.object_id].append(p)
    serve = runtime.model.signatures["serving_default"]
    for object_id, mine in by_object.items():
        if final[object_id][2] < 3:
            continue  # fewer than three dates: no class yet, as serving refuses it
        images = np.stack([p.image for p in mine])[None]
        mjd = np.array([p.mjd for p in mine])[None]
        whole = serve(
            images=tf.constant(images),
            mjd=tf.constant(mjd),
            num_exposures=tf.constant([len(mine)]),
        )
        np.testing.assert_allclose(final[object_id][1], whole["probabilities"][0], atol=1e-5)
        assert final[object_id][0] == whole["class_name"][0].numpy().decode()
        # the last packet's answer is the same: its night was the last one
        last = [line for line in lines if line["objectId"] == object_id][-1]
        assert last["class_name"] == final[object_id][0]


def test_seen_and_out_of_order_packets_change_nothing(runtime, stream_dir, tmp_path):
    directory, _ = stream_dir
    packets = all_packets(directory)
    db, _ = run_stream(runtime, packets, tmp_path)
    before = alert_state.final_classes(db)
    size = os.path.getsize(tmp_path / "run.jsonl")
    db.close()
    first = packets[0]
    older = alert_packets.Packet(  # a new candid from before the object's committed nights
        first.object_id, 10**12, first.mjd - 30, first.ra, first.dec, first.image, "crafted"
    )
    db, tally = run_stream(runtime, packets[:50] + [older], tmp_path)
    assert tally.duplicates == 50 and tally.classified == 0 and tally.out_of_order == 1
    assert alert_state.final_classes(db) == before
    assert os.path.getsize(tmp_path / "run.jsonl") == size
    status, reason = db.execute(
        "SELECT p.status, e.reason FROM packets p JOIN errors e USING (candid) WHERE candid = ?",
        (10**12,),
    ).fetchone()
    assert status == "out_of_order" and "not later than the object's committed nights" in reason


class Crash(Exception):
    pass


def assert_same_final_classes(db, reference):
    """Same classes and dates per object, probabilities to 1e-5 (a restart batches packets
    differently, which moves float sums in the last bits)."""
    got, expected = alert_state.final_classes(db), alert_state.final_classes(reference)
    assert sorted(got) == sorted(expected)
    for object_id, (name, probabilities, dates) in expected.items():
        assert got[object_id][0] == name and got[object_id][2] == dates
        np.testing.assert_allclose(got[object_id][1], probabilities, atol=1e-5)


def assert_same_lines(path, reference):
    got = [json.loads(line) for line in open(path)]
    expected = [json.loads(line) for line in open(reference)]
    assert [(g["candid"], g["class_name"], g["num_dates"]) for g in got] == [
        (e["candid"], e["class_name"], e["num_dates"]) for e in expected
    ]
    np.testing.assert_allclose(
        [list(g["probabilities"].values()) for g in got],
        [list(e["probabilities"].values()) for e in expected],
        atol=1e-5,
    )


def test_a_crash_mid_chunk_then_a_restart_gives_the_uninterrupted_answers(
    runtime, stream_dir, tmp_path, monkeypatch
):
    directory, _ = stream_dir
    packets = all_packets(directory)
    reference, _ = run_stream(runtime, packets, tmp_path, "reference")
    save = alert_state.save_chunk
    calls = {"n": 0}

    def crashing(db, *args):
        calls["n"] += 1
        if calls["n"] in (3, 7):  # the chunk's lines are on disk, its transaction is not
            if calls["n"] == 7:  # some rows written, then the process dies
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO packets VALUES (-1, 'x', 0, 'classified', 'half')")
                db.execute("ROLLBACK")  # what SQLite's journal does for a killed process
            raise Crash
        return save(db, *args)

    monkeypatch.setattr(alert_state, "save_chunk", crashing)
    for _ in range(3):
        try:
            db, _ = run_stream(runtime, packets, tmp_path, "crashed")
            break
        except Crash:
            continue
    assert calls["n"] > 7
    assert_same_final_classes(db, reference)
    assert_same_lines(tmp_path / "crashed.jsonl", tmp_path / "reference.jsonl")


def test_kill_9_then_restart_gives_the_uninterrupted_answers(trained_run, stream_dir, tmp_path):
    from tao_keras import export

    directory, summary = stream_dir
    # the ONNX runtime: no TensorFlow to import, so each restart is quick
    model_dir = export.export_run(str(trained_run), str(tmp_path / "export"), onnx=True)

    def command(name, chunk_size):
        return [
            sys.executable,
            "-m",
            "tools.stream_alerts",
            f"--model={model_dir}",
            f"--alerts={directory}",
            f"--state={tmp_path / name}.sqlite",
            f"--output={tmp_path / name}.jsonl",
            f"--chunk_size={chunk_size}",
            "--runtime=onnx",
        ]

    subprocess.run(command("reference", 32), cwd=REPO, check=True, capture_output=True, timeout=600)
    for lines_before_kill in (40, summary["packets"] // 2):  # small chunks: many commit points
        process = subprocess.Popen(command("killed", 4), cwd=REPO, stderr=subprocess.DEVNULL)
        output = tmp_path / "killed.jsonl"
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if output.exists() and output.read_bytes().count(b"\n") >= lines_before_kill:
                break
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL  # killed mid-stream, not finished
    finished = subprocess.run(command("killed", 4), cwd=REPO, capture_output=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    reference = sqlite3.connect(tmp_path / "reference.sqlite")
    killed = sqlite3.connect(tmp_path / "killed.sqlite")
    assert_same_final_classes(killed, reference)
    query = "SELECT candid, class_name, num_dates FROM classifications ORDER BY candid"
    assert killed.execute(query).fetchall() == reference.execute(query).fetchall()
    assert_same_lines(tmp_path / "killed.jsonl", tmp_path / "reference.jsonl")


def test_each_bad_packet_costs_only_itself(runtime, stream_dir, tmp_path):
    import fastavro

    directory, _ = stream_dir
    good = sorted(directory.glob("*.avro"))[:3]
    records = [r for f in good for r in fastavro.reader(open(f, "rb"))]
    n = len(records)
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = [dict(r, candid=r["candid"] + 10**9) for r in records[:5]]
    broken[0]["cutoutScience"] = None
    broken[1]["cutoutScience"] = {"fileName": "x", "stampData": gzip.compress(b"not fits")}
    broken[2]["cutoutScience"] = {
        "fileName": "x",
        "stampData": alert_packets.cutout_bytes(np.zeros((32, 32), np.float32) + 1),
    }
    broken[3]["candidate"] = dict(broken[3]["candidate"], jd=float("nan"))
    broken[4]["cutoutScience"] = {
        "fileName": "x",
        "stampData": alert_packets.cutout_bytes(np.full((64, 64), np.nan, np.float32)),
    }
    alert_packets.write_file(str(bad / "a-broken.avro"), broken)
    (bad / "b-garbage.avro").write_bytes(b"this is not avro at all")
    other = {"type": "record", "name": "x", "fields": [{"name": "objectId", "type": "string"}]}
    with open(bad / "c-foreign.avro", "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(other), [{"objectId": "a"}])
    files = [str(bad / "a-broken.avro"), str(bad / "b-garbage.avro"), str(bad / "c-foreign.avro")]
    files += [str(f) for f in good]
    items = [p for f in files for p in alert_packets.read_file(f, 64)]
    db, tally = run_stream(runtime, items, tmp_path)
    assert tally.classified == n and tally.bad == 7
    reasons = [row[0] for row in db.execute("SELECT reason FROM errors ORDER BY id")]
    for expected in (
        "no cutoutScience.stampData",
        "not a readable (gzipped) FITS file",
        "cutout is 32x32, the model takes 64x64",
        "non-finite candidate.jd",
        "cutout has no finite pixel",
        "not an Avro file",
        "the Avro schema lacks candid, candidate.jd, candidate.ra, candidate.dec",
    ):
        assert any(expected in r for r in reasons), (expected, reasons)


def test_a_state_made_by_another_model_is_refused(runtime, tmp_path):
    alert_state.connect(str(tmp_path / "s.sqlite"), "sha256:another").close()
    with pytest.raises(alert_state.StateError, match="made by another model"):
        alert_state.connect(str(tmp_path / "s.sqlite"), runtime.identity)


def test_a_stream_split_over_runs_ends_like_one_run(runtime, stream_dir, tmp_path):
    directory, _ = stream_dir
    files = sorted(str(p) for p in directory.glob("*.avro"))
    half = len(files) // 2

    def packets_of(paths):
        return [p for f in paths for p in alert_packets.read_file(f, 64)]

    whole, _ = run_stream(runtime, packets_of(files), tmp_path, "whole")
    # tonight's files, nights kept open (--nofinish); tomorrow the rest, then the end
    run_stream(runtime, packets_of(files[:half]), tmp_path, "split", finish=False)
    split, _ = run_stream(runtime, packets_of(files[half:]), tmp_path, "split")
    assert_same_final_classes(split, whole)
    assert_same_lines(tmp_path / "split.jsonl", tmp_path / "whole.jsonl")


def test_stream_command_mistakes_are_one_line(model_dir, tmp_path):
    def command(*flags):
        return subprocess.run(
            [sys.executable, "-m", "tools.stream_alerts", f"--model={model_dir}", *flags],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )

    state, output = f"--state={tmp_path / 's.sqlite'}", f"--output={tmp_path / 'o.jsonl'}"
    missing = command(f"--alerts={tmp_path / 'nowhere'}", state, output)
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[-1] == (
        f"error: --alerts {tmp_path / 'nowhere'}: no such file or directory"
    )
    alert_state.connect(str(tmp_path / "s.sqlite"), "sha256:another").close()
    (tmp_path / "a").mkdir()
    other = command(f"--alerts={tmp_path / 'a'}", state, output)
    assert other.returncode != 0 and "Traceback" not in other.stderr
    assert "the state was made by another model" in other.stderr.strip().splitlines()[-1]
