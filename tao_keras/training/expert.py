"""The statistics expert (TAONetConfig.statistics_expert) fitted apart from the stages.

The expert is expert_members small networks (8 statistics -> Dense 16 relu -> softmax), about
250 weights each. Trained inside the stages it got a few thousand noisy minibatch steps at the
stages' learning rates, half of them on sequences cut short, and stopped far from its optimum:
61.0 test mean max-F1 at 150 objects per class, against 63.7 for one network on the same
statistics fitted to convergence and 65.4 for the mean of three (docs/science.md). So a TAO-Net
stage whose expert was not carried from the earlier stage first computes the statistics of
every training object with the model's own statistics layer (taonet.EXPERT_STATISTICS), on its
whole sequence and on its first n nights for each n of tao_keras.early.NIGHTS (the expert also
classifies objects seen a few nights, as the early scores and the night-by-night update serve
them), fits each member on all of them at once (full batch, FIT_STEPS Adam steps at
FIT_LEARNING_RATE, each member with its own loss and its own initialization), and copies the
weights in; taonet.set_trainable keeps them frozen while the stage trains the rest. Seconds of
fitting; the statistics cost one pass over the training objects per prefix length.
"""

import logging

import keras
import numpy as np
import tensorflow as tf

from tao_keras.models import taonet
from tao_keras.pipeline import datasets

FIT_STEPS = 2000
FIT_LEARNING_RATE = 1e-2


def carried(model, previous):
    """True when `previous` (the model a stage starts from, or None) holds a statistics expert
    of the same members and shapes as `model`'s, which protocol.build_model copied over (the
    joint stage after the GRU stage); False when the stage must fit its own (after the
    DenseNet on triplets, or finetuning to a task with other classes)."""
    if previous is None:
        return False
    names = {layer.name for layer in previous.layers}
    for pair in taonet.expert_layers(model):
        for layer in pair:
            if layer.name not in names:
                return False
            theirs = previous.get_layer(layer.name).get_weights()
            if [w.shape for w in theirs] != [w.shape for w in layer.get_weights()]:
                return False
    return True


def training_statistics(model, records_dir, configs):
    """(statistics [N, 8] float32, labels [N] int32) of the training objects of records_dir,
    once per PipelineConfig of `configs` (the stage's scoring configs: whole sequences and
    first-n-nights prefixes, protocol.evaluation_config), as the built TAO-Net `model`'s own
    EXPERT_STATISTICS layer computes them from the pipeline's per-date photometry."""
    statistics_of = keras.Model(model.input, model.get_layer(taonet.EXPERT_STATISTICS).output)
    rows, labels = [], []
    for config in configs:
        for features, label in datasets.evaluation_dataset(records_dir, config, split="train"):
            rows.append(np.asarray(statistics_of(features, training=False), np.float32))
            labels.append(np.asarray(label, np.int32).reshape(-1))
    if not rows:
        raise ValueError(f"{records_dir}: no training objects to fit the statistics expert on")
    return np.concatenate(rows), np.concatenate(labels)


def fit(model, statistics, labels, steps=FIT_STEPS, learning_rate=FIT_LEARNING_RATE):
    """Fit the statistics expert of the built TAO-Net `model` on statistics [N, 8] and labels
    [N] (training_statistics) and copy its weights into the model; returns each member's final
    training cross-entropy (list of floats). steps: full-batch Adam steps at learning_rate."""
    pairs = taonet.expert_layers(model)
    if not pairs:
        raise ValueError(f"model {model.name!r} has no statistics expert to fit")
    num_classes = int(pairs[0][1].units)
    expert = taonet.build_expert(num_classes, len(pairs), int(statistics.shape[1]))
    names = list(expert.output)
    expert.compile(
        keras.optimizers.Adam(learning_rate),
        loss={name: keras.losses.SparseCategoricalCrossentropy() for name in names},
    )
    batch = (
        tf.constant(statistics, tf.float32),
        {name: tf.constant(labels, tf.int32) for name in names},
    )
    history = expert.fit(
        tf.data.Dataset.from_tensors(batch).repeat(),
        epochs=1,
        steps_per_epoch=steps,
        shuffle=False,  # one full batch, repeated
        verbose=0,
    )
    for hidden, softmax in pairs:
        hidden.set_weights(expert.get_layer(hidden.name).get_weights())
        softmax.set_weights(expert.get_layer(softmax.name).get_weights())
    # Keras names each output's loss, except a model's only output's (its total)
    keys = [f"{name}_loss" for name in names] if len(names) > 1 else ["loss"]
    losses = [float(history.history[key][-1]) for key in keys]
    logging.info(
        "statistics expert: %d members fitted on %d rows of statistics (%d steps), training "
        "cross-entropy %s",
        len(pairs),
        len(labels),
        steps,
        ", ".join(f"{loss:.3f}" for loss in losses),
    )
    return losses
