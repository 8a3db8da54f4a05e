"""Exposures of one object -> a SequenceRecord: observation dates, date of maximum, drop rules."""

import numpy as np

from tao_keras import classes, request_cleanup
from tao_keras.lightcurves import photometry
from tfrecords import schema
from tools.conversion import exposures as exp
from tools.conversion import sources as src


def group_nights(mjd, nights):
    """Date index per exposure of a sorted MJD array from the survey's night labels [n].

    Exposures labelled with one night form one date, however far apart their times (the TAO
    release spreads one night's MJDs over most of a day, so time gaps alone can merge two
    consecutive nights). Nights whose time ranges overlap are merged into one date, so that
    dates stay contiguous in time order. Returns (date_index int64 [n], merged night count).
    """
    mjd = np.asarray(mjd, dtype=np.float64)
    ranges = {}
    for t, night in zip(mjd, nights):
        low, high = ranges.get(night, (t, t))
        ranges[night] = (min(low, t), max(high, t))
    ordered = sorted(ranges.items(), key=lambda item: item[1])
    date_of, date, end, merged = {}, -1, -np.inf, 0
    for night, (low, high) in ordered:
        if low > end:
            date += 1
        else:
            merged += 1
        date_of[night] = date
        end = max(end, high)
    return np.array([date_of[n] for n in nights], np.int64), merged


def brightest_date(images, date_index):
    """Index of the date whose median central flux is highest (robust to one cosmic ray)."""
    flux = photometry.ranking_flux(images)
    num_dates = int(date_index[-1]) + 1
    medians = np.array(
        [
            np.nanmedian(flux[date_index == d])
            if np.isfinite(flux[date_index == d]).any()
            else -np.inf
            for d in range(num_dates)
        ]
    )
    return int(np.argmax(medians))


def build_record(source, exposures, max_date_tolerance_days, metadata=None):
    """Sort, group and locate the maximum -> (SequenceRecord, None) or (None, drop Problem).

    With a catalog max_mjd, the date holding the exposure nearest to it is the date of
    maximum (data-format.md); only with a tolerance (days, the paper's stricter rule: the
    maximum must have been observed) is the object dropped when that exposure is further.
    Without max_mjd, the brightest date of the central source is taken (flagged estimated).
    The distance to max_mjd goes into metadata["max_date_distance_days"] (None without one).
    """
    metadata = metadata if metadata is not None else {}
    if not exposures:
        return None, src.Problem("object", source.path, "no readable exposure", source.object_id)
    order = np.argsort([e.mjd for e in exposures], kind="stable")
    mjd = np.array([exposures[i].mjd for i in order], dtype=np.float64)
    images = np.stack([exposures[i].roi for i in order]).astype(np.float32, copy=False)
    nights = [exposures[i].night for i in order]
    if all(nights):  # the survey's own night labels (release layout)
        date_index, _ = group_nights(mjd, nights)
    else:
        date_index = request_cleanup.date_index_numpy(mjd)
    num_dates = int(date_index[-1]) + 1
    if num_dates < schema.MIN_OBSERVATION_DATES:
        return None, src.Problem(
            "object",
            source.path,
            f"only {num_dates} observation date(s), at least {schema.MIN_OBSERVATION_DATES} needed",
            source.object_id,
        )
    if source.max_mjd is not None:
        nearest = int(np.argmin(np.abs(mjd - source.max_mjd)))
        distance = abs(mjd[nearest] - source.max_mjd)
        metadata["max_date_distance_days"] = float(distance)
        if max_date_tolerance_days is not None and distance > max_date_tolerance_days:
            return None, src.Problem(
                "object",
                source.path,
                f"no observation at the date of maximum: nearest exposure is {distance:.1f} d from "
                f"max_mjd {source.max_mjd} (tolerance {max_date_tolerance_days} d)",
                source.object_id,
            )
        max_date, max_mjd, estimated = int(date_index[nearest]), source.max_mjd, False
    else:
        max_date = brightest_date(images, date_index)
        max_mjd, estimated = float(np.mean(mjd[date_index == max_date])), True
    ra = source.ra if source.ra is not None else metadata.get("ra")
    dec = source.dec if source.dec is not None else metadata.get("dec")
    record = schema.SequenceRecord(
        object_id=source.object_id,
        label=classes.label_index(source.label),
        ra=float("nan") if ra is None else float(ra),
        dec=float("nan") if dec is None else float(dec),
        max_mjd=float(max_mjd),
        max_mjd_estimated=estimated,
        max_date_index=max_date,
        images=images,
        mjd=mjd,
        date_index=date_index,
    )
    return record, None


def read_object(source, roi_size, max_date_tolerance_days):
    """Read one object of either layout -> (record or None, problems, stats dict).

    Runs in converter worker processes: numpy and astropy only, no TensorFlow.
    """
    duplicates, metadata = 0, {}
    if source.layout == src.RELEASE_LAYOUT:
        found, problems, duplicates, metadata = exp.read_release_file(source, roi_size)
    else:
        found, problems = exp.read_folder(source, roi_size)
    record, dropped = build_record(source, found, max_date_tolerance_days, metadata)
    if dropped is not None and not any(p.kind == "object" for p in problems):
        problems.append(dropped)
    stats = {
        "duplicates": duplicates,
        "padded": sum(e.padded for e in found),
        "max_date_distance_days": metadata.get("max_date_distance_days")
        if record is not None
        else None,
    }
    return record, problems, stats
