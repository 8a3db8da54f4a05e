"""Where each model errs: the arg-max outcome of every scored object, grouped by a catalogue
column (the simulator's `subtype`: STAR, GALAXY, HPM, FLARE, ...) and by peak magnitude.

  python -m tools.error_breakdown RUN_DIR [RUN_DIR ...] [--split test] [--column subtype]
      [--magnitude_column peak_mag] [--magnitude_bins 15,16,17,18,19] [--output table.md]

A mean max-F1 says how often a model is right, not on which objects it is wrong. Every run's
report.json keeps each model's predictions (object ids, labels, probabilities); this tool
looks each object up in its survey's catalog.csv (found through the records' manifest: the
conversion's catalog-layout input; `--catalog` names it instead) and prints, per model, one
row per group: the objects, the share classified right (arg-max), and where the others went;
then the share right per magnitude bin. Runs of several surveys pool (each object is looked
up in its own survey's catalogue); several trainings on one survey count once each, and a
model that several reports repeat with identical predictions (one run's forest compared
twice) counts once; a forest retrained with another seed counts again. Records converted
from the release layout (TAO_transients) have no catalogue: give --catalog a CSV of your own
(object_id plus the columns to group by).
"""

import hashlib
import json
import math
import os
import sys

import numpy as np
from absl import app, flags

from tao_keras import files, run_layout
from tfrecords import manifest as manifest_file
from tools.conversion import sources

FLAGS = flags.FLAGS


def catalog_of(records_dir):
    """The catalog-layout input directory a records directory was converted from (its
    manifest's `inputs`); ValueError when there is none (a release conversion) or several."""
    manifest = manifest_file.load(records_dir)
    found = [
        i
        for i, layout in zip(manifest.get("inputs", []), manifest.get("layouts", []))
        if layout == sources.CATALOG_LAYOUT
    ]
    if len(found) != 1:
        raise ValueError(
            f"{manifest_file.path(records_dir)}: {len(found)} catalog-layout inputs "
            f"({manifest.get('inputs')}); name the catalogue with --catalog"
        )
    return found[0]


def load_catalog(where):
    """{object_id: {column: text}} of a dataset directory (its catalog.csv) or a CSV file."""
    if os.path.isdir(where):
        return sources.catalog_columns(where)
    return sources.catalog_columns(os.path.dirname(where) or ".", os.path.basename(where))


def outcomes(reports, catalogs, split, column, magnitude_column=None):
    """One row per scored object and model, pooled over the runs.

    reports: [report dict] (run_layout.load_report); catalogs: [{object_id: {column: text}}],
    the catalogue of each report's survey; split: 'test' or 'val'; column: the grouping
    column (an empty value groups by the true class); magnitude_column: None or a column of
    numbers. -> {model: [(group, magnitude or nan, true class, predicted class)]}; a model
    whose predictions repeat exactly those of an earlier report counts once. ValueError
    naming the object or the column when a catalogue lacks it.
    """
    rows, seen = {}, set()
    for report, catalog in zip(reports, catalogs):
        names = report["class_names"]
        for model, by_split in report.get("predictions", {}).items():
            if split not in by_split:
                continue
            p = by_split[split]
            digest = hashlib.sha256(json.dumps([model, p], sort_keys=True).encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            predicted = np.argmax(np.asarray(p["probabilities"], float), axis=1)
            for object_id, label, guess in zip(p["object_id"], p["label"], predicted):
                entry = catalog.get(object_id)
                if entry is None:
                    raise ValueError(f"object {object_id} of {model} is not in the catalogue")
                if column not in entry:
                    raise ValueError(
                        f"the catalogue has no column {column!r} (it has: {sorted(entry)})"
                    )
                magnitude = math.nan
                if magnitude_column and entry.get(magnitude_column):
                    try:
                        magnitude = float(entry[magnitude_column])
                    except ValueError:
                        raise ValueError(
                            f"object {object_id}: {magnitude_column} "
                            f"{entry[magnitude_column]!r} is not a number"
                        ) from None
                rows.setdefault(model, []).append(
                    (entry[column] or names[label], magnitude, names[label], names[int(guess)])
                )
    return rows


def breakdown(rows):
    """{model: {group: {"objects", "right" (share), "predicted" ({class: count} of the
    wrong ones)}}} from outcomes()."""
    out = {}
    for model, items in rows.items():
        groups = out.setdefault(model, {})
        for group, _, truth, guess in items:
            g = groups.setdefault(group, {"objects": 0, "right": 0, "predicted": {}})
            g["objects"] += 1
            if guess == truth:
                g["right"] += 1
            else:
                g["predicted"][guess] = g["predicted"].get(guess, 0) + 1
        for g in groups.values():
            g["right"] = g["right"] / g["objects"]
    return out


def bin_labels(edges):
    """Labels of the bins below, between and above the edges: '<15', '15-16', ..., '>=19'."""
    return (
        [f"<{edges[0]:g}"]
        + [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])]
        + [f">={edges[-1]:g}"]
    )


