"""Classify a stream of alert packets as it comes, with each object's state in SQLite.

Every packet (one exposure) gets an answer: the object's class and probabilities after its
committed nights plus the exposures of its current night so far, computed by the exported
model's `update` signature from the committed state (tao_keras.streaming), so the cost of a
packet does not grow with the object's history. A night is committed to the state when a
later night of that object arrives (an exposure at least schema.SAME_DATE_DAYS after the
night's last one: the converter's date rule), or at the end of the input (`finish`).

Exactly once: a packet whose candid was handled before changes nothing; a packet older than
the object's committed nights, or one that would split its current night, is recorded as out
of order and skipped. Packets are handled in chunks, each one SQLite transaction
(tao_keras.alert_state) written after the chunk's output lines are on disk; on a restart the
output is cut back to what the committed state accounts for and the rest is handled again,
so a kill at any moment followed by a restart gives the same final classifications as an
uninterrupted run.

Batching across objects: a chunk's night commits run as one batch of the `update` signature
and its packets' answers as another.
"""

import dataclasses
import hashlib
import json
import logging
import os
import time

import numpy as np

from tao_keras import alert_packets, alert_state, update_numpy

CHUNK = 32


class StreamError(RuntimeError):
    """The stream cannot go on (the message says why): a state or output that does not match."""


def _describe(runtime, text, path):
    """The attributes both runtimes share, from the export's metadata JSON text (bytes)."""
    runtime.metadata = json.loads(text)
    if not runtime.metadata.get("update"):
        raise StreamError(f"{path}: this model has no night-by-night `update` signature")
    runtime.class_names = list(runtime.metadata["class_names"])
    runtime.roi_size = int(runtime.metadata["roi_size"])
    runtime.state_size = int(runtime.metadata["update"]["state_size"])
    runtime.same_date_days = float(runtime.metadata["same_date_days"])
    # one model, whichever runtime runs it: a state database can move between them
    runtime.identity = "sha256:" + hashlib.sha256(text).hexdigest()[:16]


class SavedModelRuntime:
    """An exported TAO-Net's `update` signature through TensorFlow (tf.saved_model.load).

    path: the SavedModel's version directory. Attributes: metadata (dict), class_names,
    roi_size, state_size, same_date_days, identity (a digest of the metadata: the state
    database belongs to one model)."""

    def __init__(self, path):
        import tensorflow as tf

        self.model = tf.saved_model.load(path)
        _describe(self, self.model.metadata()["json"].numpy(), path)
        self._update = self.model.signatures["update"]

    def update(self, *inputs):
        """The `update` signature on numpy arrays (call_update's inputs) -> {name: numpy array}."""
        return {name: value.numpy() for name, value in call_update(self._update, *inputs).items()}


def call_update(signature, state, previous_images, previous_mjd, images, mjd, num_exposures):
    """One call of a SavedModel's `update` signature with numpy (or list) inputs cast to its
    dtypes -> its outputs (tensors)."""
    import tensorflow as tf

    return signature(
        state=tf.constant(state, tf.float32),
        previous_images=tf.constant(previous_images, tf.float32),
        previous_mjd=tf.constant(previous_mjd, tf.float64),
        images=tf.constant(images, tf.float32),
        mjd=tf.constant(mjd, tf.float64),
        num_exposures=tf.constant(num_exposures, tf.int32),
    )


class OnnxRuntime:
    """The same `update` without TensorFlow: the export's onnx/ folder through onnxruntime and
    numpy (tao_keras.update_numpy). path: the version directory; attributes as
    SavedModelRuntime's."""

    def __init__(self, path):
        from tao_keras import update_numpy

        directory = os.path.join(path, "onnx")
        if not os.path.exists(os.path.join(directory, update_numpy.STEP_MODEL)):
            raise StreamError(
                f"{directory}: no ONNX export; write one with python -m tools.export_savedmodel "
                "--onnx"
            )
        self._onnx = update_numpy.OnnxUpdate(directory)
        _describe(self, self._onnx.spec["metadata"].encode(), path)

    def update(self, state, previous_images, previous_mjd, images, mjd, num_exposures):
        """update_numpy.OnnxUpdate.update on numpy arrays -> {name: numpy array}."""
        return self._onnx.update(
            np.asarray(state, np.float32),
            np.asarray(previous_images, np.float32),
            np.asarray(previous_mjd, np.float64),
            np.asarray(images, np.float32),
            np.asarray(mjd, np.float64),
            np.asarray(num_exposures, np.int32),
        )


RUNTIMES = {"savedmodel": SavedModelRuntime, "onnx": OnnxRuntime}


