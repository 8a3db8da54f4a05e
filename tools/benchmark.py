"""Benchmarks that print numbers (never timed tests): one table plus a JSON file.

  python -m tools.benchmark                     # every part, full sizes
  python -m tools.benchmark --tiny              # every part in seconds (what CI runs)
  python -m tools.benchmark --parts simulation,conversion --num_objects 100

Parts so far: simulation (exposures/s); conversion (exposures/s) against a bare astropy
read of the same files with the same number of processes (the ceiling); pipeline: the full
training input pipeline (S=19, balanced, augmented, batch 32) in sequences/s and parsed
images/s, against a bare parse of the same records; training_step: sequences/s consumed
by a joint-training step of the `cpu` and `paper` presets; serving: the exported SavedModel's
sequences/s and p50/p99 latency at batch 1 and 64 for both presets; update: the night-by-night
`update` signature's calls/s and latency per night at batch 1 and 64 against the
full-sequence signature on the same objects. Each part runs in
its own process; peak RSS is that process plus its worker processes, summed, sampled. A part
that fails is reported with its error in the table and the JSON, the other parts still run, and
the command then exits non-zero. The accelerator benchmark (no TensorFlow, JAX backend) is
tools/accelerator_benchmark.py.
"""

import dataclasses
import glob
import json
import logging as std_logging
import multiprocessing
import os
import queue as queue_module
import shutil
import tempfile
import threading
import time

from absl import app, flags, logging

