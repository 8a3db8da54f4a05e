"""Alert packets in the field's format: Avro files following the ZTF alert schema, one packet
per exposure, read and written with fastavro.

Of the ZTF schema we use `objectId` (string), `candid` (long, unique per exposure),
`candidate.jd` (Julian Date of the exposure), `candidate.ra` and `candidate.dec` (degrees) and
`cutoutScience.stampData` (bytes: a gzipped FITS file whose primary HDU is the cutout, the
object at its centre). `SCHEMA` is that subset with ZTF's names and nesting (`schemavsn` and
`publisher` as ZTF writes them), so ZTF's own packets read the same way: fields we do not use
are ignored.

Reading never stops at a bad packet: `read_file` yields a `Packet` or a `BadPacket` (candid
when known, and the reason) for each record, and one `BadPacket` for a file that is not
readable Avro or whose schema lacks the fields above.
"""

import dataclasses
import gzip
import io
import math
import time

import numpy as np

JD_TO_MJD = 2400000.5


def _record(name, **fields):
    """An Avro record type of `fields` (name -> Avro type), in order."""
    return {
        "type": "record",
        "name": name,
        "fields": [{"name": k, "type": v} for k, v in fields.items()],
    }


SCHEMA = _record(
    "alert",
    schemavsn="string",
    publisher="string",
    objectId="string",
    candid="long",
    candidate=_record("candidate", jd="double", ra="double", dec="double"),
    cutoutScience=["null", _record("cutout", fileName="string", stampData="bytes")],
)
SCHEMA["namespace"] = "ztf"
REQUIRED = ("objectId", "candid", "candidate.jd", "candidate.ra", "candidate.dec")


@dataclasses.dataclass(frozen=True)
class Packet:
    """One exposure of one object: image float32 [roi, roi] raw pixels (NaN = bad)."""

    object_id: str
    candid: int
    mjd: float
    ra: float
    dec: float
    image: np.ndarray
    source: str  # "file.avro#record-number"
    read_at: float = 0.0  # time.perf_counter() when read (latency to its answer)


@dataclasses.dataclass(frozen=True)
class BadPacket:
    """A record (or a whole file) that cannot be used, and why."""

    source: str
    reason: str
    candid: int | None = None
    object_id: str | None = None


def cutout_bytes(image):
    """A cutout [H, W] as ZTF ships it: a FITS file, gzipped."""
    from astropy.io import fits

    buffer = io.BytesIO()
    fits.PrimaryHDU(np.asarray(image, np.float32)).writeto(buffer, output_verify="ignore")
    return gzip.compress(buffer.getvalue(), compresslevel=1)


def decode_cutout(data, roi_size):
    """gzipped (or plain) FITS bytes -> float32 [roi_size, roi_size]; ValueError saying why not
    (not gzip/FITS, no image, another size, no finite pixel)."""
    from astropy.io import fits

    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        with fits.open(io.BytesIO(raw), memmap=False) as hdul:
            image = next((h.data for h in hdul if getattr(h, "data", None) is not None), None)
    except Exception as e:  # gzip, zlib, FITS parsing errors: this packet's problem only
        raise ValueError(f"cutout is not a readable (gzipped) FITS file: {e}") from None
    if image is None or np.ndim(image) != 2:
        raise ValueError("cutout FITS has no 2-D image")
    if image.shape != (roi_size, roi_size):
        raise ValueError(
            f"cutout is {image.shape[0]}x{image.shape[1]}, the model takes {roi_size}x{roi_size}"
        )
    image = np.asarray(image, np.float32)
    if not np.isfinite(image).any():
        raise ValueError("cutout has no finite pixel")
    return image


def write_file(path, packets):
    """Write packets (dicts in SCHEMA's form, e.g. from `record`) to an Avro file."""
    import fastavro

    with open(path, "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(SCHEMA), packets, codec="null")


def record(object_id, candid, mjd, ra, dec, image):
    """One packet in SCHEMA's form for an exposure image [H, W] taken at `mjd`."""
    return {
        "schemavsn": "tao-keras-1",
        "publisher": "tao-keras simulator",
        "objectId": object_id,
        "candid": int(candid),
        "candidate": {"jd": float(mjd) + JD_TO_MJD, "ra": float(ra), "dec": float(dec)},
        "cutoutScience": {
            "fileName": f"candid{candid}_sci.fits.gz",
            "stampData": cutout_bytes(image),
        },
    }


def _missing_fields(schema):
    """Which REQUIRED fields a writer schema lacks (the nested candidate record included)."""
    fields = {f["name"]: f for f in schema.get("fields", [])}
    missing = [name for name in ("objectId", "candid") if name not in fields]
    candidate = fields.get("candidate", {}).get("type", {})
    names = (
        {f["name"] for f in candidate.get("fields", [])} if isinstance(candidate, dict) else set()
    )
    missing += [f"candidate.{n}" for n in ("jd", "ra", "dec") if n not in names]
    if "cutoutScience" not in fields:
        missing.append("cutoutScience")
    return missing


def read_file(path, roi_size):
    """Yield a Packet or a BadPacket per record of an Avro file, in file order; one BadPacket
    for the whole file when it is not Avro or its schema lacks the fields we use."""
    import fastavro

    try:
        f = open(path, "rb")
    except OSError as e:
        yield BadPacket(path, f"cannot open: {e.strerror or e}")
        return
    with f:
        try:
            reader = fastavro.reader(f)
        except Exception as e:  # fastavro raises ValueError, EOFError, ... on a foreign file
            yield BadPacket(path, f"not an Avro file: {type(e).__name__}: {e}")
            return
        missing = _missing_fields(reader.writer_schema)
        if missing:
            yield BadPacket(path, f"the Avro schema lacks {', '.join(missing)}")
            return
        number = 0
        while True:
            try:
                item = next(reader)
            except StopIteration:
                return
            except Exception as e:  # a truncated or corrupt block: the rest is unreadable
                yield BadPacket(
                    f"{path}#{number}", f"unreadable Avro block: {type(e).__name__}: {e}"
                )
                return
            yield packet_of(item, f"{path}#{number}", roi_size)
            number += 1


def packet_of(item, source, roi_size):
    """A decoded Avro record -> Packet, or BadPacket saying what is wrong with it."""
    candid, object_id = item.get("candid"), item.get("objectId")
    try:
        candidate = item["candidate"]
        jd, ra, dec = (float(candidate[k]) for k in ("jd", "ra", "dec"))
        if not isinstance(object_id, str) or not object_id:
            raise ValueError("objectId is empty")
        if not isinstance(candid, int):
            raise ValueError("candid is not an integer")
        if not all(math.isfinite(v) for v in (jd, ra, dec)):
            raise ValueError(f"non-finite candidate.jd/ra/dec ({jd}, {ra}, {dec})")
        cutout = item.get("cutoutScience")
        if not cutout or not cutout.get("stampData"):
            raise ValueError("no cutoutScience.stampData")
        image = decode_cutout(cutout["stampData"], roi_size)
    except (KeyError, TypeError, ValueError) as e:
        reason = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        return BadPacket(source, reason, candid if isinstance(candid, int) else None, object_id)
    return Packet(object_id, candid, jd - JD_TO_MJD, ra, dec, image, source, time.perf_counter())
