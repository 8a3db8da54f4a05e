"""The one place where Keras 3 is patched: `fit` under MultiWorkerMirroredStrategy.

Keras 3.15 fails there out of the box (keras-team/keras#20585), at two points of
keras/src/backend/tensorflow/trainer.py:
1. `_maybe_symbolic_build` averages the whole first distributed batch with a collective
   reduce only to learn its shapes, and a collective reduce cannot take that structure
   ("Attempt to convert a value (PerReplica...)"). The first replica's local batch has
   the same shapes: use it.
2. `reduce_per_replica` MEAN-reduces multi-worker logs along axis 0, which scalars do not
   have ("Invalid reduction dimension 0 for input with 0 dimensions"): reduce scalars
   with axis=None.
`tests/test_multiworker.py` runs two workers without the patch and expects the failure:
when it stops failing, upstream has fixed it and this module should go.
"""

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

_ORIGINAL_REDUCE = tf_trainer.reduce_per_replica
_ORIGINAL_BUILD = tf_trainer.TensorFlowTrainer._maybe_symbolic_build


def _first_replica(value, strategy):
    if isinstance(value, tf.distribute.DistributedValues):
        return strategy.experimental_local_results(value)[0]
    return value


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    if self._distribute_strategy is None or iterator is None:
        return _ORIGINAL_BUILD(self, iterator=iterator, data_batch=data_batch)
    for _, _, it in iterator:
        data_batch = tree.map_structure(
            lambda v: _first_replica(v, self.distribute_strategy), next(it)
        )
        break
    with self.distribute_strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_per_replica(values, strategy, reduction):
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if multi_worker and reduction in ("auto", "mean"):

        def reduce(value):
            rank = (
                len(value.values[0].shape)
                if isinstance(value, tf.distribute.DistributedValues)
                else len(value.shape)
            )
            return strategy.reduce("MEAN", value, axis=0 if rank else None)

        return tree.map_structure(reduce, values)
    return _ORIGINAL_REDUCE(values, strategy, reduction)


def apply():
    """Install both fixes (idempotent)."""
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica


def is_chief():
    """True for the worker that owns the run directory (task 0, or the chief if there is one)."""
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if not resolver.cluster_spec().as_dict():
        return True
    if "chief" in resolver.cluster_spec().as_dict():
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0
