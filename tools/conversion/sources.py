"""Find the objects of a dataset in either documented layout (docs/data-format.md).

Nothing here reads pixels: the result is a list of ObjectSource (what to read, with its
label and metadata) plus the Problems found in the catalog or folder structure.
"""

import csv
import dataclasses
import math
import os
import re

from tao_keras import classes

CATALOG_LAYOUT = "catalog"
RELEASE_LAYOUT = "tao-release"
SPLITS = ("train", "val", "test")
_OBJECT_ID = re.compile(r"[A-Za-z0-9._+:-]+")
_EXPOSURE_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fz")
RELEASE_CLASS_FOLDERS = {
    "AGN": "AGN",
    "BZ": "BZ",
    "CV": "CV",
    "SN": "SN",
    "OTHER": "OTHER",
    "NON": "NT",
}


class ConversionError(Exception):
    """A problem that stops the conversion (unusable input, or any problem in strict mode)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something skipped, with the file (or catalog line) and the reason.

    kind: 'row' (catalog row rejected), 'file' (exposure skipped), 'object' (object dropped).
    """

    kind: str
    path: str
    reason: str
    object_id: str | None = None

    def __str__(self):
        return f"{self.path}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class ObjectSource:
    """One object to read: a folder of exposures (catalog layout) or one release file."""

    object_id: str
    label: str | None  # canonical class name, None = unlabelled
    layout: str
    path: str
    ra: float | None = None
    dec: float | None = None
    max_mjd: float | None = None
    split: str | None = None
    root: str | None = None  # the input directory: nothing outside it is read


def escapes(path, root):
    """The resolved target when `path` is a symlink (or lies under one) that resolves outside
    `root`, else None: such files and folders are refused, never read."""
    if root is None:
        return None
    target = os.path.realpath(path)
    base = os.path.realpath(root)
    return None if os.path.commonpath([target, base]) == base else target


def validate_object_id(object_id):
    """Raise ValueError unless the id is a safe folder name (no path escapes)."""
    if not object_id:
        raise ValueError("object_id is empty")
    if object_id.startswith(".") or not _OBJECT_ID.fullmatch(object_id):
        raise ValueError(
            f"object_id {object_id!r} is not allowed: use letters, digits and . _ - + : "
            "and do not start with '.'"
        )


def is_exposure_file(name):
    return name.lower().endswith(_EXPOSURE_SUFFIXES)


def detect_layout(directory):
    """'catalog' if DIR/catalog.csv exists, 'tao-release' if DIR/data/<CLASS>/ or DIR/<CLASS>/
    exist."""
    if os.path.isfile(os.path.join(directory, "catalog.csv")):
        return CATALOG_LAYOUT
    for root in (os.path.join(directory, "data"), directory):
        if os.path.isdir(root) and any(
            os.path.isdir(os.path.join(root, c)) for c in RELEASE_CLASS_FOLDERS
        ):
            return RELEASE_LAYOUT
    raise ConversionError(
        f"{directory}: neither a catalog layout (no catalog.csv) nor a TAO release "
        f"layout (no data/<CLASS>/ folders with CLASS in {sorted(RELEASE_CLASS_FOLDERS)})"
    )