from tao_keras import files

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "parts",
    ["simulation", "conversion", "pipeline", "training_step", "serving", "update", "alerts"],
    "Parts to run, in order: simulation, conversion, pipeline (each needs the one before), "
    "training_step, serving and update (need nothing), alerts (needs simulation).",
)
flags.DEFINE_integer(
    "num_objects",
    None,
    "Objects in the simulated survey the parts work on (default 100; 12 with --tiny).",
    lower_bound=1,
)
flags.DEFINE_bool("tiny", False, "Every part at tiny sizes, in seconds (what CI runs).")
flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).", lower_bound=1)
flags.DEFINE_string("workdir", None, "Scratch directory (default: a temporary one, removed after).")
flags.DEFINE_string("output_json", "benchmark.json", "Where to write the results as JSON.")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each part does: FULL (the defaults) or TINY (every part in seconds, what
    CI runs so that no part can rot)."""

    num_objects: int = 100
    warmup_batches: int = 5
    pipeline_batches: int = 40
    step_configurations: tuple = (
        ("cpu", 32, "float32", False),
        ("paper", 2, "float32", False),
        ("cpu", 32, "mixed_bfloat16", False),
        ("paper", 2, "mixed_bfloat16", False),
        ("cpu", 32, "float32", True),
    )
    timed_steps: int = 3
    matmul_size: int = 2048
    serving: tuple = (("cpu", 1, 30), ("cpu", 64, 3), ("paper", 1, 5), ("paper", 64, 1))
    update_batches: tuple = (1, 64)
    update_nights: int = 25
    alert_chunk: int = 32


FULL = Sizes()
TINY = Sizes(
    num_objects=12,
    warmup_batches=1,
    pipeline_batches=2,
    step_configurations=(("cpu", 2, "mixed_bfloat16", False),),
    timed_steps=1,
    matmul_size=128,
    serving=(("cpu", 2, 1),),
    update_batches=(2,),
    update_nights=4,
    alert_chunk=16,
)


class PeakMemory:
    """Samples the resident memory of this process plus its direct children (Linux /proc).

    ru_maxrss is no use here: a spawned child inherits its parent's high-water mark across exec.
    """

    def __init__(self, interval=0.05):
        self.interval = interval
        self.peak_total_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss_mb(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _children(self):
        me, found = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                            found.append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
        return found

    def _run(self):
        while not self._stop.is_set():
            total = self._rss_mb(os.getpid()) + sum(self._rss_mb(pid) for pid in self._children())
            self.peak_total_mb = max(self.peak_total_mb, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _simulation(workdir, sizes, workers):
    from tools.simulation import survey

    out = os.path.join(workdir, "survey")
    summary = survey.simulate_survey(
        out,
        survey.SurveyConfig(num_objects=sizes.num_objects, seed=0),
        workers=workers,
        progress=False,
    )
    return {
        "exposures": summary["exposures"],
        "seconds": summary["seconds"],
        "exposures_per_second": summary["exposures_per_second"],
    }


def _read_file(path):
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        return hdul[0].data.shape[0]


def _conversion(workdir, sizes, workers):
    from tools.conversion import convert

    survey_dir = os.path.join(workdir, "survey")
    files = sorted(glob.glob(os.path.join(survey_dir, "images", "*", "*.fits")))
    from tools import worker_pool

    pool = worker_pool.spawn_pool(workers)  # the converter's own pool; None for one worker
    try:
        for batch in (files[:workers], files):  # the first, start-up, is not counted
            began = time.perf_counter()
            if pool is None:
                list(map(_read_file, batch))
            else:
                pool.map(_read_file, batch, chunksize=64)
    finally:
        if pool is not None:
            pool.terminate()
    bare = len(files) / (time.perf_counter() - began)
    out = os.path.join(workdir, "records")
    shutil.rmtree(out, ignore_errors=True)
    manifest = convert.convert(
        [survey_dir], out, convert.ConvertOptions(workers=workers), progress=False
    )
    s = manifest["summary"]
    return {
        "exposures": s["exposures_written"],
        "seconds": s["seconds"],
        "exposures_per_second": s["exposures_per_second"],
        "bare_astropy_read_per_second": round(bare, 1),
        "fraction_of_bare_read": round(s["exposures_per_second"] / bare, 3),
    }


def _pipeline(workdir, sizes, workers):
    """Full training pipeline (S=19, balanced, augmented, batch 32) against a bare parse."""
    import tensorflow as tf

    from tao_keras.pipeline import datasets
    from tfrecords import manifest as manifest_file
    from tfrecords import parser

    warmup, batches = sizes.warmup_batches, sizes.pipeline_batches
    records = os.path.join(workdir, "records")
    manifest = manifest_file.load(records)
    shards = manifest["splits"]["train"]["shards"]
    paths = [os.path.join(records, s["file"]) for s in shards if s["records"]]
    bare = (
        tf.data.TFRecordDataset(paths)
        .repeat()
        .map(
            lambda x: tf.shape(parser.parse(x, manifest["roi_size"])["images"])[0],
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(32)
        .prefetch(tf.data.AUTOTUNE)
    )
    it = iter(bare)
    for _ in range(warmup):
        next(it)
    began, images = time.perf_counter(), 0
    for _ in range(batches):
        images += int(tf.reduce_sum(next(it)))
    bare_seconds = time.perf_counter() - began
    bare_images = images / bare_seconds

    config = datasets.PipelineConfig()
    dataset, _ = datasets.training_dataset(records, config)
    # Exposures parsed per sequence: the balanced mix gives each class the same weight.
    per_class = {}
    for shard in shards:
        n, e = per_class.get(shard["class"], (0, 0))
        per_class[shard["class"]] = (n + shard["records"], e + shard["exposures"])
    exposures_per_sequence = sum(e / n for n, e in per_class.values() if n) / len(per_class)
    it = iter(dataset)
    for _ in range(warmup):
        next(it)
    began = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - began
    sequences = batches * config.batch_size / seconds
    return {
        "sequences_per_second": round(sequences, 1),
        "images_per_second": round(sequences * exposures_per_sequence, 1),
        "date_images_per_second": round(sequences * config.sequence_length, 1),
        "bare_parse_images_per_second": round(bare_images, 1),
        "bare_parse_sequences_per_second": round(batches * 32 / bare_seconds, 1),
        "fraction_of_bare_parse": round(sequences * exposures_per_sequence / bare_images, 3),
        "seconds": round(seconds, 2),
        "batches": batches,
        "batch_size": config.batch_size,
        "sequence_length": config.sequence_length,
    }


def _time_step(preset, batch, precision, jit, steps):
    """Seconds per joint-training step (final + auxiliary loss, AdamW) of a fresh model, after
    warm-up."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tao_keras.models import presets, taonet
    from tao_keras.training import precision as precision_policy

    config = presets.preset(preset)
    roi = config.backbone.roi_size  # the model's RoI (the cpu preset crops 16x16)
    with precision_policy.policy(precision):  # restores whatever policy was set before
        model = taonet.build_taonet(config, 6)
    taonet.set_trainable(model)  # as the joint stage: all but the (fitted apart) expert
    optimizer = keras.optimizers.AdamW(1e-3)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    rng = np.random.default_rng(0)
    inputs = {
        "images": tf.constant(rng.normal(size=(batch, 17, roi, roi, 3)), tf.float32),
        "dt": tf.constant(rng.uniform(0, 0.3, size=(batch, 17, 2)), tf.float32),
        "length": tf.fill([batch], 17),
    }
    if taonet.uses_photometry(model):  # the cpu preset: per-date photometry of each triplet
        inputs["photometry"] = tf.constant(
            rng.normal(size=(batch, 17, taonet.PHOTOMETRY_WIDTH)), tf.float32
        )
    labels = tf.constant(rng.integers(0, 6, batch), tf.int32)

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            aux = loss_fn(tf.repeat(y, 17), tf.reshape(out["aux_probabilities"], [-1, 6]))
            # the final output's loss, or with the statistics expert (fitted apart) its GRU
            # classifier's (losses.compile_stage)
            final = out[taonet.HEAD_OUTPUT if taonet.HEAD_OUTPUT in out else "probabilities"]
            loss = loss_fn(y, final) + 0.5 * aux
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    step(inputs, labels)  # trace and warm up
    began = time.perf_counter()
    for _ in range(steps):
        step(inputs, labels).numpy()
    return (time.perf_counter() - began) / steps, model


