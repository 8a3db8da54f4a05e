"""report.md (tables laid out like the paper's: per-class F1 and mean ± std) and report.json."""

import json
import math
import os
import re


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


def markdown(results, task, class_names):
    """results: {model name: {split: metrics.evaluate output}} -> Markdown text."""
    lines = [f"# TAO-Net report: task `{task}`", ""]
    present = {split for by_split in results.values() for split in by_split}
    for split in [s for s in SPLIT_TITLES if s in present] + sorted(present - set(SPLIT_TITLES)):
        rows = [(name, by_split[split]) for name, by_split in results.items() if split in by_split]
        lines += [
            f"## {SPLIT_TITLES.get(split, split)}: maximum F1 (%) per class",
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
        support = rows[0][1]["support"]
        lines += [
            "",
            "Objects per class: " + ", ".join(f"{c} {support[c]}" for c in class_names),
            "",
        ]
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
    return "\n".join(lines)


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
        lines.append("")
    return "\n".join(lines)


def confusion_png_name(model, split):
    """File name of a model's confusion-matrix figure for one split, beside report.md."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"confusion-{slug}-{split}.png"


def write(out_dir, results, task, class_names, extra=None, early_f1=None):
    """Write OUTDIR/report.md, OUTDIR/report.json and a confusion-matrix PNG per model and
    split (class names on both axes, counts and row percentages); returns the Markdown text.

    results: {model: {split: metrics.evaluate output}}; extra: more report.json entries;
    early_f1: {model: {split: {early.label(N): early.summary}}} ("F1 versus nights observed":
    a table in report.md, report.json's "early_f1" and early_f1.png), or None.
    """
    from tao_keras.training import figures

    text = markdown(results, task, class_names)
    if early_f1:
        text += "\n" + early_markdown(early_f1)
        figures.save_early_png(
            os.path.join(out_dir, EARLY_PNG), early_f1, f"task {task}: F1 versus nights observed"
        )
    for model, by_split in results.items():
        for split, r in by_split.items():
            figures.save_confusion_png(
                os.path.join(out_dir, confusion_png_name(model, split)),
                r["confusion_matrix"],
                class_names,
                f"{model}\n{SPLIT_TITLES.get(split, split)}",
            )
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(text)
    payload = {"task": task, "class_names": list(class_names), "results": results, **(extra or {})}
    if early_f1:
        payload["early_f1"] = early_f1
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(payload, f, indent=2, default=float)
    return text
