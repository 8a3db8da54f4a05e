"""Accelerator benchmark: the project's model builders timed on the device JAX sees, with no
TensorFlow (numpy, keras, jax), and the paper protocol's time projected from the rates.

  python -m tools.accelerator_benchmark                 # full sizes: meant for a GPU
  python -m tools.accelerator_benchmark --tiny          # seconds on a CPU (what CI runs)

Keras runs on its JAX backend here (the command sets it before keras is imported). Each case
builds a model with `build_densenet` / `build_taonet` / `build_head`, compiles it as training does
(losses.compile_stage, XLA), feeds synthetic full-length batches kept on the device, and
times `train_on_batch` (training stages) or `predict_on_batch` (inference) after compiling:

- densenet: stage 1, the DenseNet on triplets (unit: triplets);
- gru_frozen: stage 2 as the protocol runs it, TAO-Net with the backbone frozen, which still
  runs the backbone forward on every step (unit: sequences of `--sequence_length` dates);
- features + gru_cached: stage 2 with the frozen backbone's features computed once
  (`features`, triplets/s) and the GRU head trained on them (`gru_cached`, sequences/s);
- joint: stage 3, everything trained with the auxiliary loss (sequences);
- inference: the whole TAO-Net forward (sequences).

The matrix-multiply ceiling is measured in the same run (bfloat16 and float32). Achieved
FLOP/s count the convolution and dense layers (tools.flops.layer_flops), x3 for a training
step. A case that fails (memory, compilation) is reported with its error and the others go on;
cases left when `--budget_s` is spent are listed as skipped (a case already compiling runs to
its end). The JSON is rewritten after every case, so a run killed from outside keeps what it
measured.
"""

import dataclasses
import math
import os
import platform
import time
import traceback

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_bool("tiny", False, "Tiny models, batches and steps (CI on a CPU), in seconds.")
flags.DEFINE_integer("steps", 10, "Timed steps per case (after the compiling call and one more).")
flags.DEFINE_float("budget_s", 420.0, "Start no new case after this many seconds.")
flags.DEFINE_integer(
    "examples_per_epoch", 55_008, "Balanced examples per epoch of the projection (full release)."
)
flags.DEFINE_integer(
    "feature_draws",
    5,
    "Projection of stage 2 on cached features: per-date draws per example cached (the "
    "backbone runs on draws x examples_per_epoch sequences once).",
)
flags.DEFINE_list(
    "cases", None, "Only these cases (keys as printed, e.g. paper:joint:bf16:b64); default: all."
)
flags.DEFINE_string("output_json", "accelerator_benchmark.json", "Where to write the results.")

SEQUENCE_LENGTH = 19  # the paper's S: 17 triplets per sequence
NUM_CLASSES = 6
UNITS = {
    "densenet": "triplets",
    "features": "triplets",
    "gru_frozen": "sequences",
    "gru_cached": "sequences",
    "joint": "sequences",
    "inference": "sequences",
}


@dataclasses.dataclass(frozen=True)
class Case:
    preset: str
    stage: str
    precision: str  # "mixed_bfloat16" or "float32"
    batch: int

    @property
    def key(self):
        bits = "bf16" if self.precision == "mixed_bfloat16" else "fp32"
        return f"{self.preset}:{self.stage}:{bits}:b{self.batch}"


def full_cases():
    """The cases on an accelerator, most informative first. Compiling a `paper` case took
    30-76 s on an H200 (2026-11-30), so this list fits the default budget (7 min) there; joint
    at batch 64 asked for 135 GiB and is left out."""
    paper = [
        ("densenet", 64),
        ("joint", 8),
        ("gru_frozen", 32),
        ("features", 1024),
        ("gru_cached", 256),
        ("densenet", 512),
        ("joint", 32),
        ("inference", 256),
    ]
    cases = [Case("paper", stage, "mixed_bfloat16", batch) for stage, batch in paper]
    cases += [Case("paper", "densenet", "float32", 64)]
    cases += [
        Case("cpu", stage, "mixed_bfloat16", batch)
        for stage, batch in [("densenet", 256), ("joint", 64), ("inference", 256)]
    ]
    return cases


def tiny_cases():
    """Every stage of the `cpu` preset at batch 2 (the paper preset under JAX is covered by
    tests/test_jax_backend.py), one in float32."""
    stages = ("densenet", "gru_frozen", "features", "gru_cached", "joint", "inference")
    cases = [Case("cpu", stage, "mixed_bfloat16", 2) for stage in stages]
    return cases + [Case("cpu", "densenet", "float32", 2)]


