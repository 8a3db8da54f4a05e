"""Science benchmark: TAO-Net against the light-curve Random Forest as the survey grows.

  python -m tools.learning_curve --output runs/learning_curve --sizes 50,100,200 --seeds 1,2,3

For every size N (objects per class) and seed: simulate a balanced survey of 6N objects,
convert it with a large held-out split (`--test_fraction`, default 30% of each class, so
that ~45 test objects per class at N=150 score each class F1 to a few points), train the
light-curve Random Forest and TAO-Net (`trainers.multiclass` with the cpu preset and its
default schedule, plus `--trainer_flags`) on the same training split, and score both on the
same validation and test objects with the paper's metric (6 classes). Every piece is kept
under OUTPUT/runs/n<N>-seed<S>/ and reused by a rerun, so an interrupted benchmark resumes.

Writes OUTPUT/learning_curve.json (every run and the mean ± sd over seeds), prints the table
and draws OUTPUT/learning_curve.png (matplotlib; test mean F1 against N, one line per model).
Beside the trained models, a row for the mean of the forest's and TAO-Net joint's
probabilities (late fusion, tao_keras.late_fusion). `--finetune supernova,binary` also
finetunes each multiclass run's joint model on those tasks (joint stage, as the paper does),
each with the trainer's forest on that task: OUTPUT/learning_curve-<tag>-<task>.json, with
the early curve. `--init_seeds=survey,1000,2000` trains TAO-Net three times per survey (other
initial weights and data orders): the network rows are then means over the trainings, a row
scores their ensemble, and the pooled intervals resample the trainings as well as the
objects (docs/evidence.md). `--against F` adds TAO-Net joint's paired difference to tag F's
on the same test objects and training seeds (how a lever is judged against the defaults).
"""

import json
import logging as std_logging
import math
import os
import shlex
import subprocess
import sys
import textwrap
import time

import numpy as np
from absl import flags, logging

from tfrecords import manifest

FLAGS = flags.FLAGS

TASK = "multiclass"
RF = "Random Forest (light curves)"
JOINT = "TAO-Net, joint + double supervision"
# The mean of the forest's and TAO-Net joint's probabilities (tao_keras.late_fusion)
FUSED = "TAO-Net joint + forest (mean of probabilities)"
SETTINGS = "settings.json"
# --init_seeds' word for the training seeded with the survey's own seed (folder "taonet")
SURVEY_SEED = "survey"
# What each run keeps beside mean max-F1, per split (metrics.evaluate's keys).
CONTEXT = ("accuracy", "macro_f1", "chance_mean_f1")


class StaleOutput(ValueError):
    """A kept survey or run was made with other settings than the ones asked for."""


def check_settings(folder, settings):
    """Record what made `folder` (FOLDER/settings.json) or check that it was made the same way:
    a survey, conversion or run kept from an earlier call is reused only for the settings that
    made it (StaleOutput naming the folder and each differing setting otherwise)."""
    from tao_keras import files

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, SETTINGS)
    wanted = json.loads(json.dumps(settings))
    if os.path.exists(path):
        try:
            found = files.read_json(path, "the settings that made this folder")
        except ValueError:
            found = None  # cut short: written before its folder's contents, so nothing to trust
        if found is not None and found != wanted:
            differ = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            detail = ", ".join(
                f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} now" for k in differ
            )
            raise StaleOutput(
                f"{folder} was made with other settings ({detail}); choose another --output "
                "(or --tag for other trainer flags), or delete it to redo it"
            )
        if found == wanted:
            return
    files.write_json_atomic(path, wanted)


def whole_report(path):
    """A run's report.json when it is whole, else None (missing, or cut short by a kill or a
    full disk: the caller redoes the run, whose finished parts are reused)."""
    from tao_keras import files

    try:
        return files.read_json(path, "a run's report")
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        logging.warning("%s; redoing that run", e)
        return None


def survey_records(root, size, seed, test_fraction, workers):
    """Simulate (once) and convert (once) the balanced survey of `size` objects per class."""
    from tao_keras import classes, splits
    from tools.conversion import convert
    from tools.simulation import survey

    check_settings(root, {"size": size, "seed": seed, "test_fraction": test_fraction})
    survey_dir, records = os.path.join(root, "survey"), os.path.join(root, "records")
    timings = {}
    if not os.path.exists(os.path.join(survey_dir, "catalog.csv")):
        began = time.perf_counter()
        config = survey.SurveyConfig(
            num_objects=size * len(classes.CLASS_NAMES),
            seed=seed,
            class_mix=tuple((name, 1.0) for name in classes.CLASS_NAMES),
        )
        survey.simulate_survey(survey_dir, config, workers=workers)
        timings["simulate_s"] = time.perf_counter() - began
    if not manifest.exists(records):
        began = time.perf_counter()
        # Every object is kept (the date nearest the catalog maximum is the maximum): the
        # light-curve and pixel models then see exactly the same objects.
        options = convert.ConvertOptions(
            seed=seed, workers=workers, fractions=splits.SplitFractions(test_fraction, 0.8, 0.8)
        )
        convert.convert([survey_dir], records, options)
        timings["convert_s"] = time.perf_counter() - began
    return records, timings


