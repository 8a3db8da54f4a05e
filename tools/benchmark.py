"""Benchmarks that print numbers (never timed tests): one table plus a JSON file.

  python -m tools.benchmark --parts simulation,conversion --num_objects 100

Parts so far: simulation (exposures/s), conversion (exposures/s) against a bare astropy
read of the same files with the same number of processes (the ceiling). Each part runs in
its own process; peak RSS is that process plus its worker processes, summed, sampled.
"""

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

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["simulation", "conversion"], "Parts to run: simulation, conversion.")
flags.DEFINE_integer("num_objects", 100, "Objects in the simulated survey the parts work on.", lower_bound=1)
flags.DEFINE_integer("workers", None, "Worker processes (default: all cores).", lower_bound=1)
flags.DEFINE_string("workdir", None, "Scratch directory (default: a temporary one, removed after).")
flags.DEFINE_string("output_json", "benchmark.json", "Where to write the results as JSON.")


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


def _simulation(workdir, num_objects, workers):
    from tools.simulation import survey
    out = os.path.join(workdir, "survey")
    summary = survey.simulate_survey(out, survey.SurveyConfig(num_objects=num_objects, seed=0),
                                     workers=workers, progress=False)
    return {"exposures": summary["exposures"], "seconds": summary["seconds"],
            "exposures_per_second": summary["exposures_per_second"]}


def _read_file(path):
    from astropy.io import fits
    with fits.open(path, memmap=False) as hdul:
        return hdul[0].data.shape[0]


def _conversion(workdir, num_objects, workers):
    from tools.conversion import convert
    survey_dir = os.path.join(workdir, "survey")
    files = sorted(glob.glob(os.path.join(survey_dir, "images", "*", "*.fits")))
    began = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_read_file, files[:workers])           # start-up, not counted
        began = time.perf_counter()
        pool.map(_read_file, files, chunksize=64)
    bare = len(files) / (time.perf_counter() - began)
    out = os.path.join(workdir, "records")
    shutil.rmtree(out, ignore_errors=True)
    manifest = convert.convert([survey_dir], out, convert.ConvertOptions(workers=workers), progress=False)
    s = manifest["summary"]
    return {"exposures": s["exposures_written"], "seconds": s["seconds"],
            "exposures_per_second": s["exposures_per_second"],
            "bare_astropy_read_per_second": round(bare, 1),
            "fraction_of_bare_read": round(s["exposures_per_second"] / bare, 3)}


PARTS = {"simulation": _simulation, "conversion": _conversion}


def _run_part(name, workdir, num_objects, workers, queue):
    with PeakMemory() as memory:
        result = PARTS[name](workdir, num_objects, workers)
    result["peak_rss_mb"] = round(memory.peak_total_mb, 1)
    queue.put(result)


def run_parts(parts, workdir, num_objects, workers):
    """Run each part in a fresh process, in order; returns {part: results}."""
    ctx = multiprocessing.get_context("spawn")
    results = {}
    for name in parts:
        queue = ctx.Queue()
        process = ctx.Process(target=_run_part, args=(name, workdir, num_objects, workers, queue))
        process.start()
        while True:
            try:
                results[name] = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"benchmark part {name!r} died with exit code {process.exitcode}")
        process.join()
    return results


def format_table(results):
    lines = [f"{'part':<12} {'exposures':>10} {'seconds':>8} {'exp/s':>8} {'ceiling/s':>10} "
             f"{'ratio':>6} {'peak RSS MiB':>13}"]
    for name, r in results.items():
        lines.append(f"{name:<12} {r['exposures']:>10} {r['seconds']:>8.1f} {r['exposures_per_second']:>8.0f} "
                     f"{r.get('bare_astropy_read_per_second', float('nan')):>10.0f} "
                     f"{r.get('fraction_of_bare_read', float('nan')):>6.2f} {r['peak_rss_mb']:>13.0f}")
    return "\n".join(lines)


def main(argv):
    del argv
    std_logging.getLogger().setLevel(std_logging.INFO)
    unknown = set(FLAGS.parts) - set(PARTS)
    if unknown:
        raise app.UsageError(f"--parts: unknown {sorted(unknown)}; choose from {sorted(PARTS)}")
    if "conversion" in FLAGS.parts and "simulation" not in FLAGS.parts and not FLAGS.workdir:
        raise app.UsageError("--parts conversion alone needs --workdir holding a survey/ from an earlier run")
    workers = FLAGS.workers or os.cpu_count() or 1
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="tao-benchmark-")
    try:
        results = run_parts(FLAGS.parts, workdir, FLAGS.num_objects, workers)
    finally:
        if not FLAGS.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    payload = {"machine": {"cpus": os.cpu_count(), "workers": workers}, "num_objects": FLAGS.num_objects,
               "results": results}
    with open(FLAGS.output_json, "w") as f:
        json.dump(payload, f, indent=2)
    print(format_table(results))
    logging.info("wrote %s", FLAGS.output_json)


if __name__ == "__main__":
    app.run(main)
