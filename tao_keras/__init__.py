"""tao-keras: TAO-Net (Gómez et al.) in Keras 3, image sequences of transients in, classes out."""

__version__ = "0.1.0"
