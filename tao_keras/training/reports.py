"""report.md (tables laid out like the paper's: per-class F1 and mean ± std) and report.json."""

import logging
import math
import os
import re

from tao_keras import files, metrics, run_layout


def percent(value):
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.2f}"
    )


SPLIT_TITLES = {
    "val": "Validation set",
    "test": "Test set",
    "train": "Training set",
    "all": "All labelled objects",
}


def _ci(interval):
    return "–" if not interval else f"[{percent(interval[0])}, {percent(interval[1])}]"


def _signed(value):
    return "–" if value is None else f"{100 * value:+.2f}"


def split_warning(split, support):
    """The warning for a split with fewer than metrics.MIN_RELIABLE_SUPPORT objects of a class
    (or none), else None."""
    small = {c: n for c, n in support.items() if n < metrics.MIN_RELIABLE_SUPPORT}
    if not small:
        return None
    listed = ", ".join(f"{c} {n}" for c, n in small.items())
    return (
        f"{SPLIT_TITLES.get(split, split)}: fewer than {metrics.MIN_RELIABLE_SUPPORT} objects of "
        f"{listed}. One object moves such a class's F1 by ~100/n points, its maximum F1 is high "
        "by chance, and the bootstrap intervals are themselves rough: read the chance level, "
        "not the ranks."
    )


def _summary_table(rows, split, intervals, calibration, reference):
    """The table beside the paper's: the interval, chance, decision metrics, calibration."""
    boot = (intervals or {}).get(split, {})
    lines = [
        f"Beside it: the 95% interval of mean max-F1 (paired bootstrap over the "
        f"{boot.get('_objects', '–')} objects every model scored, {boot.get('_draws', '–')} "
        "draws), the chance level of mean max-F1 for this split's class counts (mean of random "
        "scorings; 95% of them stay below the value in brackets), "
        + (f"the difference to the {reference} on the same objects, " if reference else "")
        + "the macro-F1 and accuracy of the arg-max class, and the expected calibration error "
        "(ECE) before and after the temperature fitted on validation.",
        "",
        "| model | mean max-F1 | 95% CI | chance | "
        + ("Δ vs forest [95% CI] | " if reference else "")
        + "macro-F1 | accuracy | ECE (T) | objects |",
        "|---|" + "---|" * (8 if reference else 7),
    ]
    for name, r in rows:
        b = boot.get(name, {})
        cal = (calibration or {}).get(name, {})
        ece = "–"
        if split in cal:
            ece = (
                f"{percent(cal[split]['before']['ece'])} → {percent(cal[split]['after']['ece'])} "
                f"(T={cal['temperature']:.2f})"
            )
        cells = [
            name,
            percent(r["mean_f1"]),
            _ci(b.get("ci")),
            f"{percent(r.get('chance_mean_f1'))} ({percent(r.get('chance_mean_f1_p95'))})",
        ]
        if reference:
            cells.append(
                "reference"
                if name == reference
                else f"{_signed(b.get('difference'))} {_ci(b.get('difference_ci'))}"
            )
        cells += [
            percent(r.get("macro_f1")),
            percent(r.get("accuracy")),
            ece,
            str(sum(r["support"].values())),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results, task, class_names, intervals=None, calibration=None, reference=None):
    """results: {model name: {split: metrics.evaluate output}} -> Markdown text.

    intervals: {split: intervals.paired output} or None; calibration: {model: {"temperature",
    split: calibration.summary}} or None; reference: the model the differences are to.
    """
    lines = [f"# TAO-Net report: task `{task}`", ""]
    present = {split for by_split in results.values() for split in by_split}
    for split in [s for s in SPLIT_TITLES if s in present] + sorted(present - set(SPLIT_TITLES)):
        rows = [(name, by_split[split]) for name, by_split in results.items() if split in by_split]
        support = rows[-1][1]["support"]
        lines += [
            f"## {SPLIT_TITLES.get(split, split)}",
            "",
            "Objects per class: " + ", ".join(f"{c} {support[c]}" for c in class_names),
            "",
        ]
        warning = split_warning(split, support)
        if warning:
            lines += [f"> **Warning** — {warning}", ""]
        lines += [
            "Maximum F1 (%) per class (the paper's metric):",
            "",
            "| model | " + " | ".join(class_names) + " | mean ± std |",
            "|---|" + "---|" * (len(class_names) + 1),
        ]
        for name, r in rows:
            cells = [percent(r["f1"][c]) for c in class_names]
            lines.append(
                f"| {name} | "
                + " | ".join(cells)
                + f" | {percent(r['mean_f1'])} ± {percent(r['std_f1'])} |"
            )
        lines.append("")
        lines += _summary_table(rows, split, intervals, calibration, reference)
        lines.append("")
        name, r = rows[-1]
        lines += [
            f"Confusion matrix of {name} (rows: true, columns: predicted):",
            "",
            "| | " + " | ".join(class_names) + " |",
            "|---|" + "---|" * len(class_names),
        ]
        for c, row in zip(class_names, r["confusion_matrix"]):
            lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
        lines.append("")
    if calibration:
        lines += _calibration_markdown(calibration)
    return "\n".join(lines)


