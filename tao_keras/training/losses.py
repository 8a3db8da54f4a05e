"""Losses beyond Keras core (the auxiliary per-step loss of double supervision) and each
stage's compilation: optimizer and losses, in Keras only (the accelerator benchmark compiles
the same objectives without TensorFlow)."""

import keras
from keras import ops

from tao_keras.models import taonet


@keras.saving.register_keras_serializable(package="tao_keras")
def masked_step_crossentropy(y_true, y_pred):
    """Cross-entropy of every valid step's probabilities [B, T, C] against the sequence label [B].

    Padded steps carry all-zero probabilities (the model zeroes them) and are left out;
    returns the mean over valid steps per sequence, [B].
    """
    labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
    valid = ops.cast(ops.sum(y_pred, axis=-1) > 0.5, y_pred.dtype)
    one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)[:, None, :]
    picked = ops.sum(y_pred * one_hot, axis=-1)
    steps = -ops.log(ops.clip(picked, 1e-7, 1.0)) * valid
    return ops.sum(steps, axis=1) / ops.maximum(ops.sum(valid, axis=1), 1.0)


def learning_rate_of(learning_rate, decay_steps, floor):
    """The optimizer's learning rate: the number itself when decay_steps is 0, else a cosine
    decay from it to floor x it (config.COSINE_FLOOR) over decay_steps optimizer steps (keyed
    on the optimizer's step count, which a resumed stage restores with the rest of its
    state)."""
    if decay_steps <= 0:
        return learning_rate
    return keras.optimizers.schedules.CosineDecay(learning_rate, int(decay_steps), alpha=floor)


def compile_stage(
    model,
    stage,
    learning_rate,
    weight_decay,
    aux_weight,
    ema_momentum=0.0,
    decay_steps=0,
    soft_targets=False,
    fused_loss=0.0,
):
    """Compile a stage's model with AdamW: cross-entropy for the DenseNet on triplets; for
    TAO-Net the final loss plus the masked per-step auxiliary loss, weighted aux_weight in the
    stage that trains with it (training.config.STAGES) and 0 elsewhere. stage: its name.
    ema_momentum > 0: the optimizer also keeps an exponential moving average of the trainable
    weights, updated every step (what callbacks.averaged_weights swaps in to be scored).
    decay_steps > 0: the rate follows learning_rate_of's cosine over that many steps.
    soft_targets: TAO-Net's final output learns probability rows [B, C] (the teacher's targets,
    lightcurves.teacher) instead of class indices [B]; the auxiliary head keeps the labels.
    A TAO-Net with the statistics expert (taonet.uses_statistics_expert) gives the final loss
    to its GRU's classifier (taonet.HEAD_OUTPUT), weight 1 - fused_loss, and for fused_loss > 0
    to the mean of it and the expert, "probabilities", weight fused_loss (the targets,
    protocol.training_targets, have that key only then); the expert (fitted apart and frozen:
    training.expert) has none. Through the mean, the GRU's classifier learns what the expert
    leaves: the gradient of -log((h + e) / 2) at the label is -1 / (h + e), small where the
    expert is already right."""
    from tao_keras.training import config

    traits = config.stage(stage)
    optimizer = keras.optimizers.AdamW(
        learning_rate_of(learning_rate, decay_steps, config.COSINE_FLOOR),
        weight_decay=weight_decay,
        use_ema=ema_momentum > 0,
        ema_momentum=ema_momentum if ema_momentum > 0 else 0.99,
    )
    if not traits.on_sequences:
        model.compile(optimizer, loss=keras.losses.SparseCategoricalCrossentropy())
        return
    final = (
        keras.losses.CategoricalCrossentropy()
        if soft_targets
        else keras.losses.SparseCategoricalCrossentropy()
    )
    loss = {"probabilities": final, "aux_probabilities": masked_step_crossentropy}
    weights = {
        "probabilities": 1.0,
        "aux_probabilities": aux_weight if traits.auxiliary_loss else 0.0,
    }
    if taonet.uses_statistics_expert(model):
        # the GRU's classifier learns alone, or partly through the mean (fused_loss); the
        # expert is fitted apart; targets: protocol.expert_outputs
        loss[taonet.HEAD_OUTPUT] = final
        weights[taonet.HEAD_OUTPUT] = 1.0 - fused_loss
        if fused_loss > 0.0:
            weights["probabilities"] = fused_loss
        else:
            del loss["probabilities"], weights["probabilities"]
    model.compile(optimizer, loss=loss, loss_weights=weights)
