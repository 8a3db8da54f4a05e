"""Keras 3 models of the paper: DenseNet-BC (early and late fusion) and TAO-Net (DenseNet + GRU)."""
