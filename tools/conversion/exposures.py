"""Read exposures into (MJD, region of interest) pairs, following docs/data-format.md exactly.

Pixel values are kept as astropy returns them (BSCALE/BZERO applied), with BLANK pixels
and cutout areas beyond the image edge set to NaN; nothing is resampled, so the RoI holds
the original values. Every rejection raises ExposureError with the reason.
"""

import dataclasses
import os
import re
import warnings

import numpy as np
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError
from astropy.time import Time
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS, Wcsprm

from tfrecords import schema
from tools.conversion import sources as src

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ExposureError(ValueError):
    """This exposure is unusable; the message says why."""


@dataclasses.dataclass(frozen=True)
class Exposure:
    mjd: float
    roi: np.ndarray  # float32 [roi_size, roi_size]
    path: str
    padded: bool = False  # part of the RoI lay beyond the image edge (NaN there)
    night: str | None = (
        None  # the observing night as the survey labelled it (release `Date`/`DATE`)
    )


def _number(header, key):
    value = header[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value).strip())
        except ValueError:
            raise ExposureError(f"{key} is not a number: {header[key]!r}")
    if not np.isfinite(value):
        raise ExposureError(f"{key} is not finite: {value!r}")
    return float(value)


def _date_obs_mjd(header):
    date = str(header["DATE-OBS"]).strip()
    if _DATE_ONLY.fullmatch(date):  # only a date: the time is in TIME-OBS
        if "TIME-OBS" not in header:
            raise ExposureError(f"DATE-OBS {date!r} holds only a date and TIME-OBS is missing")
        date = f"{date}T{str(header['TIME-OBS']).strip()}"
    try:
        return float(Time(date.replace(" ", "T"), format="isot", scale="utc").mjd)
    except ValueError as e:
        raise ExposureError(f"DATE-OBS/TIME-OBS {date!r} is not ISO 8601: {e}")


PLAUSIBLE_MJD = schema.PLAUSIBLE_MJD  # the one rule, shared with the served model


def plausible_mjd(mjd, what="observation time"):
    """mjd unchanged, or ExposureError when it is outside any plausible survey (1900-2100)."""
    if not PLAUSIBLE_MJD[0] <= mjd <= PLAUSIBLE_MJD[1]:
        raise ExposureError(
            f"{what} MJD {mjd!r} is outside any plausible survey "
            f"({PLAUSIBLE_MJD[0]:.0f}-{PLAUSIBLE_MJD[1]:.0f}, years 1900-2100)"
        )
    return mjd


def observation_mjd(*headers):
    """MJD of the exposure: MJD-OBS, else DATE-OBS (+TIME-OBS), else MJD, else JD - 2400000.5.

    Each header is searched in turn (image HDU first, then the primary). A present but
    unusable keyword is an error rather than silently falling through to a worse one, and so
    is a time outside 1900-2100.
    """
    for header in headers:
        if "MJD-OBS" in header:
            return plausible_mjd(_number(header, "MJD-OBS"))
        if "DATE-OBS" in header:
            return plausible_mjd(_date_obs_mjd(header))
        if "MJD" in header:
            return plausible_mjd(_number(header, "MJD"))
        if "JD" in header:
            return plausible_mjd(_number(header, "JD") - 2400000.5)
    raise ExposureError("no observation time (none of MJD-OBS, DATE-OBS, MJD, JD in the header)")


def _image_hdu(hdul):
    """The primary HDU if it holds data, else the first image extension (tile-compressed too)."""
    if hdul[0].data is not None:
        return hdul[0]
    for hdu in hdul[1:]:
        if isinstance(hdu, (fits.ImageHDU, fits.CompImageHDU)) and hdu.data is not None:
            return hdu
    raise ExposureError("no image data in the primary HDU or any image extension")


