"""Replay objects night by night through a SavedModel's `update` signature with tensorflow alone
(keras and our packages blocked, except tools.replay_nights, which must need nothing else).

python update_client.py MODEL_DIR INPUTS.npz OUTPUT.npz
"""

import importlib.abc
import importlib.machinery
import os
import sys

BLOCKED = ("keras", "tf_keras", "tao_keras", "tfrecords", "trainers")
ALLOWED_TOOLS = ("tools", "tools.replay_nights")


class Blocker(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the blocked packages first, then fails to load them (tensorflow only probes keras)."""

    def find_spec(self, name, path=None, target=None):
        blocked = name.split(".")[0] in BLOCKED
        if blocked or (name.startswith("tools") and name not in ALLOWED_TOOLS):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise ImportError(f"{spec.name} is blocked: night-by-night serving must not need it")

    def exec_module(self, module):
        raise ImportError(f"{module.__name__} is blocked")


sys.meta_path.insert(0, Blocker())
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tools import replay_nights  # noqa: E402


def main(model_dir, inputs_path, output_path):
    model = tf.saved_model.load(model_dir)
    inputs = np.load(inputs_path)
    images, mjd, counts = inputs["images"], inputs["mjd"], inputs["num_exposures"]
    last, history, dates = replay_nights.replay(model, images, mjd, counts)
    full = model.signatures["serving_default"](
        images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
    )
    np.savez(
        output_path,
        history=history,
        dates=dates,
        class_name=last["class_name"].astype(str),
        full=full["probabilities"].numpy(),
        full_dates=full["num_dates"].numpy(),
        loaded=np.array(
            sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED + ("tao_keras",))
        ),
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
