"""Run an exported SavedModel with tensorflow alone: keras and our packages cannot be imported.

python serving_client.py MODEL_DIR INPUTS.npz RECORDS.tfrecord OUTPUT.npz
"""

import importlib.abc
import importlib.machinery
import sys

BLOCKED = ("keras", "tf_keras", "tao_keras", "tfrecords", "trainers", "tools")


class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the blocked packages first, then fails to load them (tensorflow only probes keras)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is blocked: serving must not need it")

    def exec_module(self, module):
        raise ImportError(f"{module.__name__} is blocked")


sys.meta_path.insert(0, Blocker())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(model_dir, inputs_path, records_path, output_path):
    model = tf.saved_model.load(model_dir)
    inputs = np.load(inputs_path)
    raw = model.signatures["serving_default"](
        images=tf.constant(inputs["images"]),
        mjd=tf.constant(inputs["mjd"]),
        num_exposures=tf.constant(inputs["num_exposures"]),
    )
    records = tf.stack(list(tf.data.TFRecordDataset(records_path)))
    serialized = model.signatures["serialized"](records=records)
    np.savez(
        output_path,
        raw=raw["probabilities"].numpy(),
        serialized=serialized["probabilities"].numpy(),
        class_name=serialized["class_name"].numpy().astype(str),
        metadata=model.metadata()["json"].numpy().decode(),
        loaded=np.array(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)),
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