def pixels(hdu):
    """float32 2-D pixel values with BLANK -> NaN; a one-plane 3-D cube is accepted."""
    data = hdu.data
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ExposureError(
            f"image has shape {data.shape}, expected 2-D (or a cube with one plane)"
        )
    header = hdu.header
    blank = None
    if data.dtype.kind in "iu" and "BLANK" in header:
        # astropy leaves unscaled and pseudo-unsigned integers as integers: apply BLANK here.
        blank = header["BLANK"] * header.get("BSCALE", 1) + header.get("BZERO", 0)
    out = data.astype(np.float32)
    if blank is not None:
        out[data == blank] = np.nan
    return out


def region_of_interest(image, roi_size, position=None):
    """RoI [roi_size, roi_size] around pixel position (x, y) (default: image centre), no resampling.

    The position ends up within half a pixel of the RoI's geometric centre ((roi_size - 1) / 2
    in each axis). Returns (roi, padded), padded=True when part of it lay beyond the edge (NaN).
    """
    height, width = image.shape
    if height < roi_size or width < roi_size:
        raise ExposureError(
            f"image is {height}x{width}, smaller than the {roi_size}x{roi_size} region of interest"
        )
    if position is None:
        position = ((width - 1) / 2.0, (height - 1) / 2.0)
    try:
        cutout = Cutout2D(
            image, position, (roi_size, roi_size), mode="partial", fill_value=np.nan, copy=True
        )
    except NoOverlapError:
        raise ExposureError(
            f"the object's position (pixel x={position[0]:.1f}, y={position[1]:.1f}) "
            f"falls outside the {width}x{height} image"
        )
    padded = cutout.slices_cutout != (slice(0, roi_size), slice(0, roi_size))
    return cutout.data.astype(np.float32, copy=False), padded


# Keywords wcslib reads for a celestial WCS (papers I-III, TPV/PV, SIP and lookup-table
# distortions), with optional alternate-WCS letter. Handing wcslib only these cards, as one
# string, avoids astropy verifying every card of the header (that cost more than the read).
_WCS_KEYWORD = re.compile(
    r"(WCSAXES|CTYPE|CUNIT|CRVAL|CRPIX|CDELT|CROTA|CD\d_|PC\d_|PV\d_|PS\d_|LONPOLE|"
    r"LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|A_|B_|AP_|BP_|CPDIS|CQDIS|DP\d|DQ\d|"
    r"CPERR|CQERR|D2IM|MJD-OBS|DATE-OBS)"
)
_DISTORTION_KEYWORD = re.compile(r"(A_ORDER|B_ORDER|CPDIS|CQDIS|D2IM)")


def _sky_position(header, ra, dec):
    """Pixel (x, y), 0-based, of (ra, dec) through the header's celestial WCS; None without one.

    Plain WCS goes straight to wcslib (astropy's Wcsprm); headers with SIP or lookup-table
    distortions use astropy's full WCS, which applies them.
    """
    if ra is None or dec is None or "CTYPE1" not in header:
        return None
    cards = [card for card in header.cards if _WCS_KEYWORD.match(card.keyword)]
    text = "".join(card.image for card in cards)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        try:
            if any(_DISTORTION_KEYWORD.match(card.keyword) for card in cards):
                wcs = WCS(text, naxis=2)
                prm = wcs.wcs

                def transform(world):
                    return wcs.all_world2pix(world, 0)
            else:
                prm = Wcsprm(header=text.encode("ascii"), relax=True)
                prm.fix()

                def transform(world):
                    return prm.s2p(world, 0)["pixcrd"]

            celestial = prm.lng >= 0 and prm.lat >= 0 and prm.naxis == 2
            if not celestial:
                return None
            world = [0.0, 0.0]
            world[prm.lng], world[prm.lat] = ra, dec
            x, y = transform([world])[0]
        except ExposureError:
            raise
        except Exception as e:  # wcslib raises several types for malformed keywords
            raise ExposureError(f"unreadable WCS: {type(e).__name__}: {e}")
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ExposureError(f"WCS cannot place RA={ra}, Dec={dec} on the image")
    return float(x), float(y)


