"""dataset.json, the manifest of a converted records directory: its one file name, writing
and reading it (with the schema-version check), the per-task parts of a fanned-out
conversion, and the records' identity.

Its content is made by tools.conversion.convert; it is written, and read by the input
pipeline, the trainers, the light-curve baseline and tools.predict, all through this module.
"""

import glob
import hashlib
import json
import os

from tfrecords import schema

MANIFEST = "dataset.json"


class ManifestError(ValueError):
    """The manifest is missing, unreadable or newer than this code; the message says which."""


def path(records_dir):
    """The manifest's path inside a records directory."""
    return os.path.join(records_dir, MANIFEST)


def part_path(records_dir, index, count):
    """The path of task `index`'s part of a conversion fanned out over `count` tasks (index
    "*": a glob pattern matching every part)."""
    index = index if isinstance(index, str) else f"{index:05d}"
    return os.path.join(records_dir, f"dataset.task-{index}-of-{count:05d}.json")


def parts_written(records_dir, count):
    """How many of the `count` tasks' parts are written."""
    return len(glob.glob(part_path(records_dir, "*", count)))


def write(records_dir, manifest, part=None):
    """Write dataset.json (or, with part=(index, count), that task's part) atomically: a
    temporary file flushed to disk, then renamed over the target."""
    target = path(records_dir) if part is None else part_path(records_dir, *part)
    partial = f"{target}.tmp-{os.getpid()}"
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, target)


def load_part(records_dir, index, count):
    """Task `index`'s part (a manifest dict); FileNotFoundError naming it while missing,
    ManifestError when unreadable."""
    where = part_path(records_dir, index, count)
    try:
        with open(where, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(
            f"{where}: unreadable manifest part ({type(e).__name__}: {e})"
        ) from None


def exists(records_dir):
    """True when records_dir holds a finished conversion (its manifest is written last)."""
    return os.path.exists(path(records_dir))


def load(records_dir):
    """The manifest dict of a records directory. Refuses (ManifestError, naming the file) a
    missing or unparsable manifest and one written by a newer schema version than this code
    reads; FileNotFoundError when there is none, with what to run."""
    where = path(records_dir)
    try:
        with open(where, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{where}: no {MANIFEST}; convert the data with tools.fits_to_tfrecords first"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ManifestError(f"{where}: unreadable manifest ({type(e).__name__}: {e})") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if not isinstance(version, int):
        raise ManifestError(
            f"{where}: no schema_version; not a manifest written by tools.fits_to_tfrecords"
        )
    if version > schema.SCHEMA_VERSION:
        raise ManifestError(
            f"{where}: records of schema version {version}, newer than this code reads "
            f"({schema.SCHEMA_VERSION}); upgrade tao-keras or convert the data again"
        )
    return manifest


def identity(records_dir):
    """The records' identity: the SHA-256 of dataset.json's bytes (it names every shard with
    its record count, the splits and the conversion's settings). A trained stage or a cache
    keyed on it is not reused for other records."""
    with open(path(records_dir), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def object_count(manifest):
    """Objects the manifest says its shards hold (every split)."""
    return sum(s["records"] for entry in manifest["splits"].values() for s in entry["shards"])


def check_roi(manifest, records_dir, roi_size):
    """Refuse up front records whose RoI is smaller than a model's (ManifestError)."""
    side = manifest["roi_size"]
    if side < roi_size:
        raise ManifestError(
            f"{path(records_dir)}: records have {side}x{side} RoIs, "
            f"smaller than the model's {roi_size}x{roi_size}"
        )


def shards(manifest, records_dir, split):
    """[(shard path, class name, records)] of one split, in manifest order."""
    if split not in manifest["splits"]:
        raise ValueError(f"{records_dir}: no '{split}' split (has {sorted(manifest['splits'])})")
    return [
        (os.path.join(records_dir, s["file"]), s["class"], s["records"])
        for s in manifest["splits"][split]["shards"]
    ]
