"""Parse serialized records into tensors (graph-safe, for tf.data) or SequenceRecords."""

import numpy as np
import tensorflow as tf

from tfrecords import schema

_DTYPES = {"int64": tf.int64, "string": tf.string, "float64": tf.float64, "float32": tf.float32}


def feature_spec():
    """tf.io parsing spec derived from schema.FIELDS (bytes arrays are single strings)."""
    spec = {}
    for name, (kind, shape) in schema.FIELDS.items():
        if kind == "int64" and shape != "scalar":
            spec[name] = tf.io.RaggedFeature(tf.int64)
        elif kind == "int64":
            spec[name] = tf.io.FixedLenFeature([], tf.int64)
        else:
            spec[name] = tf.io.FixedLenFeature([], tf.string)
    return spec


def parse(serialized, roi_size=64):
    """One serialized record -> dict of tensors.

    images float32 [num_exposures, roi_size, roi_size]; mjd float64 [num_exposures];
    date_index int64 [num_exposures]; scalars for the rest (label int64, max_mjd float64...).
    Fails with InvalidArgument if the record's RoI size or schema version differ.
    """
    raw = tf.io.parse_single_example(serialized, feature_spec())
    out = {}
    for name, (kind, shape) in schema.FIELDS.items():
        value = raw[name]
        if kind in ("float32", "float64"):
            value = tf.io.decode_raw(value, _DTYPES[kind])
            if shape == "scalar":
                value = tf.reshape(value, [])
        out[name] = value
    checks = [
        tf.debugging.assert_equal(
            out["schema_version"],
            tf.constant(schema.SCHEMA_VERSION, tf.int64),
            message="record schema_version differs from this parser's",
        ),
        tf.debugging.assert_equal(
            out["roi_size"],
            tf.constant(roi_size, tf.int64),
            message="record roi_size differs from the requested roi_size",
        ),
    ]
    with tf.control_dependencies(checks):
        out["images"] = tf.reshape(out["images"], [-1, roi_size, roi_size])
    return out


def decode(serialized, roi_size=64):
    """Serialized record -> schema.SequenceRecord (eager; for tools and tests)."""
    t = parse(tf.constant(serialized), roi_size)
    return schema.SequenceRecord(
        object_id=t["object_id"].numpy().decode("utf-8"),
        label=int(t["label"]),
        ra=float(t["ra"]),
        dec=float(t["dec"]),
        max_mjd=float(t["max_mjd"]),
        max_mjd_estimated=bool(t["max_mjd_estimated"]),
        max_date_index=int(t["max_date_index"]),
        images=t["images"].numpy(),
        mjd=t["mjd"].numpy(),
        date_index=t["date_index"].numpy().astype(np.int64),
    )


def read_records(paths, roi_size=64):
    """Yield SequenceRecords from TFRecord files in order (eager, for tools and tests)."""
    for serialized in tf.data.TFRecordDataset(list(paths)):
        yield decode(serialized.numpy(), roi_size)