def random_forest(records, run_dir, seed):
    """The light-curve baseline on the records' splits -> {"val": f1, "test": f1, "minutes": ..}."""
    from tao_keras import classes, run_layout
    from tao_keras.lightcurves import baseline
    from tao_keras.lightcurves import curves as curve_io
    from tao_keras.training import reports

    report_path = run_layout.report_path(run_dir)
    if whole_report(report_path) is None:
        os.makedirs(run_dir, exist_ok=True)
        curves = curve_io.of_records(records)
        began = time.perf_counter()
        results, info = baseline.run(curves, TASK, seed=seed)
        # photometry (measured once per survey) + features and forest
        seconds = (curve_io.measurement_seconds(records) or 0.0) + time.perf_counter() - began
        predictions = info.pop("predictions")
        reports.write(
            run_dir,
            {RF: results},
            TASK,
            classes.task_class_names(TASK),
            extra={"seconds": seconds, **info},
            predictions={RF: predictions},
        )
    return _scores(report_path)[RF]


class BadFlags(ValueError):
    """The command's flags contradict each other (the message names them)."""


class RunFailed(RuntimeError):
    """A training run of the learning curve failed (the message names its log)."""


def taonet(records, run_dir, seed, minutes, trainer_flags, task=TASK, init_from=None):
    """trainers.<task> on the records -> {model: scores}; with init_from (a multiclass run),
    its joint stage alone, finetuned from that run's model (the paper's binary tasks), with
    the trainer's own forest on the same task beside it.

    A subprocess on purpose: each run starts from a clean process, as a user's run does
    (TensorFlow's op determinism, the Keras precision policy and the memory a run leaves are
    process-wide), and its output goes to RUN_DIR.log. A failed run raises a one-line error
    naming that log and its last line that mentions an error."""
    from tao_keras import run_layout

    report_path = run_layout.report_path(run_dir)
    if whole_report(report_path) is None:
        command = [
            sys.executable,
            "-m",
            f"trainers.{task}",
            *(["--init_from", init_from, "--stages", "joint"] if init_from else []),
            "--data",
            records,
            "--output",
            run_dir,
            "--seed",
            str(seed),
            *(["--max_minutes", str(minutes)] if minutes else []),
            *shlex.split(trainer_flags),
        ]
        logging.info("running %s", " ".join(command))
        log_path = os.path.join(os.path.dirname(run_dir), os.path.basename(run_dir) + ".log")
        with open(log_path, "w") as log:
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            with open(log_path) as log:
                lines = [line.strip() for line in log if line.strip()]
            errors = [line for line in lines if "error" in line.lower()] or lines or ["(empty)"]
            raise RunFailed(
                f"the TAO-Net run {run_dir} failed (exit status {done.returncode}); its log "
                f"{log_path} says: {errors[-1][:300]}"
            )
    # The multiclass forest is the learning curve's own run; a finetuned task's is the trainer's
    return {m: s for m, s in _scores(report_path).items() if init_from or m != RF}


def _scores(report_path):
    from tao_keras import files

    report = files.read_json(report_path, "a run's report")
    # A model's cost is the training it needs: its stage and the stages before it (a
    # trainer's report also holds the baseline and the export, not counted here).
    stages = report.get("stage_seconds")
    out, spent = {}, 0.0
    for model, by_split in report["results"].items():
        if stages and model in stages:
            spent += stages[model]
            minutes = spent / 60
        else:
            minutes = report.get("seconds", float("nan")) / 60
        out[model] = {s: by_split[s]["mean_f1"] for s in ("val", "test") if s in by_split} | {
            f"{s}_{key}": by_split[s][key]
            for s in ("val", "test")
            if s in by_split
            for key in CONTEXT
            if key in by_split[s]
        }
        out[model] |= {"minutes": minutes, "per_class": {s: by_split[s]["f1"] for s in by_split}}
    return out


