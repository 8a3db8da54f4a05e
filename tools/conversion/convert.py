"""Run a conversion: discover objects, split, read in parallel, write shards and dataset.json.

Memory stays bounded: objects are read by a pool of worker processes with a fixed window
of objects in flight, and each record is written as soon as its turn comes. Shards are
written one at a time under a temporary name (tfrecords.writer.ShardWriter).
"""

import collections
import dataclasses
import glob
import json
import logging
import os
import time

import numpy as np
from tqdm import tqdm

from tao_keras import classes, splits
from tfrecords import manifest as manifest_file
from tfrecords import schema
from tools import worker_pool
from tools.conversion import sequences
from tools.conversion import shards as shard_plan
from tools.conversion import sources as src


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Conversion settings; num_tasks/task_index fan one conversion out over machines."""

    roi_size: int = 64
    seed: int = 0
    fractions: splits.SplitFractions = splits.SplitFractions()
    records_per_shard: int = 200
    min_shards: int = 2
    # None: the date nearest the catalog max_mjd is the date of maximum (data-format.md); a
    # number: the paper's stricter rule, drop objects whose maximum was not observed within it.
    max_date_tolerance_days: float | None = None
    workers: int | None = None
    strict: bool = False
    num_tasks: int = 1
    task_index: int = 0
    overwrite: bool = False  # replace another conversion found in the output directory


_NOT_RECORDED = ("workers", "strict", "overwrite")  # options that do not change the output


def _recorded_options(options):
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in _NOT_RECORDED}


def _same_conversion(old, inputs, options):
    """True when a manifest describes this conversion (same inputs and output-shaping options)."""
    ignore = ("num_tasks", "task_index")
    mine = json.loads(json.dumps(_recorded_options(options)))
    theirs = {k: v for k, v in old.get("options", {}).items() if k not in ignore}
    return old.get("inputs") == [os.path.abspath(p) for p in inputs] and theirs == {
        k: v for k, v in mine.items() if k not in ignore
    }


def _claim_output(output_dir, inputs, options, planned):
    """Make output_dir ready for this conversion, before any shard is written.

    Another conversion's output (a manifest with other inputs or options, or shards this
    plan does not have) is refused unless options.overwrite, which removes those shards. The
    old dataset.json is removed first in any case, so that an interrupted run never leaves a
    manifest describing a mix of old and new shards.
    """
    stale = sorted(
        name
        for name in os.listdir(output_dir)
        if name.endswith(".tfrecord") and name not in planned
    )
    other = False
    if manifest_file.exists(output_dir):
        try:
            other = not _same_conversion(manifest_file.load(output_dir), inputs, options)
        except (ValueError, OSError):
            other = True
    if (stale or other) and not options.overwrite:
        what = (
            f"{len(stale)} shard(s) this conversion would not write" if stale else "a dataset.json"
        )
        raise src.ConversionError(
            f"{output_dir} holds another conversion ({what}, e.g. "
            f"{(stale or [manifest_file.MANIFEST])[0]}); pass --overwrite to replace it, "
            "or choose another --output"
        )
    if os.path.exists(manifest_file.path(output_dir)):
        os.remove(manifest_file.path(output_dir))
    for name in stale:
        os.remove(os.path.join(output_dir, name))


def _read_task(args):
    """One object read in a worker. Whatever goes wrong is that object's problem, returned as
    plain data (exception objects of some libraries cannot be pickled back to the parent)."""
    try:
        return sequences.read_object(*args)
    except Exception as e:
        source = args[0]
        problem = src.Problem(
            "object", source.path, f"unexpected error: {type(e).__name__}: {e}", source.object_id
        )
        return None, [problem], {"duplicates": 0, "padded": 0, "max_date_distance_days": None}


def _ordered_results(tasks, workers, window):
    """Results of _read_task over tasks, in order, with at most `window` tasks in flight."""
    pool = worker_pool.spawn_pool(workers)
    if pool is None:
        yield from map(_read_task, tasks)
        return
    try:
        pending = collections.deque()
        tasks = iter(tasks)
        for task in tasks:
            pending.append(pool.apply_async(_read_task, (task,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.terminate()


def _problem_dict(problem):
    return {"path": problem.path, "reason": problem.reason, "object_id": problem.object_id}


def convert(inputs, output_dir, options=ConvertOptions(), progress=True):
    """Convert input directories into output_dir; returns this task's manifest dict.

    inputs: dataset directories (either layout, detected per directory); options: a
    ConvertOptions (RoI, seed, split fractions, shard sizes, max-date rule, workers, strict,
    fan-out, overwrite); progress: show a progress bar. Raises ConversionError when nothing
    usable was written, when output_dir holds another conversion (without overwrite), or at
    the first problem when strict.
    """
    began = time.perf_counter()
    found, problems, ignored, layouts = src.discover(inputs)
    for problem in problems:
        logging.warning("%s", problem)
    if options.strict and problems:
        raise src.ConversionError(f"strict mode: {problems[0]}")
    assigned = splits.assign_splits(found, options.fractions, options.seed)
    shards = shard_plan.plan_shards(assigned, options.records_per_shard, options.min_shards)
    mine = [shard for g, shard in enumerate(shards) if g % options.num_tasks == options.task_index]
    by_id = {s.object_id: s for s in found}
    os.makedirs(output_dir, exist_ok=True)
    _claim_output(output_dir, inputs, options, {shard.filename for shard in shards})
    for shard in mine:  # leftovers of an interrupted run of this task (others own other shards)
        for stale in glob.glob(os.path.join(output_dir, f".{glob.escape(shard.filename)}.tmp-*")):
            os.remove(stale)

    tasks = [
        (by_id[oid], options.roi_size, options.max_date_tolerance_days)
        for shard in mine
        for oid in shard.object_ids
    ]
    workers = options.workers or os.cpu_count() or 1
    results = _ordered_results(tasks, workers, window=4 * workers)
    tally = _Tally()
    bar = tqdm(total=len(tasks), unit="obj", desc="convert", disable=not progress)
    try:
        for shard in mine:
            _write_shard(shard, results, output_dir, options, tally, bar)
    finally:
        bar.close()
        results.close()
    manifest = _manifest(inputs, layouts, options, found, tasks, problems, ignored, tally, began)
    written = manifest["summary"]["objects_written"]
    if not written and (tasks or options.num_tasks == 1):
        raise src.ConversionError(
            f"nothing usable was written to {output_dir}: {len(tally.object_problems)} objects "
            f"dropped, {len(tally.file_problems)} files skipped"
        )
    _publish(manifest, output_dir, options)
    return manifest


@dataclasses.dataclass
class _Tally:
    """What the shards of one conversion task hold so far, and what was dropped on the way."""

    records: dict = dataclasses.field(
        default_factory=lambda: {
            split: collections.Counter() for split in (*src.SPLITS, splits.UNLABELLED_SPLIT)
        }
    )
    exposures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    shards: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    object_problems: list = dataclasses.field(default_factory=list)
    file_problems: list = dataclasses.field(default_factory=list)
    duplicates: int = 0
    padded: int = 0
    distances: dict = dataclasses.field(default_factory=dict)  # object id -> days from max_mjd


def _write_shard(shard, results, output_dir, options, tally, bar):
    """Write one shard from the next of `results` (one per object of the shard, in order)."""
    from tfrecords import writer  # imported here: spawned readers re-import the entry module

    shard_exposures = 0
    with writer.ShardWriter(os.path.join(output_dir, shard.filename)) as out:
        for _ in shard.object_ids:
            record, trouble, stats = next(results)
            tally.duplicates += stats["duplicates"]
            tally.padded += stats["padded"]
            for problem in trouble:
                logging.warning("%s", problem)
                kind = tally.object_problems if problem.kind == "object" else tally.file_problems
                kind.append(problem)
            if options.strict and trouble:
                raise src.ConversionError(f"strict mode: {trouble[0]}")
            if record is not None:
                if stats["max_date_distance_days"] is not None:
                    tally.distances[record.object_id] = stats["max_date_distance_days"]
                out.write(writer.encode(record))
                tally.records[shard.split][shard.class_name] += 1
                shard_exposures += record.num_exposures
            bar.update(1)
            bar.set_postfix(exposures=sum(tally.exposures.values()) + shard_exposures)
    tally.exposures[shard.split] += shard_exposures
    tally.shards[shard.split].append(
        {
            "file": shard.filename,
            "class": shard.class_name,
            "records": out.count,
            "exposures": shard_exposures,
        }
    )


def _manifest(inputs, layouts, options, found, tasks, problems, ignored, tally, began):
    """This task's dataset.json content (tfrecords.manifest's structure)."""
    elapsed = time.perf_counter() - began
    written = sum(sum(c.values()) for c in tally.records.values())
    total_exposures = sum(tally.exposures.values())
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "roi_size": options.roi_size,
        "class_names": list(classes.CLASS_NAMES),
        "inputs": [os.path.abspath(p) for p in inputs],
        "layouts": layouts,
        "options": _recorded_options(options),
        "splits": {
            split: {
                "records": {c: n for c, n in tally.records[split].items() if n},
                "exposures": tally.exposures[split],
                "shards": tally.shards[split],
            }
            for split in tally.records
            if tally.shards[split]
        },
        "problems": {
            "rows_rejected": [_problem_dict(p) for p in problems],
            "objects_dropped": [_problem_dict(p) for p in tally.object_problems],
            "files_skipped": [_problem_dict(p) for p in tally.file_problems],
        },
        "ignored_folders": ignored,
        "max_date_distance": _distance_summary(tally.distances),
        "summary": {
            "objects_listed": len(found),
            "objects_read": len(tasks),
            "objects_written": written,
            "objects_dropped": len(tally.object_problems),
            "rows_rejected": len(problems),
            "files_skipped": len(tally.file_problems),
            "duplicate_exposures_dropped": tally.duplicates,
            "padded_exposures": tally.padded,
            "exposures_written": total_exposures,
            "seconds": round(elapsed, 2),
            "exposures_per_second": round(total_exposures / elapsed, 1) if elapsed else 0.0,
        },
    }


def _publish(manifest, output_dir, options):
    """Write the manifest: dataset.json for a single task, else this task's part, merged into
    dataset.json by the task that completes the set."""
    if options.num_tasks == 1:
        manifest_file.write(output_dir, manifest)
        return
    manifest_file.write(output_dir, manifest, part=(options.task_index, options.num_tasks))
    if manifest_file.parts_written(output_dir, options.num_tasks) == options.num_tasks:
        merge_manifests(output_dir, options.num_tasks)


FAR_FROM_MAX_DAYS = 5.0


def _distance_summary(distances):
    """How far the date of maximum is from the catalog max_mjd: counts, median, and every
    object further than FAR_FROM_MAX_DAYS (the paper would have dropped those)."""
    values = np.array(list(distances.values()), float)
    far = sorted((oid, round(d, 3)) for oid, d in distances.items() if d > FAR_FROM_MAX_DAYS)
    return {
        "objects_with_catalog_max": len(values),
        "median_days": round(float(np.median(values)), 3) if len(values) else None,
        "further_than_days": FAR_FROM_MAX_DAYS,
        "further": [{"object_id": oid, "days": d} for oid, d in far],
    }


def merge_manifests(output_dir, num_tasks):
    """Combine the per-task manifests of a fanned-out conversion into dataset.json."""
    parts = []
    for index in range(num_tasks):
        try:
            parts.append(manifest_file.load_part(output_dir, index, num_tasks))
        except FileNotFoundError:
            raise src.ConversionError(
                f"{manifest_file.part_path(output_dir, index, num_tasks)}: missing; task "
                f"{index} of {num_tasks} has not finished"
            ) from None
    merged = dict(parts[0])
    merged["options"] = {
        k: v for k, v in merged["options"].items() if k not in ("num_tasks", "task_index")
    }
    splits_out = {}
    for part in parts:
        for split, entry in part["splits"].items():
            into = splits_out.setdefault(
                split, {"records": collections.Counter(), "exposures": 0, "shards": []}
            )
            into["records"].update(entry["records"])
            into["exposures"] += entry["exposures"]
            into["shards"].extend(entry["shards"])
    for entry in splits_out.values():
        entry["records"] = dict(entry["records"])
        entry["shards"].sort(key=lambda s: s["file"])
    merged["splits"] = splits_out
    merged["problems"] = {
        "rows_rejected": parts[0]["problems"]["rows_rejected"],  # every task reads the same catalog
        "objects_dropped": [p for part in parts for p in part["problems"]["objects_dropped"]],
        "files_skipped": [p for part in parts for p in part["problems"]["files_skipped"]],
    }
    summary = {key: sum(part["summary"][key] for part in parts) for key in parts[0]["summary"]}
    for key in ("objects_listed", "rows_rejected"):
        summary[key] = parts[0]["summary"][key]
    summary["exposures_per_second"] = round(
        summary["exposures_written"] / max(max(part["summary"]["seconds"] for part in parts), 1e-9),
        1,
    )
    merged["summary"] = summary
    manifest_file.write(output_dir, merged)
    return merged
