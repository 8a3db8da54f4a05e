"""The one table of class names: canonical order, label indices and accepted aliases.

Indices follow the paper's tables (BZ, AGN, CV, OTHER, SN, NT). Everything that stores
or prints a class (records, reports, the exported model) goes through this module.
"""

CLASS_NAMES = ("BZ", "AGN", "CV", "OTHER", "SN", "NT")
TRANSIENT_CLASSES = ("BZ", "AGN", "CV", "OTHER", "SN")
UNLABELLED = -1

# Case-insensitive spellings accepted in a catalog's `label` column.
_ALIASES = {
    "blazar": "BZ",
    "supernova": "SN",
    "unknown": "OTHER",
    "non-transient": "NT",
    "nontransient": "NT",
    "non_transient": "NT",
    "non-t": "NT",
}
_LOOKUP = {name.lower(): name for name in CLASS_NAMES} | _ALIASES


def canonical_label(text):
    """Canonical class name for a label or alias ('' or None -> None = unlabelled).

    Raises ValueError naming the accepted spellings for anything else.
    """
    if text is None or not str(text).strip():
        return None
    key = str(text).strip().lower()
    if key not in _LOOKUP:
        accepted = ", ".join(list(CLASS_NAMES) + sorted(_ALIASES))
        raise ValueError(f"unknown label {text!r} (accepted, any case: {accepted})")
    return _LOOKUP[key]


def label_index(name):
    """Index of a canonical class name in CLASS_NAMES; None -> UNLABELLED."""
    return UNLABELLED if name is None else CLASS_NAMES.index(name)


def is_transient(name):
    return name in TRANSIENT_CLASSES


# The paper's four tasks (section 2.4): task -> (task class names, {class: task class or None}).
# None drops the object from that task.
TASKS = {
    "multiclass": (CLASS_NAMES, {name: name for name in CLASS_NAMES}),
    "binary": (
        ("transient", "NT"),
        {**{name: "transient" for name in TRANSIENT_CLASSES}, "NT": "NT"},
    ),
    "supernova": (("SN", "NT"), {"SN": "SN", "NT": "NT"}),
    "transients": (TRANSIENT_CLASSES, {name: name for name in TRANSIENT_CLASSES}),
}


def task_class_names(task):
    """Class names of a task's output, in output order."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return TASKS[task][0]


def task_label_table(task):
    """[len(CLASS_NAMES)] list: task label of each catalogue class index, -1 = dropped."""
    names, mapping = TASKS[task][0], TASKS[task][1]
    return [names.index(mapping[c]) if mapping.get(c) is not None else -1 for c in CLASS_NAMES]


def task_shards(manifest, records_dir, split, task):
    """{task class index: [(shard path, records)]} for the split's non-empty shards (from
    tfrecords.manifest.shards) whose class belongs to the task."""
    from tfrecords import manifest as manifest_file

    table = task_label_table(task)
    out = {}
    for shard_path, class_name, records in manifest_file.shards(manifest, records_dir, split):
        if class_name in CLASS_NAMES and records > 0:
            label = table[CLASS_NAMES.index(class_name)]
            if label >= 0:
                out.setdefault(label, []).append((shard_path, records))
    return out
