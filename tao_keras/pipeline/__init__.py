"""tf.data input pipeline: records -> per-date choice -> triplets or sequences -> batches."""