@dataclasses.dataclass
class Tally:
    """What a run did, for the log and the benchmark."""

    classified: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    bad: int = 0
    nights_committed: int = 0
    chunks: int = 0
    latencies: list = dataclasses.field(default_factory=list)  # s, packet read -> answer written


def _new_object(runtime):
    roi = runtime.roi_size
    return {
        "state": np.zeros(runtime.state_size, np.float32),
        "previous_images": np.zeros((2, roi, roi), np.float32),
        "previous_mjd": np.zeros(2, np.float64),
        "nights": 0,
        "committed_until": None,
        "pending": [],
    }


def _run_update(runtime, bases, nights):
    """One batched `update` call: bases [(state, previous_images, previous_mjd)], nights
    [[(candid, mjd, image)]] (one night per row) -> the signature's outputs."""
    rows = [(np.stack([e[2] for e in n]), np.array([e[1] for e in n])) for n in nights]
    return runtime.update(
        np.stack([b[0] for b in bases]),
        np.stack([b[1] for b in bases]),
        np.stack([b[2] for b in bases]),
        *update_numpy.pack(rows, runtime.roi_size),
    )


def _placement(o, mjd, same_date_days):
    """Where a packet at `mjd` goes for object state o: "open" (its current night, or a first
    one), "next" (a later night: the current one is committed first) or a reason it is out of
    order."""
    until = o["committed_until"]
    if until is not None and mjd < until + same_date_days:
        return "out of order: not later than the object's committed nights"
    times = sorted([t for _, t, _ in o["pending"]] + [mjd])
    if not o["pending"]:
        return "open"
    if mjd >= max(t for _, t, _ in o["pending"]) + same_date_days:
        return "next"
    if np.any(np.diff(times) >= same_date_days):
        return "out of order: earlier than the object's current night"
    return "open"