def _calibration_markdown(calibration):
    lines = [
        "## Calibration",
        "",
        "Each model's probabilities divided in log space by a temperature T fitted on the "
        "validation split (minimum negative log-likelihood; the exported SavedModel applies "
        "it). NLL in nats, ECE in % (10 bins of the predicted class's probability); test "
        "shows whether the validation fit carries over. Figures: reliability-<model>.png.",
        "",
        "| model | T | split | NLL before → after | ECE before → after |",
        "|---|---|---|---|---|",
    ]
    for name, cal in calibration.items():
        for split in [s for s in ("val", "test") if s in cal]:
            b, a = cal[split]["before"], cal[split]["after"]
            lines.append(
                f"| {name} | {cal['temperature']:.2f} | {split} | {b['nll']:.3f} → "
                f"{a['nll']:.3f} | {percent(b['ece'])} → {percent(a['ece'])} |"
            )
    lines.append("")
    return lines


EARLY_PNG = "early_f1.png"


def early_markdown(early_f1):
    """{model: {split: {early.label(N): {"mean_f1", "std_f1", ...}}}} -> the "F1 versus nights
    observed" tables (mean F1 % per model and N, one table per split)."""
    from tao_keras import early

    labels = [early.label(n) for n in early.NIGHTS]
    splits = [s for s in SPLIT_TITLES if any(s in by_split for by_split in early_f1.values())]
    lines = [
        "## F1 versus nights observed",
        "",
        "Mean maximum F1 (%) over classes when each object is classified from its first N "
        "observation dates only (no later date, no date of maximum); the Random Forest is "
        f"trained and scored on light curves cut the same way (at least 5 dates). Figure: "
        f"{EARLY_PNG}.",
        "",
    ]
    for split in splits:
        lines += [
            f"### {SPLIT_TITLES[split]}",
            "",
            "| model | " + " | ".join(f"N={x}" if x != "all" else "all" for x in labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for model, by_split in early_f1.items():
            points = by_split.get(split, {})
            cells = [percent(points[x]["mean_f1"]) if x in points else "–" for x in labels]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        chance = []
        for x in labels:  # the networks' objects (the forest may score fewer)
            found = [
                b[split][x].get("chance_mean_f1", math.nan)
                for b in early_f1.values()
                if x in b.get(split, {})
            ]
            chance.append(next((v for v in reversed(found) if not math.isnan(v)), math.nan))
        lines.append("| chance level | " + " | ".join(percent(c) for c in chance) + " |")
        lines.append("")
    return "\n".join(lines)


def figure_slug(model):
    """A model name as a file-name part: "TAO-Net, joint" -> "tao-net-joint"."""
    return re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")


def confusion_png_name(model, split):
    """File name of a model's confusion-matrix figure for one split, beside report.md."""
    return f"confusion-{figure_slug(model)}-{split}.png"


def reliability_png_name(model):
    """File name of a model's reliability diagram (before/after its temperature)."""
    return f"reliability-{figure_slug(model)}.png"


def _save_figures(out_dir, results, class_names, calibration):
    """A confusion matrix per model and split, a reliability diagram per calibrated model."""
    from tao_keras.training import figures

    for model, by_split in results.items():
        for split, r in by_split.items():
            figures.save_confusion_png(
                os.path.join(out_dir, confusion_png_name(model, split)),
                r["confusion_matrix"],
                class_names,
                f"{model}\n{SPLIT_TITLES.get(split, split)}",
            )
    for model, cal in (calibration or {}).items():
        figures.save_reliability_png(
            os.path.join(out_dir, reliability_png_name(model)),
            {s: v for s, v in cal.items() if s != "temperature"},
            f"{model}: reliability (T = {cal['temperature']:.2f})",
        )


def write(
    out_dir,
    results,
    task,
    class_names,
    extra=None,
    early_f1=None,
    predictions=None,
    calibration=None,
    reference=None,
):
    """Write OUTDIR/report.md, OUTDIR/report.json (both atomically) and the figures beside them;
    returns the Markdown text.

    results: {model: {split: metrics.evaluate output}}; extra: more report.json entries;
    early_f1: {model: {split: {early.label(N): early.summary}}} ("F1 versus nights observed":
    a table in report.md, report.json's "early_f1" and early_f1.png), or None;
    predictions: {model: {split: evaluation.predictions}} (the paired bootstrap's input: every
    model's interval and its difference to `reference`, on the objects all of them scored);
    calibration: {model: {"temperature": T, split: calibration.summary}} (a table and a
    reliability diagram per model). A split with too few objects of a class is warned about
    in report.md and the log.
    """
    from tao_keras import intervals as bootstrap
    from tao_keras.training import figures

    boot = bootstrap.by_split(predictions, reference) if predictions else None
    for split in sorted({s for by_split in results.values() for s in by_split}):
        support = next(r[split]["support"] for r in results.values() if split in r)
        warning = split_warning(split, support)
        if warning:
            logging.warning("%s", warning)
    text = markdown(results, task, class_names, boot, calibration, reference)
    if early_f1:
        text += "\n" + early_markdown(early_f1)
        figures.save_early_png(
            os.path.join(out_dir, EARLY_PNG), early_f1, f"task {task}: F1 versus nights observed"
        )
    _save_figures(out_dir, results, class_names, calibration)
    files.write_text_atomic(os.path.join(out_dir, "report.md"), text)
    payload = {"task": task, "class_names": list(class_names), "results": results, **(extra or {})}
    if early_f1:
        payload["early_f1"] = early_f1
    if boot:
        payload["intervals"] = boot
        payload["reference"] = reference
    if calibration:
        payload["calibration"] = calibration
    if predictions:
        payload["predictions"] = predictions
    files.write_json_atomic(run_layout.report_path(out_dir), payload)
    return text
