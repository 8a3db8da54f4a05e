"""tao-keras: TAO-Net (Gómez et al.) in Keras 3, image sequences of transients in, classes out.

The public Python API (tao_keras.api): `tao_keras.load(path)` returns a Classifier whose
`classify(images, mjd)` and `replay(images, mjd)` run an exported model.
"""

__version__ = "0.1.0"


def load(path):
    """Load an exported TAO-Net (a run, export or version directory): tao_keras.api.load."""
    from tao_keras import api

    return api.load(path)