def model_config(preset, tiny):
    """The preset's TAONetConfig; tiny: the paper preset at a 16x16 RoI (same layers)."""
    from tao_keras.models import presets

    config = presets.preset(preset)
    if tiny and config.backbone.roi_size > 16:
        config = dataclasses.replace(
            config, backbone=dataclasses.replace(config.backbone, roi_size=16)
        )
    return config


def matmul_tflops(dtype, size, repeats=10):
    """The device's dense matrix-multiply rate (TFLOP/s) for `dtype`: best of three rounds."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(keys[0], (size, size), jnp.float32).astype(dtype)
    b = jax.random.normal(keys[1], (size, size), jnp.float32).astype(dtype)
    from tools import flops

    product = jax.jit(lambda x, y: x @ y)
    return flops.matmul_rate(product, a, b, jax.block_until_ready, repeats) / 1e12


def _synthetic(case, model, roi, steps_per_sequence):
    """Device-resident inputs and labels of one batch of `case` for its model."""
    import jax
    import numpy as np

    rng = np.random.default_rng(0)
    batch = case.batch
    labels = rng.integers(0, NUM_CLASSES, batch).astype("int32")
    if case.stage in ("densenet", "features"):
        inputs = rng.normal(size=(batch, roi, roi, 3)).astype("float32")
        inputs = inputs if case.stage == "features" else {"images": inputs}
        return jax.device_put(inputs), jax.device_put(labels)
    dt = rng.uniform(0, 0.3, (batch, steps_per_sequence, 2)).astype("float32")
    length = np.full(batch, steps_per_sequence, "int32")
    if case.stage == "gru_cached":
        width = model.input["features"].shape[-1]
        features = rng.normal(size=(batch, steps_per_sequence, width)).astype("float32")
        inputs = {"features": features, "dt": dt, "length": length}
    else:
        images = rng.normal(size=(batch, steps_per_sequence, roi, roi, 3)).astype("float32")
        inputs = {"images": images, "dt": dt, "length": length}
    if "photometry" in model.input:  # the cpu preset: per-date photometry of each triplet
        width = model.input["photometry"].shape[-1]
        inputs["photometry"] = rng.normal(size=(batch, steps_per_sequence, width)).astype("float32")
    names = _trained_outputs(model)
    targets = {name: labels for name in names} if names else labels
    return jax.device_put(inputs), jax.device_put(targets)


def _trained_outputs(model):
    """The names of a model's outputs that training gives a loss: TAO-Net's final and auxiliary
    outputs, with the statistics expert the GRU's classifier instead of the mean (the expert is
    fitted apart: losses.compile_stage); [] for a model of one output (TAO-Net's head without
    the expert)."""
    from tao_keras.models import taonet

    if not isinstance(model.output, dict):
        return []
    names = [taonet.HEAD_OUTPUT if taonet.uses_statistics_expert(model) else "probabilities"]
    return names + (["aux_probabilities"] if "aux_probabilities" in model.output else [])


def _model(case, config, steps):
    """(model, step function, FLOPs per unit of one step) of one case, compiled as training
    is; steps: triplets per sequence. A training step counts 3x the forward pass, except the
    frozen backbone of stage 2, which runs forward only."""
    import keras

    from tao_keras.models import densenet, taonet
    from tao_keras.training import losses
    from tools import flops

    backbone = densenet.build_backbone(config.backbone)
    backbone_flops = flops.layer_flops(backbone)
    if case.stage in ("densenet", "features"):
        model = densenet.build_densenet(config.backbone, NUM_CLASSES, "early")
        if case.stage == "features":
            inner = taonet.backbone_of(model)
            return inner, lambda x, y: inner.predict_on_batch(x), backbone_flops
        losses.compile_stage(model, "densenet", 1e-3, 1e-4, 0.0)
        return model, model.train_on_batch, 3 * flops.layer_flops(model)
    if case.stage == "gru_cached":
        model = taonet.build_head(config, NUM_CLASSES, int(backbone.output.shape[-1]))
        model.compile(
            keras.optimizers.AdamW(1e-3, weight_decay=1e-4),
            loss={name: "sparse_categorical_crossentropy" for name in _trained_outputs(model)}
            or "sparse_categorical_crossentropy",
        )
        return model, model.train_on_batch, 3 * flops.recurrent_flops(model, steps)
    model = taonet.build_taonet(config, NUM_CLASSES)
    recurrent = flops.recurrent_flops(model, steps)
    if case.stage == "inference":
        return model, lambda x, y: model.predict_on_batch(x), backbone_flops * steps + recurrent
    taonet.set_trainable(model, backbone=case.stage == "joint")
    losses.compile_stage(model, "joint" if case.stage == "joint" else "gru", 1e-3, 1e-4, 1.0)
    backbone_factor = 3 if case.stage == "joint" else 1
    return model, model.train_on_batch, backbone_factor * backbone_flops * steps + 3 * recurrent


def run_case(case, tiny, steps):
    """Times one case -> its results (rate per second of its unit, step time, FLOP/s)."""
    import jax
    import keras

    keras.mixed_precision.set_global_policy(case.precision)
    keras.utils.clear_session()
    try:
        config = model_config(case.preset, tiny)
        sequence_steps = 3 if tiny else SEQUENCE_LENGTH - 2
        model, step, work = _model(case, config, sequence_steps)
        inputs, targets = _synthetic(case, model, config.backbone.roi_size, sequence_steps)
        began = time.perf_counter()
        jax.block_until_ready(step(inputs, targets))
        compile_s = time.perf_counter() - began
        jax.block_until_ready(step(inputs, targets))
        began = time.perf_counter()
        for _ in range(steps):
            out = step(inputs, targets)
        jax.block_until_ready(out)
        step_s = (time.perf_counter() - began) / steps
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {
        "preset": case.preset,
        "stage": case.stage,
        "precision": case.precision,
        "batch": case.batch,
        "unit": UNITS[case.stage],
        "compile_s": round(compile_s, 2),
        "step_ms": round(1000 * step_s, 3),
        "per_second": round(case.batch / step_s, 2),
        "gflop_per_unit": round(work / 1e9, 4),
        "achieved_tflops": round(case.batch * work / step_s / 1e12, 4),
    }


def _measured(results, preset, stage):
    """The bfloat16 results of one stage of one preset."""
    return [
        r
        for r in results.values()
        if "per_second" in r
        and (r["preset"], r["stage"], r["precision"]) == (preset, stage, "mixed_bfloat16")
    ]


def _fastest(results, preset, stage):
    rates = _measured(results, preset, stage)
    return max(rates, key=lambda r: r["per_second"]) if rates else None


def _nearest(results, preset, stage, batch):
    """The result at `batch`, else at the nearest measured batch (ratio)."""
    rates = _measured(results, preset, stage)
    return min(rates, key=lambda r: abs(math.log(r["batch"] / batch)), default=None)


def project(results, preset, examples_per_epoch, feature_draws):
    """Hours of the `paper` training schedule (its epochs per stage) on `examples_per_epoch`
    examples per epoch at the rates measured for `preset`: as it runs today (the schedule's
    batch sizes, or the nearest measured; stage 2 re-running the frozen backbone every step)
    and with the measured levers (the fastest batch per stage; stage 2 on features cached for
    `feature_draws` draws per example, when that is faster)."""
    from tao_keras.training import config as training_config

    schedule = training_config.TRAINING_PRESETS["paper"]
    stages = {"densenet": schedule.densenet, "gru": schedule.gru, "joint": schedule.joint}
    measured_as = {"densenet": "densenet", "gru": "gru_frozen", "joint": "joint"}

    def hours(result, stage):
        if result is None:
            return None
        return stages[stage].epochs * examples_per_epoch / result["per_second"] / 3600

    today, levers, batches = {}, {}, {}
    for stage, settings in stages.items():
        at = _nearest(results, preset, measured_as[stage], settings.batch_size)
        today[stage] = hours(at, stage)
        fastest = _fastest(results, preset, measured_as[stage])
        levers[stage] = hours(fastest, stage)
        batches[stage] = {
            "today": at and at["batch"],
            "levers": fastest and fastest["batch"],
        }
    features = _fastest(results, preset, "features")
    cached = _fastest(results, preset, "gru_cached")
    if features and cached:
        extraction_s = (
            feature_draws * examples_per_epoch * (SEQUENCE_LENGTH - 2) / features["per_second"]
        )
        cached_hours = extraction_s / 3600 + hours(cached, "gru")
        if levers["gru"] is None or cached_hours < levers["gru"]:
            levers["gru"] = cached_hours
            batches["gru"]["levers"] = f"cached features (head batch {cached['batch']})"
    out = {
        "preset": preset,
        "epochs": {stage: settings.epochs for stage, settings in stages.items()},
        "examples_per_epoch": examples_per_epoch,
        "feature_draws": feature_draws,
        "batches": batches,
    }
    for name, values in (("today", today), ("levers", levers)):
        out[name] = {k: None if v is None else round(v, 3) for k, v in values.items()}
        known = [v for v in values.values() if v is not None]
        out[name]["total"] = round(sum(known), 3) if len(known) == len(values) else None
    return out


def format_table(payload):
    """The results as a markdown table, then the ceilings and the projection."""
    ceiling = payload["ceiling_tflops"]["bfloat16"]
    lines = [
        "| case | unit | step ms | per second | TFLOP/s | of bf16 ceiling | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in payload["results"].items():
        if "error" in r or "skipped" in r:
            reason = r.get("error") or r["skipped"]
            lines.append(f"| {key} | {reason} | | | | | |")
            continue
        lines.append(
            f"| {key} | {r['unit']} | {r['step_ms']:.1f} | {r['per_second']:,.0f} | "
            f"{r['achieved_tflops']:.3g} | {r['achieved_tflops'] / ceiling:.1%} | "
            f"{r['compile_s']:.0f} |"
        )
    c = payload["ceiling_tflops"]
    lines.append("")
    lines.append(
        f"matmul ceiling: bfloat16 {c['bfloat16']:.3g} TFLOP/s, float32 {c['float32']:.3g} "
        f"TFLOP/s ({payload['device']})"
    )
    p = payload["projection"]
    for name in ("today", "levers"):
        cells = ", ".join(f"{k} {'-' if v is None else f'{v:.2f} h'}" for k, v in p[name].items())
        used = ", ".join(f"{k} {b[name]}" for k, b in p["batches"].items())
        lines.append(
            f"paper schedule at {p['preset']}-preset rates ({name}; batches: {used}): {cells}"
        )
    return "\n".join(lines)


def _finish(payload, started):
    """Projection and wall time from the results so far, written atomically."""
    from tao_keras import files

    payload["projection"] = project(
        payload["results"],
        "cpu" if FLAGS.tiny else "paper",
        FLAGS.examples_per_epoch,
        FLAGS.feature_draws,
    )
    payload["wall_s"] = round(time.perf_counter() - started, 1)
    files.write_json_atomic(FLAGS.output_json, payload)


def main(argv):
    del argv
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise app.UsageError(
            f"Keras was loaded with the {keras.backend.backend()!r} backend; this benchmark "
            "needs JAX (run it as its own process: python -m tools.accelerator_benchmark)"
        )
    started = time.perf_counter()
    device = jax.devices()[0]
    size = 256 if FLAGS.tiny else 8192
    payload = {
        "device": f"{device.platform}: {getattr(device, 'device_kind', device)}",
        "host": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "keras": keras.__version__,
        "tiny": FLAGS.tiny,
        "ceiling_tflops": {
            "bfloat16": round(matmul_tflops("bfloat16", size), 2),
            "float32": round(matmul_tflops("float32", size), 2),
        },
        "results": {},
    }
    steps = 1 if FLAGS.tiny else FLAGS.steps
    cases = tiny_cases() if FLAGS.tiny else full_cases()
    if FLAGS.cases:
        known = {case.key: case for case in tiny_cases() + full_cases()}
        unknown = sorted(set(FLAGS.cases) - set(known))
        if unknown:
            raise app.UsageError(f"--cases: unknown {unknown}; choose from {sorted(known)}")
        cases = [known[key] for key in FLAGS.cases]
    for case in cases:
        elapsed = time.perf_counter() - started
        if elapsed > FLAGS.budget_s:
            payload["results"][case.key] = {"skipped": f"budget spent ({elapsed:.0f} s)"}
            continue
        try:
            payload["results"][case.key] = run_case(case, FLAGS.tiny, steps)
        except Exception as error:  # one case's failure (memory, compilation) costs only it
            logging.error("%s failed: %s", case.key, traceback.format_exc())
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            payload["results"][case.key] = {"error": f"{type(error).__name__}: {first[:160]}"}
        logging.info("%s: %s", case.key, payload["results"][case.key])
        _finish(payload, started)  # after every case: a run killed later keeps what it measured
    print(format_table(payload))
    print(f"wall time {payload['wall_s']:.0f} s; results in {FLAGS.output_json}")


def cli():
    """The console script (see setup.cfg's console_scripts): Keras on its JAX backend, chosen
    here, before anything imports keras (importing this module changes nothing)."""
    from tools import console

    os.environ["KERAS_BACKEND"] = "jax"
    console.run(main, __name__)


if __name__ == "__main__":
    cli()
