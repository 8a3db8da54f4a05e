"""The Python entry point for notebooks and scripts: load an exported TAO-Net and classify arrays.

    import tao_keras
    model = tao_keras.load("runs/multiclass")           # a run, export or version directory
    out = model.classify(images, mjd)                     # [B, E, H, W] pixels, [B, E] MJD
    out["class_name"], out["probabilities"]               # [B], [B, C] (calibrated)
    nights = model.replay(images, mjd)                    # the answer after every night

Everything goes through the SavedModel's signatures (tao_keras.serving, tao_keras.streaming),
so the answers are exactly what TF Serving or a broker running the same export gets.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class Classifier:
    """A loaded SavedModel, its model contract and its metadata.

    path: the version directory it was loaded from; saved_model: the tf.saved_model.load
    object; contract: the tao_keras.contract.ModelContract it was exported with (cutout side,
    crop, per-date rule, normalization, task, architecture); metadata: the export's metadata
    dict (temperature, precision, training settings...).
    """

    path: str
    saved_model: object
    contract: object
    metadata: dict

    @property
    def class_names(self):
        return list(self.contract.class_names)

    def _requests(self, images, mjd, num_exposures):
        images = np.asarray(images, np.float32)
        mjd = np.asarray(mjd, np.float64)
        if images.ndim == 3:  # one object
            images, mjd = images[None], mjd[None]
        if images.ndim != 4 or mjd.shape != images.shape[:2]:
            raise ValueError(
                f"images must be [batch, exposures, H, W] and mjd [batch, exposures]; got "
                f"{images.shape} and {mjd.shape}"
            )
        side = self.contract.roi_size
        if images.shape[2:] != (side, side):
            raise ValueError(f"this model takes {side}x{side} cutouts; got {images.shape[2:]}")
        if num_exposures is None:
            num_exposures = np.full(len(images), images.shape[1], np.int32)
        return images, mjd, np.asarray(num_exposures, np.int32)

    def classify(self, images, mjd, num_exposures=None):
        """Classify B objects from their whole image sequences.

        images: float [B, E, H, W] raw pixels (NaN = bad), or [E, H, W] for one object; mjd:
        [B, E] (or [E]) observation times; num_exposures: [B] exposures to use per object
        (default: all E). -> {"probabilities": [B, C], "class_name": [B] str, "class_id": [B],
        "num_dates": [B]} as numpy arrays. A malformed request raises
        tf.errors.InvalidArgumentError naming the batch row.
        """
        import tensorflow as tf

        images, mjd, counts = self._requests(images, mjd, num_exposures)
        out = self.saved_model.signatures["serving_default"](
            images=tf.constant(images), mjd=tf.constant(mjd), num_exposures=tf.constant(counts)
        )
        result = {k: v.numpy() for k, v in out.items() if k != "class_names"}
        result["class_name"] = np.array([c.decode() for c in result["class_name"]])
        return result

    def replay(self, images, mjd, num_exposures=None):
        """The objects night by night through the `update` signature, as a broker would.

        Arguments as classify. -> {"probabilities": [K, B, C] after each of K calls (one night
        of every object that has one), "num_dates": [K, B]}; after the last night the
        probabilities equal classify's.
        """
        from tools import replay_nights  # the loop brokers copy: numpy and TensorFlow only

        images, mjd, counts = self._requests(images, mjd, num_exposures)
        _, history, dates = replay_nights.replay(self.saved_model, images, mjd, counts)
        return {"probabilities": history, "num_dates": dates}


def load(path):
    """Load an exported TAO-Net: path is a trainer's run directory, an export (model)
    directory or a version directory (tao_keras.run_layout.saved_model_dir). -> Classifier.
    FileNotFoundError or ValueError naming the directory when it holds no usable export
    (contract.ContractError when its metadata has no readable model contract)."""
    from tao_keras import run_layout
    from tools import replay_nights

    version = run_layout.saved_model_dir(path)
    saved_model, metadata = replay_nights.load(version)
    return Classifier(version, saved_model, exported_contract(metadata, version), metadata)


def exported_contract(metadata, path):
    """The ModelContract in an export's metadata dict (read from `path`); ContractError naming
    it when there is none (an export written before contracts: export the run again)."""
    from tao_keras import contract

    if "contract" not in metadata:
        raise contract.ContractError(
            f"{path}: exported without a model contract (an older tao-keras); export the run "
            "again with python -m tools.export_savedmodel --run RUN_DIR"
        )
    return contract.from_dict(metadata["contract"], f"{path}: metadata contract")