def run_predictions(run_root, parts=("light_curve_rf", "taonet")):
    """The predictions of every model of one size and seed ({model: {split: predictions}}):
    the networks' from the TAO-Net run's report.json, the forest's from its own run (parts:
    the run folders under run_root that hold reports, the first one's forest kept; ("",) for
    a single run whose report holds both, as a finetuned task's), and the late fusion of the
    forest and TAO-Net joint (FUSED) when both are there."""
    from tao_keras import late_fusion, run_layout

    out = {}
    for part in parts:
        try:
            with open(run_layout.report_path(os.path.join(run_root, part))) as f:
                found = json.load(f).get("predictions", {})
        except (OSError, ValueError):
            continue
        for model, by_split in found.items():
            out.setdefault(model, by_split)
    if RF in out and JOINT in out:
        splits = set(out[RF]) & set(out[JOINT])
        out[FUSED] = {
            s: late_fusion.mean_probabilities(out[RF][s], out[JOINT][s]) for s in sorted(splits)
        }
    return out


def fused_scores(run_root, models, task=TASK, parts=("light_curve_rf", "taonet")):
    """The FUSED row of one run (mean max-F1 per split and CONTEXT, as _scores gives the
    others; its cost is the forest's and TAO-Net joint's together), None without both models.
    models: the run's rows so far ({model: scores}); task, parts: as run_predictions'."""
    fused = run_predictions(run_root, parts).get(FUSED)
    if not fused or RF not in models or JOINT not in models:
        return None
    return {"minutes": models[RF]["minutes"] + models[JOINT]["minutes"]} | split_scores(fused, task)


def split_scores(by_split, task=TASK):
    """A row's scores from its predictions ({split: {"label", "probabilities", ...}}): mean
    max-F1 per split and the CONTEXT keys, as _scores gives the trained models'."""
    from tao_keras import classes, metrics

    names = classes.task_class_names(task)
    out = {}
    for split, predictions in by_split.items():
        result = metrics.evaluate(
            np.asarray(predictions["label"]), np.asarray(predictions["probabilities"]), names
        )
        out[split] = result["mean_f1"]
        out |= {f"{split}_{key}": result[key] for key in CONTEXT if key in result}
    return out


def pooled_intervals(per_seed, reference=RF):
    """The seeds' test objects pooled in one paired bootstrap: [{model: predictions, or a list
    of predictions for several trainings}] (one entry per seed, each its own survey) ->
    intervals.paired output, objects resampled within each seed (and a model's trainings
    resampled too) and the statistic averaged over seeds (the mean over seeds, with its
    interval; differences to `reference`, the forest by default, on the same objects). None
    when no seed has predictions. A model is kept when every seed has it with the same number
    of trainings."""
    from tao_keras import intervals

    labels, probabilities, strata = [], {}, []
    models = None
    for k, predictions in enumerate(p for p in per_seed if p):
        # Every training of every model on the same objects: flattened for the alignment
        flat = {
            (m, t): found
            for m, p in predictions.items()
            for t, found in enumerate(p if isinstance(p, list) else [p])
        }
        _, y, probs = intervals.aligned(flat)
        found = {
            m: np.stack([probs[(m, t)] for t in range(len(p) if isinstance(p, list) else 1)])
            for m, p in predictions.items()
        }
        # in the first seed's order (a set's order changes from process to process)
        models = list(found) if models is None else [m for m in models if m in found]
        labels.append(y)
        strata.append(np.full(len(y), k))
        for model, p in found.items():
            probabilities.setdefault(model, []).append(p)
    if not labels or not models:
        return None
    kept = {
        m: np.concatenate(probabilities[m], axis=1)
        for m in models
        if len(probabilities[m]) == len(labels) and len({p.shape[0] for p in probabilities[m]}) == 1
    }
    return intervals.paired(
        np.concatenate(labels),
        {
            m: kept[m] if len(kept[m]) > 1 else kept[m][0]
            for m in sorted(kept, key=lambda m: m != reference)
        },
        reference=reference if reference in kept else None,
        strata=np.concatenate(strata),
    )


def tag_root(output, tag, size, seed):
    """The run folder of one survey (size, seed) under a tag's runs ("runs" without a tag)."""
    return os.path.join(output, "runs" + (f"-{tag}" if tag else ""), f"n{size}-seed{seed}")


def tag_joints(output, tag, size, seed, init_seeds):
    """The TAO-Net joint test predictions of a tag's trainings of one survey, one per init
    seed ([{"object_id", "label", "probabilities"}]); BadFlags naming the folder that lacks
    them."""
    root = tag_root(output, tag, size, seed)
    found = []
    for init in init_seeds:
        folder = init_folder(init)
        test = run_predictions(root, (folder,)).get(JOINT, {}).get("test")
        if test is None:
            raise BadFlags(
                f"tag {tag or '(none)'}: no TAO-Net joint test predictions in "
                f"{os.path.join(root, folder)} (run that "
                "tag with the same --sizes, --seeds and --init_seeds first)"
            )
        found.append(test)
    return found