def by_magnitude(rows, edges):
    """{model: {group: [(objects, share right) per bin of bin_labels(edges)]}}; objects without
    a magnitude are left out."""
    out = {}
    for model, items in rows.items():
        for group in sorted({r[0] for r in items}):
            mags = np.array([r[1] for r in items if r[0] == group])
            right = np.array([r[2] == r[3] for r in items if r[0] == group])
            index = np.digitize(mags, edges)
            cells = []
            for b in range(len(edges) + 1):
                chosen = (index == b) & np.isfinite(mags)
                n = int(chosen.sum())
                cells.append((n, float(right[chosen].mean()) if n else math.nan))
            out.setdefault(model, {})[group] = cells
    return out


def markdown(table, magnitudes=None, edges=(), split="test"):
    """The breakdown (and the magnitude table) as Markdown, one section per model."""
    lines = []
    for model, groups in table.items():
        lines += [
            f"### {model}, {split}: arg-max outcome by group",
            "",
            "| group | objects | right | wrong, classified as |",
            "|---|---|---|---|",
        ]
        for group in sorted(groups):
            g = groups[group]
            wrong = ", ".join(
                f"{k} {v}" for k, v in sorted(g["predicted"].items(), key=lambda x: -x[1])
            )
            lines.append(f"| {group} | {g['objects']} | {100 * g['right']:.0f}% | {wrong or '–'} |")
        lines.append("")
        if magnitudes and model in magnitudes:
            labels = bin_labels(edges)
            lines += [
                f"Share right by magnitude ({split}; objects in brackets):",
                "",
                "| group | " + " | ".join(labels) + " |",
                "|---|" + "---|" * len(labels),
            ]
            for group, cells in magnitudes[model].items():
                text = [f"{100 * r:.0f}% ({n})" if n else "–" for n, r in cells]
                lines.append(f"| {group} | " + " | ".join(text) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("give one or more run directories")
    if FLAGS.split not in ("test", "val"):
        raise app.UsageError(f"--split {FLAGS.split!r}: test or val")
    try:
        edges = sorted(float(e) for e in FLAGS.magnitude_bins)
    except ValueError as e:
        raise app.UsageError(f"--magnitude_bins: {e}")
    try:
        reports = [run_layout.load_report(r, "each argument") for r in run_dirs]
        cache, catalogs = {}, []
        for report in reports:
            where = FLAGS.catalog or catalog_of(report["records"])
            if where not in cache:
                cache[where] = load_catalog(where)
            catalogs.append(cache[where])
        rows = outcomes(reports, catalogs, FLAGS.split, FLAGS.column, FLAGS.magnitude_column)
    except (OSError, ValueError, sources.ConversionError) as e:  # ManifestError: a ValueError
        sys.exit(f"error: {e}")
    if not rows:
        sys.exit(f"error: no predictions on split {FLAGS.split!r} in {', '.join(run_dirs)}")
    magnitudes = by_magnitude(rows, edges) if FLAGS.magnitude_column and edges else None
    text = markdown(breakdown(rows), magnitudes, edges, FLAGS.split)
    print(text)
    if FLAGS.output:
        files.write_text_atomic(FLAGS.output, text + "\n")


def define_flags():
    """The command's flags (defined when run as a program only: the functions above are
    imported by tests and other tools, whose processes have flags of their own)."""
    flags.DEFINE_string("split", "test", "Which split's predictions: test or val.")
    flags.DEFINE_string(
        "column", "subtype", "Catalogue column to group objects by (empty values: the class label)."
    )
    flags.DEFINE_string(
        "magnitude_column",
        "peak_mag",
        "Catalogue column of the magnitude (empty: no magnitude table).",
    )
    flags.DEFINE_list(
        "magnitude_bins", ["15", "16", "17", "18", "19"], "Edges of the magnitude bins (ascending)."
    )
    flags.DEFINE_string(
        "catalog",
        None,
        "A catalog-layout dataset directory (or a CSV file) for every run given, "
        "instead of the one each run's records were converted from.",
    )
    flags.DEFINE_string("output", None, "Also write the Markdown here.")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    define_flags()
    console.run(main, __name__)


if __name__ == "__main__":
    cli()
