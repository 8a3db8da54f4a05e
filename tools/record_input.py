"""What tools.predict and tools.replay_nights read and how they write ids: a --data directory
(converted records with dataset.json, a folder of .tfrecord files, or a FITS dataset converted
on the fly) or record files, read shard by shard so that one fault costs only what it touches;
and CSV cells that no spreadsheet runs as formulas."""

import glob
import os

from tfrecords import manifest as manifest_file

# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def record_sources(input_dir, roi_size, work_dir, workers):
    """-> ([(shard path, split, records or None)], [skipped {object_id, path, reason}]) for any
    accepted input."""
    converted = False
    if not manifest_file.exists(input_dir):
        shards = sorted(glob.glob(os.path.join(input_dir, "*.tfrecord")))
        if shards:
            return [(path, "", None) for path in shards], []
        from tools.conversion import convert

        options = convert.ConvertOptions(roi_size=roi_size, workers=workers)
        convert.convert([input_dir], work_dir, options)
        input_dir, converted = work_dir, True
    manifest = manifest_file.load(input_dir)
    if manifest["roi_size"] != roi_size:
        raise manifest_file.ManifestError(
            f"{manifest_file.path(input_dir)}: records have RoI {manifest['roi_size']}, "
            f"the model expects {roi_size}"
        )
    # Splits mean something only for records converted for training; not for an on-the-fly
    # conversion.
    shards = [
        (os.path.join(input_dir, shard["file"]), "" if converted else split, shard["records"])
        for split, entry in manifest["splits"].items()
        for shard in entry["shards"]
    ]
    kinds = {"objects_dropped": "object", "rows_rejected": "object", "files_skipped": "file"}
    skipped = [
        {
            "object_id": p.get("object_id") or "",
            "path": p["path"],
            "reason": p["reason"],
            "kind": kind,
        }
        for key, kind in kinds.items()
        for p in manifest["problems"][key]
    ]
    return shards, skipped


def data_shards(data, record_files, roi_size, work_dir, workers):
    """What a --data directory (record_sources) or --records files hold -> [(shard path, split,
    records or None)]; FileNotFoundError naming a file or directory that is not there."""
    if record_files:
        for path in record_files:
            if os.path.isdir(path):
                raise FileNotFoundError(
                    f"--records {path}: a directory; give record files, or the directory as --data"
                )
            if not os.path.isfile(path):
                raise FileNotFoundError(f"--records {path}: no such file")
        return [(path, "", None) for path in record_files]
    if not os.path.isdir(data):
        raise FileNotFoundError(f"--data {data}: not a directory")
    shards, _ = record_sources(data, roi_size, work_dir, workers)
    return shards


def read_batches(path, batch_size):
    """Serialized records of one shard in batches of batch_size: ([(number, record)], error).
    A read error (truncated file, CRC mismatch) ends the shard: the last item carries the error
    text and the records before it are kept."""
    import tensorflow as tf

    iterator = iter(tf.data.TFRecordDataset(path))
    batch, number = [], 0
    while True:
        try:
            record = next(iterator).numpy()
        except StopIteration:
            break
        except tf.errors.OpError as e:
            yield (
                batch,
                f"unreadable from record {number} on ({type(e).__name__}: {e.message.strip()})",
            )
            return
        batch.append((number, record))
        number += 1
        if len(batch) == batch_size:
            yield batch, None
            batch = []
    if batch:
        yield batch, None


def spreadsheet_safe(text):
    """A CSV cell that no spreadsheet runs as a formula: text starting with = + - @ or a tab or
    carriage return gets a leading apostrophe (shown, not evaluated); other text is unchanged.
    Only the CSV is changed: the records and every JSON output keep the id as it is."""
    return "'" + text if text.startswith(FORMULA_START) else text