def against_tag(output, tag, other, size, seeds, init_seeds):
    """TAO-Net joint of `tag` against that of `other` on the same surveys, test objects and
    training seeds: the paired bootstrap of pooled_intervals with the other tag's joint as the
    reference (objects resampled within each survey, the trainings of both resampled too).
    output: the benchmark's directory; size, seeds, init_seeds: the surveys and trainings.
    -> {"tag", "other", "mean_f1", "other_mean_f1", "difference", "difference_ci",
    "p_not_better", "objects"}."""
    reference = f"{JOINT} [tag {other or '(none)'}]"
    per_seed = []
    for seed in seeds:
        this = tag_joints(output, tag, size, seed, init_seeds)
        that = tag_joints(output, other, size, seed, init_seeds)
        per_seed.append(
            {
                reference: that if len(that) > 1 else that[0],
                JOINT: this if len(this) > 1 else this[0],
            }
        )
    pooled = pooled_intervals(per_seed, reference=reference)
    found = pooled[JOINT]
    return {
        "tag": tag,
        "other": other,
        "mean_f1": found["mean_f1"],
        "other_mean_f1": pooled[reference]["mean_f1"],
        "difference": found["difference"],
        "difference_ci": found["difference_ci"],
        "p_not_better": found["p_not_better"],
        "objects": pooled["_objects"],
    }


def against_markdown(size, found):
    """One line of the table's notes: against_tag's result at one size, in points."""
    lo, hi = found["difference_ci"]
    return (
        f"N = {size}, TAO-Net joint against tag {found['other'] or '(none)'}'s on the same "
        f"surveys, test objects and training seeds: {100 * found['mean_f1']:.1f} against "
        f"{100 * found['other_mean_f1']:.1f}, {100 * found['difference']:+.1f} "
        f"[{100 * lo:+.1f}, {100 * hi:+.1f}] (95% CI, {found['objects']} objects, trainings "
        "resampled)."
    )


def init_folder(init):
    """The folder (under a run's root) of the TAO-Net training with init seed `init`: "taonet"
    for SURVEY_SEED (the survey's own seed, what a single-training benchmark runs), else
    "taonet-init<seed>"."""
    return "taonet" if init == SURVEY_SEED else f"taonet-init{int(init)}"


def ensemble_name(trainings):
    """The row of the mean of `trainings` TAO-Net joint models' probabilities."""
    return f"TAO-Net joint, mean of {trainings} trainings (probabilities)"


def mean_of_trainings(trainings):
    """A survey's network rows averaged over its trainings: [{model: scores}] (one per
    training, as taonet() and fused_scores() give them) -> {model: scores}, every number (and
    each class's F1 in "per_class") the mean over the trainings that have that model; one
    training's rows as they are."""
    if len(trainings) == 1:
        return dict(trainings[0])
    out = {}
    for model in dict.fromkeys(m for t in trainings for m in t):
        found = [t[model] for t in trainings if model in t]
        keys = [k for k, v in found[0].items() if isinstance(v, (int, float))]
        out[model] = {k: float(np.mean([f[k] for f in found if k in f])) for k in keys}
        if all("per_class" in f for f in found):
            out[model]["per_class"] = {
                split: {
                    name: float(np.mean([f["per_class"][split][name] for f in found]))
                    for name in f1
                }
                for split, f1 in found[0]["per_class"].items()
            }
    return out


def ensemble_of_trainings(joints, minutes, task=TASK):
    """The mean of several trainings' TAO-Net joint probabilities on one survey: (scores as
    fused_scores gives them, {split: predictions} on the objects every training scored), or
    None with fewer than two trainings. joints: each training's joint predictions ({split:
    predictions}, as run_predictions gives them); minutes: the trainings' cost together."""
    from tao_keras import intervals

    joints = [j for j in joints if j]
    if len(joints) < 2:
        return None
    predictions = {}
    for split in sorted(set.intersection(*(set(j) for j in joints))):
        ids, labels, probabilities = intervals.aligned({k: j[split] for k, j in enumerate(joints)})
        predictions[split] = {
            "object_id": list(ids),
            "label": labels.tolist(),
            "probabilities": np.mean(list(probabilities.values()), axis=0).tolist(),
        }
    return {"minutes": float(minutes)} | split_scores(predictions, task), predictions


