"""Geometric augmentation identical over a sequence: one of the 8 rotations/flips of the square."""

import tensorflow as tf


def rotate_flip(images, seed):
    """images [..., H, W, C] (H == W), one random dihedral transform for the whole stack."""
    choice = tf.random.stateless_uniform([2], seed=seed, maxval=8, dtype=tf.int32)[0]
    rotated = tf.image.rot90(images, k=choice % 4)
    return tf.cond(choice >= 4, lambda: tf.image.flip_left_right(rotated), lambda: rotated)