def _check_not_blank(roi):
    if not np.isfinite(roi).any():
        raise ExposureError("every pixel of the region of interest is NaN or blank")


def read_exposure(path, roi_size, ra=None, dec=None):
    """One exposure file of the catalog layout -> Exposure (raises ExposureError)."""
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = _image_hdu(hdul)
            mjd = observation_mjd(hdu.header, hdul[0].header)
            image = pixels(hdu)
            roi, padded = region_of_interest(image, roi_size, _sky_position(hdu.header, ra, dec))
    except ExposureError:
        raise
    except Exception as e:  # zlib, tile-decompression, h5 ... errors: this file's problem only
        raise ExposureError(f"unreadable FITS file: {type(e).__name__}: {e}") from None
    _check_not_blank(roi)
    return Exposure(mjd, roi, path, padded)


def _outside(path, target, object_id, kind):
    return src.Problem(
        kind,
        path,
        f"symlink resolving outside the input directory (to {target}): not read",
        object_id,
    )


def read_folder(source, roi_size):
    """Exposures of a catalog-layout object folder -> (exposures, problems).

    Files are read in name order; a later file with an exposure time already seen is
    reported as a duplicate and skipped.
    """
    problems = []
    if not os.path.isdir(source.path):
        return [], [
            src.Problem(
                "object", source.path, "no image folder for this catalog row", source.object_id
            )
        ]
    target = src.escapes(source.path, source.root)
    if target is not None:
        return [], [_outside(source.path, target, source.object_id, "object")]
    try:
        names = sorted(os.listdir(source.path))
    except OSError as e:
        return [], [
            src.Problem(
                "object",
                source.path,
                f"cannot list the folder: {type(e).__name__}: {e}",
                source.object_id,
            )
        ]
    exposures, times = [], set()
    for name in names:
        path = os.path.join(source.path, name)
        if not src.is_exposure_file(name) or not os.path.isfile(path):
            continue
        target = src.escapes(path, source.root)
        if target is not None:
            problems.append(_outside(path, target, source.object_id, "file"))
            continue
        try:
            exposure = read_exposure(path, roi_size, source.ra, source.dec)
        except ExposureError as e:
            problems.append(src.Problem("file", path, str(e), source.object_id))
            continue
        if exposure.mjd in times:
            problems.append(
                src.Problem(
                    "file", path, f"duplicate exposure time MJD {exposure.mjd}", source.object_id
                )
            )
            continue
        times.add(exposure.mjd)
        exposures.append(exposure)
    return exposures, problems


def _hierarch(header, key):
    for candidate in (key, f"HIERARCH {key}"):
        if candidate in header:
            return header[candidate]
    return None


def _text(value):
    """A table cell as stripped text (fitsio and astropy give str or bytes for 'A' columns)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return str(value).strip()


def _column(table, *names):
    """The first of `names` (case-insensitive) among the table's columns, or None."""
    present = {n.lower(): n for n in table.columns.names}
    for name in names:
        if name.lower() in present:
            return present[name.lower()]
    return None


def _release_position(hdul):
    """(ra, dec) in degrees: HDU 1's header (where the release keeps the object's metadata), else
    the primary's, else the first image HDU that has them; None for what is found nowhere."""
    headers = [hdul[1].header, hdul[0].header] + [
        h.header for h in hdul[2:] if isinstance(h, fits.ImageHDU)
    ]
    for header in headers:
        ra, dec = _hierarch(header, "RA_(J2000)"), _hierarch(header, "DEC_(J2000)")
        try:
            ra, dec = float(ra), float(dec)
        except (TypeError, ValueError):
            continue
        if np.isfinite(ra) and np.isfinite(dec):
            return ra, dec
    return None, None


