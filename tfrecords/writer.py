"""Serialize SequenceRecords to tf.train.Example and write shards atomically."""

import os

import numpy as np
import tensorflow as tf

from tfrecords import schema


def _int64(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(values).tolist()))


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def encode(record):
    """SequenceRecord -> serialized tf.train.Example bytes (validated first)."""
    record.validate()
    values = {
        "schema_version": schema.SCHEMA_VERSION,
        "object_id": record.object_id,
        "label": record.label,
        "ra": record.ra,
        "dec": record.dec,
        "max_mjd": record.max_mjd,
        "max_mjd_estimated": int(record.max_mjd_estimated),
        "max_date_index": record.max_date_index,
        "num_exposures": record.num_exposures,
        "num_dates": record.num_dates,
        "roi_size": record.roi_size,
        "images": record.images,
        "mjd": record.mjd,
        "date_index": record.date_index,
    }
    feature = {}
    for name, (kind, _) in schema.FIELDS.items():
        value = values[name]
        if kind == "int64":
            feature[name] = _int64(value)
        elif kind == "string":
            feature[name] = _bytes(value.encode("utf-8"))
        else:  # float32 / float64 arrays as little-endian bytes
            array = np.ascontiguousarray(value, dtype="<f4" if kind == "float32" else "<f8")
            feature[name] = _bytes(array.tobytes())
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(
        deterministic=True
    )  # sorted map keys: identical bytes across runs


class ShardWriter:
    """Writes one TFRecord shard under a temporary name, renamed only on a clean close.

    An interrupted run therefore never leaves a file with the final shard name; the
    temporary file is removed when the `with` block exits with an exception.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        directory, name = os.path.split(self.path)
        self.tmp_path = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
        self._writer = tf.io.TFRecordWriter(self.tmp_path)
        self.count = 0

    def write(self, serialized):
        self._writer.write(serialized)
        self.count += 1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self._writer.close()
        if exc_type is None:
            os.replace(self.tmp_path, self.path)
        elif os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)
        return False