def training_spread(runs):
    """How far apart one survey's trainings land: {model: the pooled within-survey sample sd
    of the test score (sqrt of the mean of the surveys' variances), surveys}, for the models
    of runs with two or more trainings (runs as run() keeps them, with "trainings")."""
    variances = {}
    for run in runs:
        trainings = run.get("trainings") or {}
        if len(trainings) < 2:
            continue
        for model in dict.fromkeys(m for t in trainings.values() for m in t):
            values = [t[model]["test"] for t in trainings.values() if "test" in t.get(model, {})]
            if len(values) > 1:
                variances.setdefault(model, []).append(float(np.var(values, ddof=1)))
    return {m: (float(np.sqrt(np.mean(v))), len(v)) for m, v in variances.items()}


def mean_sd(values):
    """(mean, sample sd (NaN for one value), count) of the seeds' values."""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), sd, len(values)


def summarize(runs):
    """[{size, seed, models: {model: {val, test, minutes}}}] -> {size: {model: {key: (mean, sd,
    n)}}}."""
    table = {}
    for run in runs:
        for model, scores in run["models"].items():
            entry = table.setdefault(run["size"], {}).setdefault(model, {})
            for key in ("val", "test", "minutes", *(f"test_{k}" for k in CONTEXT)):
                if key in scores:
                    entry.setdefault(key, []).append(scores[key])
    return {
        size: {
            model: {key: mean_sd(v) for key, v in by_key.items()}
            for model, by_key in by_model.items()
        }
        for size, by_model in sorted(table.items())
    }


