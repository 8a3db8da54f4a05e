"""A simulated survey as the stream a broker receives: alert packets (Avro, the ZTF alert
schema's fields we use: tao_keras.alert_packets), one file per observing night, the exposures
in time order with the objects interleaved as a survey delivers them.

The cutouts are the converter's regions of interest (tools.conversion.exposures: the same
pixels the records hold), so a stream and a records directory of one survey give one model
the same answers.
"""

import collections
import math
import os

from tao_keras import alert_packets
from tools.conversion import exposures as exposure_io
from tools.conversion import sources

# Catalina (Arizona, UTC-7): an observing night runs from local noon to local noon, i.e.
# from MJD fraction 19/24; its label is the MJD of that noon's date.
NIGHT_START_FRACTION = 19.0 / 24.0


def night_of(mjd):
    """The observing night (an integer MJD) of an exposure time."""
    return int(math.floor(mjd - NIGHT_START_FRACTION))


def write_alerts(survey_dir, output_dir, roi_size=64):
    """Write the survey in survey_dir (tools.simulate_survey's output) as alert packets into
    output_dir/night-<MJD>.avro. Returns {"files", "packets", "objects", "skipped"}: an
    exposure the converter would skip is skipped here too (counted)."""
    found, _, _, _ = sources.discover([survey_dir])
    by_night = collections.defaultdict(list)
    skipped = 0
    for source in found:
        exposures, problems = exposure_io.read_folder(source, roi_size)
        skipped += len(problems)
        for exposure in exposures:
            by_night[night_of(exposure.mjd)].append((exposure.mjd, source, exposure.roi))
    os.makedirs(output_dir, exist_ok=True)
    candid, packets = 0, 0
    for night in sorted(by_night):
        items = sorted(by_night[night], key=lambda e: (e[0], e[1].object_id))
        records = []
        for mjd, source, roi in items:
            candid += 1
            records.append(
                alert_packets.record(
                    source.object_id, candid, mjd, source.ra or 0.0, source.dec or 0.0, roi
                )
            )
        alert_packets.write_file(os.path.join(output_dir, f"night-{night}.avro"), records)
        packets += len(records)
    return {"files": len(by_night), "packets": packets, "objects": len(found), "skipped": skipped}
