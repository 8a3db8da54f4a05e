"""Record schema: one tf.train.Example per object (a whole image sequence).

Kept free of TensorFlow so that converter worker processes can build records without
importing it; `tfrecords.writer` and `tfrecords.parser` turn this table into bytes and
tensors. Bump SCHEMA_VERSION whenever a field changes meaning or encoding.
"""

import dataclasses

import numpy as np

SCHEMA_VERSION = 1

# A record has at least this many observation dates: one triplet of dates, TAO-Net's smallest
# input (and the paper's drop rule, 2.5). The converter drops shorter objects; serving refuses them.
MIN_OBSERVATION_DATES = 3

# Exposures less than this apart (days) share an observation date (docs/data-format.md); the
# converter and the exported model group dates by this one rule.
SAME_DATE_DAYS = 0.5

# Times outside these (MJD of 1900-01-01 and 2100-01-01) belong to no survey: a corrupt or
# crafted header or request. The converter refuses such a file, the served model such a row.
PLAUSIBLE_MJD = (15020.0, 88069.0)

# Storage kinds: "int64" -> Int64List, "string" -> BytesList (UTF-8),
# "float64"/"float32" -> one BytesList entry holding the little-endian array
# (float32 would lose ~6 minutes at MJD 59000, so times and coordinates are float64).
FIELDS = {
    "schema_version": ("int64", "scalar"),
    "object_id": ("string", "scalar"),
    "label": ("int64", "scalar"),  # index into tao_keras.classes.CLASS_NAMES, -1 = unlabelled
    "ra": ("float64", "scalar"),  # degrees ICRS, NaN when unknown
    "dec": ("float64", "scalar"),
    "max_mjd": ("float64", "scalar"),  # MJD of maximum brightness (catalog or estimated)
    "max_mjd_estimated": ("int64", "scalar"),  # 1 when estimated from the images
    "max_date_index": ("int64", "scalar"),  # observation date holding the maximum
    "num_exposures": ("int64", "scalar"),
    "num_dates": ("int64", "scalar"),
    "roi_size": ("int64", "scalar"),
    "images": ("float32", "[num_exposures, roi_size, roi_size]"),  # raw pixel values, NaN = bad
    "mjd": ("float64", "[num_exposures]"),  # sorted ascending
    "date_index": ("int64", "[num_exposures]"),  # 0..num_dates-1, non-decreasing
}


@dataclasses.dataclass(frozen=True)
class SequenceRecord:
    """One object's image sequence as numpy arrays, exposures sorted by time.

    images: float32 [num_exposures, roi, roi]; mjd: float64 [num_exposures];
    date_index: int64 [num_exposures] grouping exposures into observation dates.
    """

    object_id: str
    label: int
    ra: float
    dec: float
    max_mjd: float
    max_mjd_estimated: bool
    max_date_index: int
    images: np.ndarray
    mjd: np.ndarray
    date_index: np.ndarray

    @property
    def num_exposures(self):
        return int(self.images.shape[0])

    @property
    def num_dates(self):
        return int(self.date_index[-1]) + 1 if len(self.date_index) else 0

    @property
    def roi_size(self):
        return int(self.images.shape[-1])

    def validate(self):
        """Raise ValueError naming the object and the broken invariant."""
        where = f"record {self.object_id!r}"
        n = self.images.shape[0]
        if self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2]:
            raise ValueError(f"{where}: images must be [n, roi, roi], got {self.images.shape}")
        if n == 0:
            raise ValueError(f"{where}: no exposures")
        if self.mjd.shape != (n,) or self.date_index.shape != (n,):
            raise ValueError(
                f"{where}: mjd {self.mjd.shape} and date_index "
                f"{self.date_index.shape} must both be [{n}]"
            )
        if np.any(np.diff(self.mjd) < 0):
            raise ValueError(f"{where}: mjd must be sorted ascending")
        steps = np.diff(self.date_index)
        if self.date_index[0] != 0 or np.any((steps != 0) & (steps != 1)):
            raise ValueError(f"{where}: date_index must start at 0 and grow by 0 or 1")
        if not 0 <= self.max_date_index < self.num_dates:
            raise ValueError(
                f"{where}: max_date_index {self.max_date_index} outside [0, {self.num_dates})"
            )


def first_dates(record, nights):
    """The record as it was after its first `nights` observation dates (early classification,
    tools.predict --nights): later exposures dropped, the date of maximum kept only if it is
    among those dates (else the last kept date). nights >= 1."""
    keep = record.date_index < nights
    return dataclasses.replace(
        record,
        images=record.images[keep],
        mjd=record.mjd[keep],
        date_index=record.date_index[keep],
        max_date_index=min(record.max_date_index, min(nights, record.num_dates) - 1),
    )