def _training_step(workdir, sizes, workers):
    """Sequences/s a joint-training step consumes, per preset, precision and XLA setting, with the
    model's counted FLOPs and this machine's matrix-multiply rate measured in the same process.

    Synthetic inputs of the pipeline's shapes (S=19 dates -> 17 triplets); batch 32 for the
    cpu preset, 2 for the paper preset (a step of 32 would take minutes on 2 cores).
    """
    import tensorflow as tf

    from tools import flops

    ceiling = flops.matmul_gflops(sizes.matmul_size)
    results = {
        "matmul_gflops": round(ceiling, 1),
        "matmul_bfloat16_gflops": round(
            flops.matmul_gflops(sizes.matmul_size, dtype=tf.bfloat16), 1
        ),
        "configurations": {},
    }
    for preset, batch, precision, jit in sizes.step_configurations:
        seconds, model = _time_step(preset, batch, precision, jit, sizes.timed_steps)
        counted = flops.taonet_flops(model, steps=17)
        rate = batch / seconds
        # A training step = forward + backward (~2x forward: gradients for inputs and weights).
        achieved = 3 * counted["forward_per_sequence"] * rate / 1e9
        key = (
            f"{preset}"
            + ("" if precision == "float32" else f"/{precision}")
            + ("/xla" if jit else "")
        )
        results["configurations"][key] = {
            "preset": preset,
            "precision": precision,
            "xla": jit,
            "sequences_per_second": round(rate, 2),
            "batch_size": batch,
            "seconds_per_step": round(seconds, 2),
            "parameters": model.count_params(),
            "forward_gflop_per_sequence": round(counted["forward_per_sequence"] / 1e9, 2),
            "backbone_gflop_per_triplet": round(counted["backbone_per_triplet"] / 1e9, 3),
            "achieved_gflops": round(achieved, 1),
            "fraction_of_matmul": round(achieved / ceiling, 3),
        }
    return results