def read_release_file(source, roi_size):
    """One TAO-release object file -> (exposures, problems, duplicates_dropped, metadata).

    Follows the release as its authors wrote it (docs/data-format.md, section 2): HDU 1 is the
    image table (HDU_Ext, MJD and the night `Date`/`DATE`; in non-transient files HDU_Ext and
    MJD are strings) and its header holds the object's metadata; images follow from HDU 2.
    Rows are in file-name order, not time order (sorted later); a row repeating an exposure
    time is dropped and counted, not reported. metadata: ra, dec (degrees) when found.
    """
    problems, exposures, times, duplicates, used = [], [], set(), 0, {}
    path = source.path
    target = src.escapes(path, source.root)
    if target is not None:
        return [], [_outside(path, target, source.object_id, "object")], 0, {}
    try:
        with fits.open(path, memmap=False) as hdul:
            if len(hdul) < 3 or not isinstance(hdul[1], fits.BinTableHDU):
                raise ExposureError(
                    "expected a primary HDU, an image table in HDU 1 and images after it"
                )
            ra, dec = _release_position(hdul)
            columns = _release_columns(hdul[1].data)
            for row, (ext, mjd, night) in enumerate(zip(*columns)):
                where = f"{path}[HDU {_text(ext)}, table row {row}]"
                try:
                    ext, mjd = _release_row(ext, mjd)
                    if mjd in times:
                        duplicates += 1
                        continue
                    if not 2 <= ext < len(hdul) or not isinstance(hdul[ext], fits.ImageHDU):
                        raise ExposureError(
                            f"HDU_Ext {ext} is not an image extension of this file "
                            f"({len(hdul)} HDUs)"
                        )
                    if ext in used:  # each image is read once: memory stays bounded by the file
                        duplicates += 1
                        continue
                    roi, padded = region_of_interest(pixels(hdul[ext]), roi_size)
                    _check_not_blank(roi)
                except ExposureError as e:
                    problems.append(src.Problem("file", where, str(e), source.object_id))
                    continue
                except Exception as e:  # a corrupt image HDU costs that image only
                    reason = f"unreadable image: {type(e).__name__}: {e}"
                    problems.append(src.Problem("file", where, reason, source.object_id))
                    continue
                used[ext] = row
                times.add(mjd)
                label = None if night is None else _text(night) or None
                exposures.append(Exposure(mjd, roi, f"{path}[HDU {ext}]", padded, label))
    except ExposureError as e:
        return [], [src.Problem("object", path, str(e), source.object_id)], 0, {}
    except Exception as e:  # zlib, tile-decompression ... errors: this object's problem only
        reason = f"unreadable FITS file: {type(e).__name__}: {e}"
        return [], [src.Problem("object", path, reason, source.object_id)], 0, {}
    metadata = {} if ra is None else {"ra": ra, "dec": dec}
    return exposures, problems, duplicates, metadata


def _release_columns(table):
    """(HDU_Ext values, MJD values, night labels or None each) of a release image table;
    ExposureError naming a missing column."""
    names = {}
    for column in ("HDU_Ext", "MJD"):
        names[column] = _column(table, column)
        if names[column] is None:
            raise ExposureError(f"image table (HDU 1) has no {column} column")
    night_column = _column(table, "Date", "DATE")
    nights = table[night_column] if night_column else [None] * len(table)
    return table[names["HDU_Ext"]], table[names["MJD"]], nights


def _release_row(ext, mjd):
    """One table row's (HDU_Ext, MJD) as (int, float), strings included (non-transient files);
    ExposureError saying what is wrong."""
    try:
        ext = int(_text(ext))
    except ValueError:
        raise ExposureError(f"HDU_Ext {_text(ext)!r} is not an integer")
    try:
        mjd = float(_text(mjd))
    except ValueError:
        raise ExposureError(f"MJD {_text(mjd)!r} is not a number")
    if not np.isfinite(mjd):
        raise ExposureError(f"MJD in the table is not finite: {mjd}")
    plausible_mjd(mjd, "MJD in the table:")
    return ext, mjd
