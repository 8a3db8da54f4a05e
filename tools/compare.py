"""Collect run reports into the paper's Table 3 layout: per task and split, one row per model
(Random Forest on light curves, DenseNet on triplets, TAO-Net, TAO-Net with double supervision),
per-class maximum F1 (%) and mean ± std, then beside it the chance level of the mean maximum F1
on that split, the accuracy and macro-F1 of the arg-max class, the objects, and the time each
run took.

  python -m tools.compare runs/light_curve_rf_multiclass runs/multiclass [--output table.md]
"""

import sys

from absl import app, flags

from tao_keras import classes, run_layout
from tao_keras.lightcurves import baseline
from tao_keras.training import protocol, reports

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Also write the Markdown here.")

MODEL_ORDER = (baseline.MODEL_NAME, *protocol.MODEL_NAMES.values())


def load_reports(run_dirs):
    """[report.json contents + "run"] of each run directory; a clear error for a missing report."""
    out = []
    for run in run_dirs:
        report = run_layout.load_report(run, "each argument")
        report["run"] = run
        out.append(report)
    return out


def table(loaded):
    """Markdown: a section per task and split, rows ordered as MODEL_ORDER."""
    lines = []
    for task in [t for t in classes.TASKS if any(r["task"] == t for r in loaded)]:
        names = classes.task_class_names(task)
        rows = [
            (model, r, by_split)
            for r in loaded
            if r["task"] == task
            for model, by_split in r["results"].items()
        ]
        rows.sort(
            key=lambda row: MODEL_ORDER.index(row[0]) if row[0] in MODEL_ORDER else len(MODEL_ORDER)
        )
        # A model reported by several runs (a trainer's report repeats the baseline it was
        # compared with) is shown once, from the first run given.
        seen = set()
        rows = [row for row in rows if not (row[0] in seen or seen.add(row[0]))]
        for split in ("val", "test"):
            present = [
                (model, r, by_split[split]) for model, r, by_split in rows if split in by_split
            ]
            if not present:
                continue
            lines += [
                f"### Task `{task}`, {reports.SPLIT_TITLES[split].lower()}: maximum F1 (%)",
                "",
                "| model | "
                + " | ".join(names)
                + " | mean ± std | chance | accuracy | macro-F1 | objects "
                + "| run (time of the whole run) |",
                "|---|" + "---|" * (len(names) + 6),
            ]
            for model, r, m in present:
                cells = [reports.percent(m["f1"][c]) for c in names]
                seconds = r.get("seconds")
                took = f"{r['run']} ({seconds / 60:.1f} min)" if seconds else r["run"]
                context = [
                    reports.percent(m.get(key))
                    for key in ("chance_mean_f1", "accuracy", "macro_f1")
                ]
                lines.append(
                    f"| {model} | "
                    + " | ".join(cells)
                    + f" | {reports.percent(m['mean_f1'])} ± {reports.percent(m['std_f1'])} | "
                    + " | ".join(context)
                    + f" | {sum(m['support'].values())} | {took} |"
                )
            warning = reports.split_warning(split, present[-1][2]["support"])
            lines += ["", f"> {warning}"] if warning else []
            lines.append("")
    return "\n".join(lines)


def main(argv):
    run_dirs = argv[1:]
    if not run_dirs:
        raise app.UsageError("give one or more run directories")
    try:
        text = table(load_reports(run_dirs))
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
