"""The stream classifier's state: one SQLite file (WAL mode) that survives a kill at any moment.

Tables (docs/serving.md, "Alert streams"):

  objects          object_id, state BLOB float32 [state_size], previous_images BLOB float32
                   [2, roi, roi], previous_mjd BLOB float64 [2] (the update signature's
                   inputs after the committed nights), nights (committed), committed_until
                   (MJD of the last committed exposure), and the class after the committed
                   nights (class_name, probabilities JSON, num_dates)
  pending          the exposures of each object's current, not yet committed night: candid,
                   object_id, mjd, image BLOB float32 [roi, roi]
  packets          every candid handled (status classified, out_of_order or error): a packet
                   seen before changes nothing
  classifications  one row per classified packet: object_id, mjd, class_name, probabilities
                   JSON, num_dates (the object's nights so far plus the current one)
  errors           source (file#record), candid, object_id, reason: bad packets and files
  meta             model (the export's identity), output_bytes (the length of the JSON-lines
                   output that the committed state accounts for)

Every chunk of packets is one transaction, so after a kill the database holds whole chunks;
the caller truncates its output to meta.output_bytes and reprocesses what was not committed.
"""

import json
import sqlite3

import numpy as np

TABLES = """
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY, state BLOB NOT NULL, previous_images BLOB NOT NULL,
    previous_mjd BLOB NOT NULL, nights INTEGER NOT NULL, committed_until REAL,
    class_name TEXT, probabilities TEXT, num_dates INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pending (
    candid INTEGER PRIMARY KEY, object_id TEXT NOT NULL, mjd REAL NOT NULL, image BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS pending_object ON pending (object_id);
CREATE TABLE IF NOT EXISTS packets (
    candid INTEGER PRIMARY KEY, object_id TEXT, mjd REAL, status TEXT NOT NULL, source TEXT);
CREATE TABLE IF NOT EXISTS classifications (
    candid INTEGER PRIMARY KEY, object_id TEXT NOT NULL, mjd REAL NOT NULL,
    class_name TEXT NOT NULL, probabilities TEXT NOT NULL, num_dates INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS errors (
    id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, candid INTEGER,
    object_id TEXT, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StateError(RuntimeError):
    """The state database cannot be used with this model or output (the message says why)."""


def connect(path, model_identity):
    """Open (creating) the state database at `path` for the model of `model_identity` (a
    string naming the export); StateError when the database was made by another model, whose
    recurrent states this one must not continue."""
    db = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(TABLES)
    found = meta(db, "model")
    if found is None:
        db.execute("INSERT INTO meta VALUES ('model', ?)", (model_identity,))
    elif found != model_identity:
        raise StateError(
            f"{path}: the state was made by another model ({found}); use a new --state file "
            "for this model"
        )
    return db


def meta(db, key, default=None):
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def seen(db, candids):
    """The candids of `candids` already handled."""
    found = set()
    candids = list(candids)
    for start in range(0, len(candids), 500):
        part = candids[start : start + 500]
        query = f"SELECT candid FROM packets WHERE candid IN ({','.join('?' * len(part))})"
        found.update(row[0] for row in db.execute(query, part))
    return found


def load_objects(db, object_ids, state_size, roi_size):
    """{object_id: ObjectState dict} for those in the database (others are absent)."""
    out = {}
    for object_id in object_ids:
        row = db.execute(
            "SELECT state, previous_images, previous_mjd, nights, committed_until FROM objects "
            "WHERE object_id = ?",
            (object_id,),
        ).fetchone()
        if row is None:
            continue
        pending = db.execute(
            "SELECT candid, mjd, image FROM pending WHERE object_id = ? ORDER BY mjd, candid",
            (object_id,),
        ).fetchall()
        out[object_id] = {
            "state": np.frombuffer(row[0], np.float32).reshape(state_size).copy(),
            "previous_images": np.frombuffer(row[1], np.float32).reshape(2, roi_size, roi_size),
            "previous_mjd": np.frombuffer(row[2], np.float64).reshape(2).copy(),
            "nights": row[3],
            "committed_until": row[4],
            "pending": [
                (candid, mjd, np.frombuffer(image, np.float32).reshape(roi_size, roi_size))
                for candid, mjd, image in pending
            ],
        }
    return out


def save_chunk(db, objects, packets, classifications, errors, output_bytes):
    """One chunk's changes in one transaction.

    objects: {object_id: state dict as load_objects gives, with "pending" its open night and
    optionally "class_name", "probabilities", "num_dates" after its committed nights};
    packets: [(candid, object_id, mjd, status, source)]; classifications: [(candid, object_id,
    mjd, class_name, probabilities list, num_dates)]; errors: [(source, candid, object_id,
    reason)]; output_bytes: the output's length once this chunk's lines are written.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        for object_id, o in objects.items():
            db.execute(
                "INSERT INTO objects (object_id, state, previous_images, previous_mjd, nights, "
                "committed_until) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(object_id) DO UPDATE SET "
                "state = excluded.state, previous_images = excluded.previous_images, "
                "previous_mjd = excluded.previous_mjd, nights = excluded.nights, "
                "committed_until = excluded.committed_until",
                (
                    object_id,
                    np.asarray(o["state"], np.float32).tobytes(),
                    np.asarray(o["previous_images"], np.float32).tobytes(),
                    np.asarray(o["previous_mjd"], np.float64).tobytes(),
                    o["nights"],
                    o["committed_until"],
                ),
            )
            if "class_name" in o:
                db.execute(
                    "UPDATE objects SET class_name = ?, probabilities = ?, num_dates = ? "
                    "WHERE object_id = ?",
                    (o["class_name"], json.dumps(o["probabilities"]), o["num_dates"], object_id),
                )
            db.execute("DELETE FROM pending WHERE object_id = ?", (object_id,))
            db.executemany(
                "INSERT INTO pending VALUES (?, ?, ?, ?)",
                [
                    (candid, object_id, mjd, np.asarray(image, np.float32).tobytes())
                    for candid, mjd, image in o["pending"]
                ],
            )
        db.executemany("INSERT INTO packets VALUES (?, ?, ?, ?, ?)", packets)
        db.executemany(
            "INSERT INTO classifications VALUES (?, ?, ?, ?, ?, ?)",
            [(c, o, m, n, json.dumps(p), d) for c, o, m, n, p, d in classifications],
        )
        db.executemany(
            "INSERT INTO errors (source, candid, object_id, reason) VALUES (?, ?, ?, ?)", errors
        )
        db.execute(
            "INSERT INTO meta VALUES ('output_bytes', ?) ON CONFLICT(key) DO UPDATE SET "
            "value = excluded.value",
            (str(output_bytes),),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def objects_with_pending(db):
    """The object ids that have an open night."""
    return [row[0] for row in db.execute("SELECT DISTINCT object_id FROM pending ORDER BY 1")]


def final_classes(db):
    """{object_id: (class_name, probabilities list, num_dates)} after the committed nights."""
    return {
        object_id: (name, json.loads(p) if p else None, dates)
        for object_id, name, p, dates in db.execute(
            "SELECT object_id, class_name, probabilities, num_dates FROM objects ORDER BY 1"
        )
    }
