"""The record schema: encode/decode round trip, invariants, atomic shard writing."""

import dataclasses
import os

import numpy as np
import pytest

from tao_keras import classes
from tfrecords import parser, schema, writer


def make_record(**changes):
    record = schema.SequenceRecord(
        object_id="CSS071204:100029+071116",
        label=4,
        ra=150.123456789012,
        dec=-20.5,
        max_mjd=55000.123456789,
        max_mjd_estimated=False,
        max_date_index=1,
        images=np.random.default_rng(0).normal(size=(5, 64, 64)).astype(np.float32),
        mjd=np.array([55000.1, 55000.107, 55001.3, 55004.2, 55004.21]),
        date_index=np.array([0, 0, 1, 2, 2]),
    )
    return dataclasses.replace(record, **changes)


def test_round_trip_is_exact_including_nan_and_float64_times():
    images = make_record().images.copy()
    images[0, 3, 4] = np.nan
    record = make_record(images=images)
    back = parser.decode(writer.encode(record))
    assert back.object_id == record.object_id and back.label == 4
    assert back.ra == record.ra and back.max_mjd == record.max_mjd  # float64, no loss
    np.testing.assert_array_equal(back.mjd, record.mjd)
    np.testing.assert_array_equal(back.images, record.images)
    np.testing.assert_array_equal(back.date_index, record.date_index)
    assert back.num_dates == 3 and back.max_date_index == 1


def test_unlabelled_record():
    back = parser.decode(writer.encode(make_record(label=classes.UNLABELLED)))
    assert back.label == -1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"mjd": np.array([55000.1, 55000.0, 55001.3, 55004.2, 55004.21])}, "sorted"),
        ({"date_index": np.array([0, 0, 2, 3, 3])}, "grow by 0 or 1"),
        ({"date_index": np.array([1, 1, 2, 3, 3])}, "start at 0"),
        ({"max_date_index": 3}, "max_date_index 3 outside"),
        ({"mjd": np.array([55000.1])}, "must both be [5]"),
        ({"images": np.zeros((5, 64, 32), np.float32)}, "must be [n, roi, roi]"),
    ],
)
def test_invalid_records_are_refused_by_the_writer(changes, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        writer.encode(make_record(**changes))


def test_shard_writer_renames_only_on_success(tmp_path):
    path = tmp_path / "train-00000-of-00001.tfrecord"
    with pytest.raises(RuntimeError):
        with writer.ShardWriter(path) as out:
            out.write(writer.encode(make_record()))
            assert os.path.exists(out.tmp_path) and not path.exists()
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with writer.ShardWriter(path) as out:
        out.write(writer.encode(make_record()))
    assert os.listdir(tmp_path) == [path.name]
    assert len(list(parser.read_records([str(path)]))) == 1