def markdown(summary, pooled=None):
    """The learning-curve table: per size and model, mean ± sd over seeds (F1, accuracy and the
    chance level of mean max-F1, in %), and with `pooled` ({size: pooled_intervals output})
    the 95% interval of the seeds' mean test F1 and of its difference to the forest."""
    lines = [
        "| objects per class | model | validation mean F1 | test mean F1 | test 95% CI | "
        "Δ vs forest, test [95% CI] | test accuracy | test chance | CPU minutes | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, by_model in summary.items():
        boot = (pooled or {}).get(size) or {}
        for model, stats in by_model.items():

            def cell(key, scale=100.0, digits=1):
                if key not in stats:
                    return "–"
                mean, sd, _ = stats[key]
                sd_text = "" if math.isnan(sd) else f" ± {scale * sd:.{digits}f}"
                return f"{scale * mean:.{digits}f}{sd_text}"

            b = boot.get(model, {})
            ci = f"[{100 * b['ci'][0]:.1f}, {100 * b['ci'][1]:.1f}]" if "ci" in b else "–"
            if "difference" in b:
                lo, hi = b["difference_ci"]
                diff = f"{100 * b['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
            else:
                diff = "reference" if model == RF and b else "–"
            seeds = max(n for _, _, n in stats.values())
            lines.append(
                f"| {size} | {model} | {cell('val')} | {cell('test')} | {ci} | {diff} | "
                f"{cell('test_accuracy')} | {cell('test_chance_mean_f1')} | "
                f"{cell('minutes', 1.0)} | {seeds} |"
            )
    return "\n".join(lines)


def plot(summary, path, title):
    """Test mean F1 (mean ± sd over seeds) against objects per class, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    sizes = list(summary)
    models = [m for m in summary[sizes[0]]]
    for model in models:
        points = [
            (s, summary[s][model]["test"]) for s in sizes if "test" in summary[s].get(model, {})
        ]
        x = [s for s, _ in points]
        y = np.array([100 * m for _, (m, _, _) in points])
        e = np.array([0.0 if math.isnan(sd) else 100 * sd for _, (_, sd, _) in points])
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=model)
    chance = [
        (s, by_model[m]["test_chance_mean_f1"][0])
        for s, by_model in summary.items()
        for m in list(by_model)[:1]
        if "test_chance_mean_f1" in by_model[m]
    ]
    if chance:
        ax.plot(
            [s for s, _ in chance],
            [100 * c for _, c in chance],
            ls=":",
            color="grey",
            label="chance level (random scores, same class counts)",
        )
    ax.set_xlabel("training survey size: objects per class (balanced, 6 classes)")
    ax.set_ylabel("6-class mean max-F1 on held-out objects (%)")
    ax.set_title(textwrap.fill(title, 90), fontsize=8)  # long trainer flags wrap
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def survey_rows(records, run_root, seed, init_seeds, minutes, trainer_flags):
    """The forest and every TAO-Net training of one survey, run (or reused) and scored.

    records: the survey's records; run_root: its run folder (the forest in light_curve_rf,
    the trainings in init_folder(init)); seed: the survey's seed (the forest's, and the
    SURVEY_SEED training's); init_seeds: the trainings' seeds (--init_seeds); minutes,
    trainer_flags: as taonet's.

    -> (models: {model: scores}, each network row the mean over the trainings, with the mean of
    the trainings' joint probabilities as a row of its own when there are several;
    trainings: {init: {model: scores}}; predictions: {model: test predictions, a list of them
    for a model of several trainings}, as pooled_intervals takes them)."""
    forest = random_forest(records, os.path.join(run_root, "light_curve_rf"), seed)
    trainings, predictions, joints = {}, {}, []
    for init in init_seeds:
        folder = init_folder(init)
        found = {RF: forest} | taonet(
            records,
            os.path.join(run_root, folder),
            seed if init == SURVEY_SEED else int(init),
            minutes,
            trainer_flags,
        )
        fused = fused_scores(run_root, found, parts=("light_curve_rf", folder))
        if fused:
            found[FUSED] = fused
        trainings[init] = {m: v for m, v in found.items() if m != RF}
        found_predictions = run_predictions(run_root, ("light_curve_rf", folder))
        joints.append(found_predictions.get(JOINT))
        for model, by_split in found_predictions.items():
            if model == RF:
                predictions[RF] = by_split["test"]
            elif "test" in by_split:
                predictions.setdefault(model, []).append(by_split["test"])
    models = {RF: forest} | mean_of_trainings(list(trainings.values()))
    cost = sum(t[JOINT]["minutes"] for t in trainings.values() if JOINT in t)
    ensemble = ensemble_of_trainings(joints, cost)
    if ensemble:
        models[ensemble_name(len(init_seeds))] = ensemble[0]
        predictions[ensemble_name(len(init_seeds))] = ensemble[1]["test"]
    # One training: its predictions as they are
    predictions = {
        m: p[0] if isinstance(p, list) and len(p) == 1 else p for m, p in predictions.items()
    }
    return models, trainings, predictions


def main(argv):
    del argv
    try:
        run()
    except (StaleOutput, RunFailed, BadFlags) as e:
        sys.exit(f"error: {e}")


def check_init_seeds(init_seeds, trainer_flags):
    """--init_seeds against --trainer_flags: BadFlags for a repeated seed, a seed that is not
    SURVEY_SEED or an integer, or a --seed in the trainer flags (which would override every
    training's seed and make them one training)."""
    for init in init_seeds:
        if init != SURVEY_SEED and not init.lstrip("-").isdigit():
            raise BadFlags(f"--init_seeds: {init!r} is neither {SURVEY_SEED!r} nor an integer")
    if len(set(init_seeds)) != len(init_seeds) or not init_seeds:
        raise BadFlags(f"--init_seeds: {init_seeds} must be distinct and not empty")
    if any(f == "--seed" or f.startswith("--seed=") for f in shlex.split(trainer_flags)):
        raise BadFlags(
            "--trainer_flags sets --seed: the trainings' seeds come from --init_seeds "
            "(e.g. --init_seeds=survey,1000)"
        )


def run():
    """The benchmark (main without the error handling)."""
    std_logging.getLogger().setLevel(std_logging.INFO)
    check_init_seeds(FLAGS.init_seeds, FLAGS.trainer_flags)
    sizes = [int(s) for s in FLAGS.sizes]
    seeds = [int(s) for s in FLAGS.seeds]
    os.makedirs(FLAGS.output, exist_ok=True)
    runs, per_size, finetuned, task_predictions = [], {}, {}, {}
    for size in sizes:
        for seed in seeds:
            root = os.path.join(FLAGS.output, "surveys", f"n{size}-seed{seed}")
            records, timings = survey_records(root, size, seed, FLAGS.test_fraction, FLAGS.workers)
            run_root = tag_root(FLAGS.output, FLAGS.tag, size, seed)
            check_settings(
                run_root,
                {
                    "survey": os.path.abspath(root),
                    "test_fraction": FLAGS.test_fraction,
                    "minutes": FLAGS.minutes,
                    "trainer_flags": FLAGS.trainer_flags,
                },
            )
            models, trainings, predictions = survey_rows(
                records, run_root, seed, FLAGS.init_seeds, FLAGS.minutes, FLAGS.trainer_flags
            )
            runs.append(
                {"size": size, "seed": seed, "records": records, "models": models, **timings}
                | ({"trainings": trainings} if len(trainings) > 1 else {})
                | {"early": early_of_trainings(run_root, FLAGS.init_seeds)}
            )
            per_size.setdefault(size, []).append(predictions)
            for task in FLAGS.finetune:
                task_dir = os.path.join(run_root, task)
                found = taonet(
                    records,
                    task_dir,
                    seed,
                    FLAGS.minutes,
                    FLAGS.trainer_flags,
                    task,
                    os.path.join(run_root, init_folder(FLAGS.init_seeds[0])),
                )
                fused = fused_scores(task_dir, found, task, parts=("",))
                if fused:
                    found[FUSED] = fused
                finetuned.setdefault(task, []).append(
                    {"size": size, "seed": seed, "models": found, "early": early_of(task_dir)}
                )
                task_predictions.setdefault(task, {}).setdefault(size, []).append(
                    {
                        m: p["test"]
                        for m, p in run_predictions(task_dir, parts=("",)).items()
                        if "test" in p
                    }
                )
            logging.info(
                "n=%d seed=%d: %s",
                size,
                seed,
                {m: round(100 * s.get("test", float("nan")), 1) for m, s in models.items()},
            )
    summary = summarize(runs)
    pooled = {size: pooled_intervals(found) for size, found in per_size.items()}
    text = markdown(summary, pooled)
    spread = training_spread(runs)
    if spread:
        text += (
            f"\n\nNetworks: each survey's row is the mean of {len(FLAGS.init_seeds)} trainings "
            f"(init seeds {', '.join(FLAGS.init_seeds)}); their intervals resample the trainings "
            "too. Between two trainings of one survey, test mean F1 sd (pooled over surveys): "
            + "; ".join(f"{m} {100 * sd:.1f}" for m, (sd, _) in spread.items())
            + "."
        )
    against = {}
    if FLAGS.against is not None:
        for size in sizes:
            against[size] = against_tag(
                FLAGS.output, FLAGS.tag, FLAGS.against, size, seeds, FLAGS.init_seeds
            )
            text += "\n\n" + against_markdown(size, against[size])
    early = early_summary(runs)
    text += "\n" + early_markdown(early, TASK)
    name = f"learning_curve{'-' + FLAGS.tag if FLAGS.tag else ''}"
    with open(os.path.join(FLAGS.output, name + ".json"), "w") as f:
        json.dump(
            {
                "sizes": sizes,
                "seeds": seeds,
                "test_fraction": FLAGS.test_fraction,
                "minutes": FLAGS.minutes,
                "trainer_flags": FLAGS.trainer_flags,
                "init_seeds": FLAGS.init_seeds,
                "training_sd_test": spread,
                "runs": runs,
                "summary": {str(k): v for k, v in summary.items()},
                "pooled_test_intervals": {str(k): v for k, v in pooled.items()},
                "early_test": {str(k): v for k, v in early.items()},
                "against": {str(k): v for k, v in against.items()},
            },
            f,
            indent=2,
        )
    plot(
        summary,
        os.path.join(FLAGS.output, name + ".png"),
        f"balanced simulated surveys, {len(seeds)} seed(s); "
        f"{FLAGS.trainer_flags or 'default flags'}",
    )
    print(text)
    print(
        f"table: {os.path.join(FLAGS.output, name + '.json')}; "
        f"figure: {os.path.join(FLAGS.output, name + '.png')}"
    )
    for task, task_runs in finetuned.items():
        write_task_table(FLAGS.output, name, task, task_runs, task_predictions[task])


def early_of(run_dir):
    """A run's F1 after the first N nights ({model: {split: {N: {"mean_f1", ...}}}}), {} when
    its report has none."""
    from tao_keras import files, run_layout

    return files.read_json(run_layout.report_path(run_dir), "a run's report").get("early_f1", {})


def _night_order(nights):
    """Sort key of an early curve's columns: the numbers of nights, then "all"."""
    return (1, 0) if nights == "all" else (0, int(nights))


def early_summary(task_runs):
    """Mean ± sd over seeds of the test F1 after the first N nights: {size: {model: {N: (mean,
    sd, seeds)}}}."""
    table = {}
    for run in task_runs:
        for model, by_split in run["early"].items():
            for nights, scores in by_split.get("test", {}).items():
                table.setdefault(run["size"], {}).setdefault(model, {}).setdefault(
                    nights, []
                ).append(scores["mean_f1"])
    return {
        size: {
            model: {
                n: mean_sd(v)
                for n, v in sorted(by_n.items(), key=lambda item: _night_order(item[0]))
            }
            for model, by_n in by_model.items()
        }
        for size, by_model in table.items()
    }


def write_task_table(output, name, task, task_runs, predictions):
    """A finetuned task's table (markdown() rows, pooled intervals against that task's forest)
    and its early curve, printed and kept in output/<name>-<task>.json. task_runs: [{size,
    seed, models, early}]; predictions: {size: [{model: test predictions}] per seed}."""
    summary = summarize(task_runs)
    pooled = {size: pooled_intervals(found) for size, found in predictions.items()}
    early = early_summary(task_runs)
    path = os.path.join(output, f"{name}-{task}.json")
    with open(path, "w") as f:
        json.dump(
            {
                "task": task,
                "runs": task_runs,
                "summary": {str(k): v for k, v in summary.items()},
                "pooled_test_intervals": {str(k): v for k, v in pooled.items()},
                "early_test": {str(k): v for k, v in early.items()},
            },
            f,
            indent=2,
        )
    print(f"\n{task} (finetuned from each multiclass run's joint model):")
    print(markdown(summary, pooled))
    print(early_markdown(early, task))
    print(f"table: {path}")


def early_markdown(early, task):
    """The early curve's tables (early_summary output), one per size, as markdown."""
    lines = []
    for size, by_model in early.items():
        nights = sorted({n for v in by_model.values() for n in v}, key=_night_order)
        lines.append(
            f"\n{task}, N = {size}: test mean F1 after the first nights (mean ± sd over seeds)"
        )
        lines.append("| model | " + " | ".join(nights) + " |")
        lines.append("|---|" + "---|" * len(nights))
        for model, by_n in by_model.items():
            cells = [
                "–"
                if n not in by_n
                else f"{100 * by_n[n][0]:.1f}"
                + ("" if math.isnan(by_n[n][1]) else f" ± {100 * by_n[n][1]:.1f}")
                for n in nights
            ]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def early_of_trainings(run_root, init_seeds):
    """A survey's multiclass early curve over its trainings ({model: {"test": {N: {"mean_f1"}}}},
    as early_of gives one run's): each network's test F1 after the first N nights averaged
    over the trainings; the forest's from the training seeded with the survey's seed (each
    trainer also trains a forest, seeded with its own seed: the learning curve's forest is that
    one), else from the first training. {} when no training has an early curve."""
    found = {}
    for init in init_seeds:
        try:
            found[init] = early_of(os.path.join(run_root, init_folder(init)))
        except (OSError, ValueError):
            continue
    if not found:
        return {}
    forest_from = SURVEY_SEED if SURVEY_SEED in found else next(iter(found))
    out = {}
    for model in dict.fromkeys(m for early in found.values() for m in early):
        curves = [e[model].get("test", {}) for e in found.values() if model in e]
        if model == RF:
            curves = [found[forest_from].get(RF, {}).get("test", {})]
        nights = [n for n in curves[0] if all(n in c for c in curves)]
        out[model] = {
            "test": {
                n: {"mean_f1": float(np.mean([c[n]["mean_f1"] for c in curves]))} for n in nights
            }
        }
    return out


def define_flags():
    """The command's flags (defined when run as a program only: the functions above are
    imported by tests and other tools, whose processes have flags of their own)."""
    flags.DEFINE_string(
        "output", "runs/learning_curve", "Directory of the surveys, runs, table and figure."
    )
    flags.DEFINE_list("sizes", ["50", "100", "200"], "Objects per class of each simulated survey.")
    flags.DEFINE_list(
        "seeds", ["1", "2", "3"], "Seeds: each gives its own survey, split and initialization."
    )
    flags.DEFINE_float(
        "minutes", 30.0, "Wall-clock budget of one TAO-Net training (all stages).", 0.0
    )
    flags.DEFINE_float(
        "test_fraction",
        0.3,
        "Held-out test fraction of each class (the rest: 80/20 train/val).",
        0.0,
        1.0,
    )
    flags.DEFINE_string(
        "trainer_flags",
        "",
        "Extra flags for trainers.multiclass (ablations), e.g. "
        "'--normalization=image --aggregation=add'.",
    )
    flags.DEFINE_string(
        "tag", "", "Name of this configuration in the table (runs are kept apart by it)."
    )
    flags.DEFINE_list(
        "init_seeds",
        [SURVEY_SEED],
        "Trainer seeds of each survey's TAO-Net trainings (initial weights and data order; "
        f"'{SURVEY_SEED}': the survey's own seed). With several, each network row is the mean "
        "over them, a row averages their joint models' probabilities, and the intervals "
        "resample the trainings too: what a lever must beat is then the spread between "
        "trainings, not one training's luck.",
    )
    flags.DEFINE_string(
        "against",
        None,
        'Another tag ("" for untagged runs) run with the same --sizes, --seeds and '
        "--init_seeds: the table's notes then give TAO-Net joint's difference to that tag's "
        "on the same test objects and training seeds, with its paired 95% interval (how a lever "
        "is judged against the defaults).",
    )
    flags.DEFINE_list(
        "finetune",
        [],
        "Binary tasks to finetune from every multiclass run's joint model, as the paper does "
        "(supernova, binary, transients; each with the trainer's forest on that task).",
    )
    flags.DEFINE_integer(
        "workers", None, "Processes for simulation and conversion (default: all cores)."
    )


def cli():
    """The console script (tao-learning-curve)."""
    from tools import console

    define_flags()
    console.run(main, __name__)


if __name__ == "__main__":
    cli()