class StreamClassifier:
    """Handles packets chunk by chunk against a state database and a JSON-lines output.

    runtime: SavedModelRuntime (or any object with its attributes and `update`); db: an
    alert_state.connect connection; output: the JSON-lines path (cut back to what the state
    accounts for, then appended to); chunk_size: packets per transaction and batch.
    """

    def __init__(self, runtime, db, output, chunk_size=CHUNK):
        self.runtime, self.db, self.chunk_size = runtime, db, chunk_size
        self.tally = Tally()
        committed = int(alert_state.meta(db, "output_bytes", "0"))
        size = os.path.getsize(output) if os.path.exists(output) else 0
        if size < committed:
            raise StreamError(
                f"{output}: {size} bytes, but the state accounts for {committed}: the output "
                "was changed or replaced; use the output that goes with this --state"
            )
        self.output = open(output, "r+b" if os.path.exists(output) else "wb")
        self.output.truncate(committed)
        self.output.seek(committed)

    def close(self):
        self.output.close()

    def run(self, items, finish=True):
        """Handle an iterable of alert_packets.Packet / BadPacket; with finish, commit every
        object's open night at the end. Returns the Tally."""
        chunk = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk_size:
                self._handle(chunk)
                chunk = []
        if chunk:
            self._handle(chunk)
        if finish:
            self.finish()
        return self.tally

    def _handle(self, chunk):
        """Plan and apply a chunk; a packet that would commit a second night of one object in
        the chunk starts the next chunk (at most one commit per object and chunk)."""
        while chunk:
            chunk = self._apply(chunk)

    def _apply(self, chunk):
        runtime = self.runtime
        good = [p for p in chunk if isinstance(p, alert_packets.Packet)]
        handled = alert_state.seen(self.db, [p.candid for p in good])
        ids = dict.fromkeys(p.object_id for p in good)
        objects = alert_state.load_objects(self.db, ids, runtime.state_size, runtime.roi_size)
        for object_id in ids:
            objects.setdefault(object_id, _new_object(runtime))
        before = {
            oid: (o["state"], o["previous_images"], o["previous_mjd"]) for oid, o in objects.items()
        }
        commits, rows, packets, errors, touched = {}, [], [], [], set()
        for index, item in enumerate(chunk):
            if isinstance(item, alert_packets.BadPacket):
                errors.append((item.source, item.candid, item.object_id, item.reason))
                if item.candid is not None and item.candid not in handled:
                    packets.append((item.candid, item.object_id, None, "error", item.source))
                    handled.add(item.candid)
                self.tally.bad += 1
                continue
            if item.candid in handled:
                self.tally.duplicates += 1
                continue
            o = objects[item.object_id]
            where = _placement(o, item.mjd, runtime.same_date_days)
            if where == "next":
                if item.object_id in commits:  # a second commit: the next chunk's
                    remaining = chunk[index:]
                    chunk = chunk[:index]
                    break
                commits[item.object_id] = list(o["pending"])
                o["pending"] = []
            elif where != "open":
                errors.append((item.source, item.candid, item.object_id, where))
                packets.append((item.candid, item.object_id, item.mjd, "out_of_order", item.source))
                handled.add(item.candid)
                self.tally.out_of_order += 1
                continue
            o["pending"] = sorted(
                o["pending"] + [(item.candid, item.mjd, item.image)], key=lambda e: (e[1], e[0])
            )
            rows.append((item, list(o["pending"]), item.object_id in commits))
            packets.append((item.candid, item.object_id, item.mjd, "classified", item.source))
            handled.add(item.candid)
            touched.add(item.object_id)
        else:
            remaining = []
        after = self._commit(objects, before, commits)
        classifications, lines = self._classify(rows, before, after)
        read_at = [p.read_at for p, _, _ in rows]
        self._write(
            objects, touched | set(commits), packets, classifications, errors, lines, read_at
        )
        return remaining

    def _commit(self, objects, before, commits):
        """Commit each object's closed night (one batch) -> {object_id: (state, previous_images,
        previous_mjd)} after it; objects[...] get the new state and their class after it."""
        if not commits:
            return {}
        ids = list(commits)
        out = _run_update(self.runtime, [before[i] for i in ids], [commits[i] for i in ids])
        after = {}
        for k, object_id in enumerate(ids):
            o = objects[object_id]
            o["state"], o["previous_images"], o["previous_mjd"] = (
                out["state"][k],
                out["previous_images"][k],
                out["previous_mjd"][k],
            )
            o["nights"] += 1
            o["committed_until"] = max(t for _, t, _ in commits[object_id])
            o["class_name"] = out["class_name"][k].decode()
            o["probabilities"] = [float(p) for p in out["probabilities"][k]]
            o["num_dates"] = int(out["num_dates"][k])
            after[object_id] = (o["state"], o["previous_images"], o["previous_mjd"])
        self.tally.nights_committed += len(ids)
        return after

    def _classify(self, rows, before, after):
        """Each packet's answer (one batch): its object's committed state (after this chunk's
        commit when the packet came after it) with its current night so far."""
        if not rows:
            return [], []
        bases = [after[p.object_id] if late else before[p.object_id] for p, _, late in rows]
        out = _run_update(self.runtime, bases, [night for _, night, _ in rows])
        classifications, lines = [], []
        for k, (packet, _, _) in enumerate(rows):
            name = out["class_name"][k].decode()
            probabilities = [float(p) for p in out["probabilities"][k]]
            dates = int(out["num_dates"][k])
            classifications.append(
                (packet.candid, packet.object_id, packet.mjd, name, probabilities, dates)
            )
            lines.append(
                {
                    "candid": packet.candid,
                    "objectId": packet.object_id,
                    "mjd": packet.mjd,
                    "class_name": name,
                    "probabilities": dict(zip(self.runtime.class_names, probabilities)),
                    "num_dates": dates,
                }
            )
        self.tally.classified += len(rows)
        return classifications, lines

    def _write(self, objects, changed, packets, classifications, errors, lines, read_at=()):
        """The chunk's output lines (flushed to disk), then its state in one transaction;
        read_at: when each answered packet was read (for the latencies)."""
        for line in lines:
            self.output.write((json.dumps(line) + "\n").encode())
        self.output.flush()
        os.fsync(self.output.fileno())
        alert_state.save_chunk(
            self.db,
            {oid: objects[oid] for oid in changed},
            packets,
            classifications,
            errors,
            self.output.tell(),
        )
        for source, candid, object_id, reason in errors:
            logging.getLogger(__name__).warning("%s (candid %s): %s", source, candid, reason)
        now = time.perf_counter()
        self.tally.latencies.extend(now - t for t in read_at)
        self.tally.chunks += 1

    def finish(self):
        """Commit every object's open night (end of the input), in chunks of objects."""
        runtime = self.runtime
        waiting = alert_state.objects_with_pending(self.db)
        for start in range(0, len(waiting), self.chunk_size):
            ids = waiting[start : start + self.chunk_size]
            objects = alert_state.load_objects(self.db, ids, runtime.state_size, runtime.roi_size)
            before = {
                i: (o["state"], o["previous_images"], o["previous_mjd"]) for i, o in objects.items()
            }
            commits = {i: objects[i]["pending"] for i in ids}
            for i in ids:
                objects[i]["pending"] = []
            self._commit(objects, before, commits)
            self._write(objects, set(ids), [], [], [], [])