def _undecodable(text):
    """True when text holds bytes that were not UTF-8 (read with errors='surrogateescape')."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _optional_float(row, column, low=-math.inf, high=math.inf):
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column} is not a number: {text!r}")
    if not (low <= value <= high) or math.isnan(value):
        raise ValueError(f"{column}={value} outside [{low}, {high}]")
    return value


def _catalog_rows(path):
    """[(line number, row dict)] of catalog.csv, header names stripped; ConversionError for an
    unreadable file or header, or one without an object_id column."""
    # Undecodable bytes are kept as surrogates and reject only their row (read_catalog).
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.DictReader(f)
        try:
            fieldnames = [name.strip() for name in (reader.fieldnames or [])]
            reader.fieldnames = fieldnames
            rows = [(reader.line_num, row) for row in reader]
        except csv.Error as e:  # e.g. a field over csv.field_size_limit()
            raise ConversionError(f"{path}:{reader.line_num}: unreadable CSV: {e}") from None
    if any(_undecodable(name) for name in fieldnames):
        raise ConversionError(f"{path}: the header row is not UTF-8 text")
    if "object_id" not in fieldnames:
        raise ConversionError(f"{path}: header row has no 'object_id' column (found: {fieldnames})")
    return rows


def catalog_columns(directory, name="catalog.csv"):
    """Every column of a catalog-layout dataset's catalog.csv (or another CSV `name` in that
    directory) by object: {object_id: {column: text}} (values stripped), for tools that group
    results by a column the conversion does not keep (the simulator's `subtype`, `peak_mag`).
    ConversionError naming the file and line for an unreadable file, an empty object_id or one
    that appears twice."""
    path = os.path.join(directory, name)
    table = {}
    for line, row in _catalog_rows(path):
        object_id = (row.get("object_id") or "").strip()
        if not object_id or object_id in table:
            reason = "an empty object_id" if not object_id else f"object_id {object_id!r} again"
            raise ConversionError(f"{path}:{line}: {reason}")
        table[object_id] = {
            k: (v or "").strip() for k, v in row.items() if isinstance(k, str) and k != "object_id"
        }
    return table


def read_catalog(directory):
    """Objects of a catalog-layout dataset -> (sources, problems, ignored_folders)."""
    path = os.path.join(directory, "catalog.csv")
    images = os.path.join(directory, "images")
    rows = _catalog_rows(path)

    sources, problems, seen = [], [], set()
    for line, row in rows:
        where = f"{path}:{line}"
        object_id = (row.get("object_id") or "").strip()
        try:
            bad = [k for k, v in row.items() if isinstance(v, str) and _undecodable(v)]
            if bad:
                raise ValueError(
                    f"not UTF-8 text (undecodable bytes in {', '.join(map(str, bad))})"
                )
            validate_object_id(object_id)
            if object_id in seen:
                raise ValueError(f"object_id {object_id!r} appears on an earlier row")
            label = classes.canonical_label(row.get("label"))
            split = (row.get("split") or "").strip().lower() or None
            if split is not None and split not in SPLITS:
                raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
            source = ObjectSource(
                object_id=object_id,
                label=label,
                layout=CATALOG_LAYOUT,
                path=os.path.join(images, object_id),
                root=directory,
                ra=_optional_float(row, "ra", 0.0, 360.0),
                dec=_optional_float(row, "dec", -90.0, 90.0),
                max_mjd=_optional_float(row, "max_mjd"),
                split=split,
            )
        except ValueError as e:
            problems.append(Problem("row", where, str(e), object_id or None))
            continue
        seen.add(object_id)
        sources.append(source)

    ignored = []
    if os.path.isdir(images):
        ids = {s.object_id for s in sources} | {p.object_id for p in problems}
        ignored = sorted(
            name
            for name in os.listdir(images)
            if os.path.isdir(os.path.join(images, name)) and name not in ids
        )
    return sources, problems, ignored


def list_release(directory):
    """Objects of a TAO release: <dir>[/data]/<CLASS>/<CRTS_ID>.fits -> (sources, problems,
    ignored)."""
    root = os.path.join(directory, "data")
    if not os.path.isdir(root):
        root = directory
    sources, problems, ignored = [], [], []
    for folder in sorted(os.listdir(root)):
        full = os.path.join(root, folder)
        if not os.path.isdir(full):
            continue
        if folder not in RELEASE_CLASS_FOLDERS:
            ignored.append(folder)
            continue
        for name in sorted(os.listdir(full)):
            if not is_exposure_file(name):
                continue
            object_id = re.sub(r"\.(fits|fit|fts)(\.gz)?$|\.fz$", "", name, flags=re.IGNORECASE)
            try:
                validate_object_id(object_id)
            except ValueError as e:
                problems.append(Problem("row", os.path.join(full, name), str(e)))
                continue
            sources.append(
                ObjectSource(
                    object_id=object_id,
                    label=RELEASE_CLASS_FOLDERS[folder],
                    layout=RELEASE_LAYOUT,
                    path=os.path.join(full, name),
                    root=directory,
                )
            )
    return sources, problems, ignored


def discover(directories):
    """All objects of one or more input directories (each in either layout).

    An object id met again in a later directory is reported and skipped.
    Returns (sources, problems, ignored_folders, layouts).
    """
    sources, problems, ignored, layouts, seen = [], [], [], [], set()
    for directory in directories:
        if not os.path.isdir(directory):
            raise ConversionError(f"{directory}: input directory does not exist")
        layout = detect_layout(directory)
        layouts.append(layout)
        found, trouble, skipped = (read_catalog if layout == CATALOG_LAYOUT else list_release)(
            directory
        )
        problems.extend(trouble)
        ignored.extend(os.path.join(directory, name) for name in skipped)
        for source in found:
            if source.object_id in seen:
                problems.append(
                    Problem(
                        "row",
                        source.path,
                        f"object_id {source.object_id!r} already read from an earlier input",
                        source.object_id,
                    )
                )
                continue
            seen.add(source.object_id)
            sources.append(source)
    return sources, problems, ignored, layouts
