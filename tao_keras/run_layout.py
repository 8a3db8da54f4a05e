"""The layout of a trainer's run directory, in one place.

    RUN/config.json                  the run's settings (TrainConfig + records)
    RUN/<stage>/model.keras          each stage's best model (stages: densenet, gru, joint)
    RUN/<stage>/contract.json        its model contract (tao_keras.contract)
    RUN/<stage>/best.weights.h5      best weights by validation mean F1 while training
    RUN/<stage>/history.csv          one row per epoch
    RUN/<stage>/backup/              per-epoch backups for resuming (removed when the stage ends)
    RUN/<stage>/scores.json          written last: the stage is finished
    RUN/logs/<stage>/                TensorBoard
    RUN/report.md, report.json       the paper-style report (+ confusion-matrix PNGs)
    RUN/export/<name>/<version>/     SavedModels, TF Serving numbering
    RUN/.lock                        held by the trainer writing the run (its PID inside)

Training, export, prediction and the benchmarks find files through these functions.
"""

import fcntl
import json
import os

STAGES = ("densenet", "gru", "joint")  # in training order
SERVED_STAGES = ("joint", "gru")  # TAO-Net stages that can be exported, preferred first
CONFIG = "config.json"
REPORT = "report.json"
CONTRACT = "contract.json"  # a stage's model contract (tao_keras.contract), beside model.keras
SCORES = "scores.json"  # a stage's last file: its presence marks the stage finished
LOCK = ".lock"


class RunInUse(RuntimeError):
    """Another process is writing the run directory (the message names its PID)."""


def lock(run_dir):
    """Hold RUN/.lock for as long as the returned file stays open (the process's life): a
    second trainer on the same run directory is refused at once (RunInUse naming the first's
    PID) instead of mixing its epochs and files with the first's. The operating system
    releases the lock when the holder exits, even after kill -9."""
    path = os.path.join(run_dir, LOCK)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunInUse(
            f"{run_dir} is being written by another process (PID {holder}); wait for it to "
            "finish or choose another --output"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def config_path(run_dir):
    return os.path.join(run_dir, CONFIG)


def report_path(run_dir):
    return os.path.join(run_dir, REPORT)


def _read(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: not found; {what} must be a directory written by a trainer"
        ) from None


def load_config(run_dir, what="the run"):
    """The run's config.json as a dict (FileNotFoundError naming the file when there is none)."""
    return _read(config_path(run_dir), what)


def load_report(run_dir, what="the run"):
    """The run's report.json as a dict (FileNotFoundError naming the file when there is none)."""
    return _read(report_path(run_dir), what)


def stage_dir(run_dir, stage):
    return os.path.join(run_dir, stage)


def stage_model(run_dir, stage):
    """RUN/<stage>/model.keras."""
    return os.path.join(run_dir, stage, "model.keras")


def stage_file(run_dir, stage, name):
    """A stage's bookkeeping file: best.weights.h5, history.csv, scores.json, backup."""
    return os.path.join(run_dir, stage, name)


def logs_dir(run_dir, stage=None):
    return os.path.join(run_dir, "logs", *([stage] if stage else []))


def finished_models(run_dir, stages=STAGES):
    """The stages of `stages` that have a model.keras, in the order given."""
    return [s for s in stages if os.path.exists(stage_model(run_dir, s))]


def last_model(run_dir):
    """model.keras of the run's last trained stage (FileNotFoundError when none)."""
    done = finished_models(run_dir)
    if not done:
        raise FileNotFoundError(
            f"{run_dir}: no <stage>/model.keras in it (stages {', '.join(STAGES)})"
        )
    return stage_model(run_dir, done[-1])


def export_root(run_dir):
    """Where a trainer exports its SavedModels: RUN/export."""
    return os.path.join(run_dir, "export")


def next_version(model_root):
    """1 + the highest integer version directory under model_root (TF Serving numbering)."""
    versions = (
        [int(d) for d in os.listdir(model_root) if d.isdigit()] if os.path.isdir(model_root) else []
    )
    return max(versions, default=0) + 1


def saved_model_dir(path):
    """The SavedModel version directory that `path` names: a version directory (holds
    saved_model.pb), a model directory (its highest numbered version that holds one), or a
    trainer's run directory (its export/ holding one model: that model's highest version).
    FileNotFoundError saying what was looked for otherwise."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such directory")
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    exported = export_root(path)
    if os.path.isdir(exported):
        models = sorted(d for d in os.listdir(exported) if os.path.isdir(os.path.join(exported, d)))
        if len(models) == 1:
            return saved_model_dir(os.path.join(exported, models[0]))
        if models:
            raise FileNotFoundError(
                f"{path}: a run with several exported models ({', '.join(models)}): give one, "
                f"e.g. {os.path.join(exported, models[0])}"
            )
    versions = (
        sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True)
        if os.path.isdir(path)
        else []
    )
    for version in versions:
        candidate = os.path.join(path, str(version))
        if os.path.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(
        f"{path}: no saved_model.pb here, in a numbered version directory below it, or in a "
        "run's export/ directory"
    )
