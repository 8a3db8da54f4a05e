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


def confusion_png_name(model, split):
    """File name of a model's confusion-matrix figure for one split, beside report.md."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"confusion-{slug}-{split}.png"


def write(out_dir, results, task, class_names, extra=None):
    """Write OUTDIR/report.md, OUTDIR/report.json and a confusion-matrix PNG per model and
    split (class names on both axes, counts and row percentages); returns the Markdown text."""
    from tao_keras.training import figures

    text = markdown(results, task, class_names)
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
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(payload, f, indent=2, default=float)
    return text