def _synthetic_requests(batch, nights=25, per_night=3, roi=64, seed=0):
    """serving_default inputs: `batch` objects of nights x per_night sky-noise exposures
    (75 exposures over 25 dates, the paper's average sequence) with a point source."""
    import numpy as np

    rng = np.random.default_rng(seed)
    exposures = nights * per_night
    images = rng.normal(1000.0, 30.0, size=(batch, exposures, roi, roi)).astype(np.float32)
    images[:, :, roi // 2 - 1 : roi // 2 + 2, roi // 2 - 1 : roi // 2 + 2] += 500.0
    # distinct whole days: one observation date each
    night = np.sort([rng.choice(1000, nights, replace=False) for _ in range(batch)], axis=1)
    mjd = (
        55000.0
        + np.repeat(night, per_night, axis=1)
        + np.tile(np.arange(per_night) * 0.007, nights)
    )
    return images, mjd, np.full(batch, exposures, np.int32)


def _call_latencies(signature, request, calls, warm):
    """Seconds [calls] of whole-sequence calls of `signature` on request (images, mjd,
    num_exposures as numpy), after one warm-up call on its first `warm` objects (one model
    chunk is enough to trace it)."""
    import numpy as np
    import tensorflow as tf

    images, mjd, count = (tf.constant(a) for a in request)
    signature(images=images[:warm], mjd=mjd[:warm], num_exposures=count[:warm])
    latencies = []
    for _ in range(calls):
        began = time.perf_counter()
        signature(images=images, mjd=mjd, num_exposures=count)["probabilities"].numpy()
        latencies.append(time.perf_counter() - began)
    return np.array(latencies)


def _serving(workdir, sizes, workers):
    """SavedModel `serving_default` (grouping, normalization, triplets and TAO-Net in the graph) on
    75-exposure objects, S=19: sequences/s and latency percentiles per preset and batch size."""
    import numpy as np
    import tensorflow as tf

    from tao_keras import contract, export
    from tao_keras.models import presets, taonet

    results = {}
    presets_batches = sizes.serving
    for name in dict.fromkeys(p for p, _, _ in presets_batches):
        path = os.path.join(workdir, "serving", name)
        served = contract.ModelContract(  # 64x64 cutouts; the model crops its own RoI
            presets.preset(name), roi_size=64, sequence_length=19
        )
        export.export_model(taonet.build_taonet(served.architecture, 6), path, served)
        signature = tf.saved_model.load(path).signatures["serving_default"]
        for preset, batch, calls in presets_batches:
            if preset != name:
                continue
            request = _synthetic_requests(batch)
            latencies = _call_latencies(signature, request, calls, warm=min(batch, 8))
            results[f"{name}/batch{batch}"] = {
                "preset": name,
                "batch_size": batch,
                "calls": calls,
                "sequences_per_second": round(batch * calls / latencies.sum(), 2),
                "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
                "latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
            }
    return {"configurations": results}


def _update(workdir, sizes, workers, per_night=3):
    """The `update` signature (one night per call, state carried) against `serving_default` (the
    whole sequence in one call) on the same synthetic objects (25 nights x 3 exposures), cpu
    preset: calls/s and p50/p99 latency of one night's update at batch 1 and 64, the time to
    replay every night, and the full-sequence call's latency."""
    import numpy as np
    import tensorflow as tf

    from tao_keras import contract, export
    from tao_keras.models import presets, taonet

    batches, nights = sizes.update_batches, sizes.update_nights
    path = os.path.join(workdir, "update", "cpu")
    served = contract.ModelContract(presets.preset("cpu"), roi_size=64, per_date="coadd")
    export.export_model(taonet.build_taonet(served.architecture, 6), path, served)
    model = tf.saved_model.load(path)
    update, full = model.signatures["update"], model.signatures["serving_default"]
    size = json.loads(model.metadata()["json"].numpy())["update"]["state_size"]
    results = {}
    for batch in batches:
        images, mjd, count = _synthetic_requests(batch, nights, per_night)
        state = {
            "state": tf.zeros([batch, size]),
            "previous_images": tf.zeros([batch, 2, 64, 64]),
            "previous_mjd": tf.zeros([batch, 2], tf.float64),
        }
        latencies = []
        for night in range(-2, nights):  # two warm-up calls
            k = max(night, 0)
            exposures = slice(k * per_night, (k + 1) * per_night)
            began = time.perf_counter()
            out = update(
                **state,
                images=tf.constant(images[:, exposures]),
                mjd=tf.constant(mjd[:, exposures]),
                num_exposures=tf.fill([batch], per_night),
            )
            out["probabilities"].numpy()
            if night >= 0:
                latencies.append(time.perf_counter() - began)
                state = {k: out[k] for k in state}
        full_latencies = _call_latencies(full, (images, mjd, count), 3, warm=batch)
        latencies = np.array(latencies)
        results[f"cpu/batch{batch}"] = {
            "batch_size": batch,
            "nights": nights,
            "update_calls_per_second": round(len(latencies) / latencies.sum(), 2),
            "update_objects_per_second": round(batch * len(latencies) / latencies.sum(), 1),
            "update_latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "update_latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
            "all_nights_by_update_ms": round(1000 * float(latencies.sum()), 1),
            "full_sequence_latency_ms": round(1000 * float(np.median(full_latencies)), 1),
        }
    return {"configurations": results}


def _alerts(workdir, sizes, workers):
    """The stream classifier (tools.stream_alerts) on the simulated survey written as alert
    packets, cpu preset (untrained weights: the cost does not depend on them), chunks of
    32 packets batched across objects, with each runtime (the SavedModel through TensorFlow;
    ONNX through onnxruntime and numpy): packets/s from Avro file to classification written
    (decoding, the SQLite state, the model), and per-packet latency from read to written."""
    import numpy as np

    from tao_keras import contract, export
    from tao_keras.models import presets, taonet
    from tools import stream_alerts
    from tools.simulation import alerts

    stream_dir = os.path.join(workdir, "alerts")
    written = alerts.write_alerts(os.path.join(workdir, "survey"), stream_dir)
    model_dir = os.path.join(workdir, "alerts-model")
    served = contract.ModelContract(presets.preset("cpu"), roi_size=64, per_date="coadd")
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    export.export_model(taonet.build_taonet(served.architecture, 6), model_dir, served, onnx=True)
    results = {}
    for runtime in ("savedmodel", "onnx"):
        state = os.path.join(workdir, f"alerts-{runtime}.sqlite")
        output = os.path.join(workdir, f"alerts-{runtime}.jsonl")
        for stale in (state, output):
            if os.path.exists(stale):
                os.remove(stale)
        tally, seconds = stream_alerts.stream(
            model_dir,
            stream_alerts.alert_files([stream_dir]),
            state,
            output,
            sizes.alert_chunk,
            runtime=runtime,
        )
        latencies = np.array(tally.latencies)
        results[runtime] = {
            "packets": written["packets"],
            "nightly_files": written["files"],
            "chunk_size": sizes.alert_chunk,
            "seconds": round(seconds, 2),
            "packets_per_second": round(written["packets"] / seconds, 1),
            "latency_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
            "latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
            "nights_committed": tally.nights_committed,
        }
    return {"configurations": results}


PARTS = {
    "simulation": _simulation,
    "conversion": _conversion,
    "pipeline": _pipeline,
    "training_step": _training_step,
    "serving": _serving,
    "update": _update,
    "alerts": _alerts,
}


def _run_part(name, workdir, sizes, workers, queue):
    import traceback

    try:
        with PeakMemory() as memory:
            result = PARTS[name](workdir, sizes, workers)
        result["peak_rss_mb"] = round(memory.peak_total_mb, 1)
    except Exception as error:  # reported in the table and the JSON; the next parts still run
        logging.error("benchmark part %s failed:\n%s", name, traceback.format_exc())
        message = str(error).strip().splitlines()
        result = {"error": f"{type(error).__name__}: {message[0][:200] if message else ''}"}
    queue.put(result)


def run_parts(parts, workdir, sizes, workers):
    """Run each part in a fresh process, in order; returns {part: results}, where a part that
    failed (an exception, or its process dying) holds {"error": reason} instead."""
    ctx = multiprocessing.get_context("spawn")
    results = {}
    for name in parts:
        queue = ctx.Queue()
        process = ctx.Process(target=_run_part, args=(name, workdir, sizes, workers, queue))
        process.start()
        while True:
            try:
                results[name] = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not process.is_alive():
                    results[name] = {"error": f"its process died (exit code {process.exitcode})"}
                    break
        process.join()
    return results


def _step_cells(r, p):
    return (
        f"{p['sequences_per_second']:.2f} seq/s (batch {p['batch_size']}) "
        f"x {3 * p['forward_gflop_per_sequence']:.1f} GFLOP = {p['achieved_gflops']:.0f} GFLOP/s",
        f"{r['matmul_gflops']:.0f} GFLOP/s matmul",
        f"{p['fraction_of_matmul']:.2f}",
    )


def _serving_cells(r, c):
    return (
        f"{c['sequences_per_second']:.2f} seq/s",
        f"p50 {c['latency_p50_ms']:.0f} ms, p99 {c['latency_p99_ms']:.0f} ms ({c['calls']} calls)",
        "",
    )


def _update_cells(r, c):
    return (
        f"{c['update_calls_per_second']:.1f} nights/s "
        f"({c['update_objects_per_second']:.0f} object-nights/s)",
        f"p50 {c['update_latency_p50_ms']:.0f} ms, p99 {c['update_latency_p99_ms']:.0f} ms per "
        f"night; whole sequence {c['full_sequence_latency_ms']:.0f} ms",
        f"{c['update_latency_p50_ms'] / c['full_sequence_latency_ms']:.2f}",
    )


def _pipeline_cells(r):
    return (
        f"{r['sequences_per_second']:.0f} seq/s = {r['images_per_second']:.0f} img/s",
        f"{r['bare_parse_images_per_second']:.0f} img/s parsed",
        f"{r['fraction_of_bare_parse']:.2f}",
    )


def _alert_cells(r, c):
    return (
        f"{c['packets_per_second']:.0f} packets/s (p50 {c['latency_p50_ms']:.0f} ms, p99 "
        f"{c['latency_p99_ms']:.0f} ms)",
        "Rubin ~280 packets/s (10M a night)",
        f"{c['packets_per_second'] / 280:.2f}",
    )


def _exposure_cells(r):
    ceiling = r.get("bare_astropy_read_per_second")
    return (
        f"{r['exposures_per_second']:.0f} exposures/s",
        f"{ceiling:.0f} exposures/s read" if ceiling else "",
        f"{r['fraction_of_bare_read']:.2f}" if ceiling else "",
    )


# Parts with one row per configuration: (row prefix, cells of one configuration).
PER_CONFIGURATION = {
    "training_step": ("step", _step_cells),
    "serving": ("serve", _serving_cells),
    "update": ("update", _update_cells),
    "alerts": ("alerts", _alert_cells),
}


def format_table(results):
    """One line per part (per configuration where a part has several): its rate, the ceiling
    it is compared with, the ratio, peak memory; FAILED and the error for a part that failed."""
    rows = [("part", "rate", "ceiling", "ratio", "peak RSS MiB")]
    for name, r in results.items():
        if "error" in r:
            rows.append((name, f"FAILED: {r['error']}", "", "", ""))
        elif name in PER_CONFIGURATION:
            prefix, cells = PER_CONFIGURATION[name]
            for key, c in r["configurations"].items():
                rows.append((f"{prefix}:{key}", *cells(r, c), f"{r['peak_rss_mb']:.0f}"))
        else:
            cells = _pipeline_cells(r) if name == "pipeline" else _exposure_cells(r)
            rows.append((name, *cells, f"{r['peak_rss_mb']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def main(argv):
    del argv
    std_logging.getLogger().setLevel(std_logging.INFO)
    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; choose from {sorted(PARTS)}")
    if FLAGS.parts[0] in ("conversion", "pipeline", "alerts") and not FLAGS.workdir:
        raise app.UsageError(
            "parts after simulation need --workdir holding the output of an earlier run"
        )
    workers = FLAGS.workers or os.cpu_count() or 1
    sizes = TINY if FLAGS.tiny else FULL
    if FLAGS.num_objects:
        sizes = dataclasses.replace(sizes, num_objects=FLAGS.num_objects)
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="tao-benchmark-")
    try:
        results = run_parts(FLAGS.parts, workdir, sizes, workers)
    finally:
        if not FLAGS.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    payload = {
        "machine": {"cpus": os.cpu_count(), "workers": workers},
        "sizes": "tiny" if FLAGS.tiny else "full",
        "num_objects": sizes.num_objects,
        "results": results,
    }
    files.write_json_atomic(FLAGS.output_json, payload)
    print(format_table(results))
    logging.info("wrote %s", FLAGS.output_json)
    failed = sorted(name for name, r in results.items() if "error" in r)
    if failed:
        raise SystemExit(f"benchmark parts failed: {', '.join(failed)} (the others are above)")


def cli():
    """The console script (see setup.cfg's console_scripts)."""
    from tools import console

    console.run(main, __name__)


if __name__ == "__main__":
    cli()
