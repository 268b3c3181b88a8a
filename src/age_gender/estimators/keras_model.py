"""A model of this project run by TensorFlow: a `.keras` file from train.py, the original
project's HDF5 weights, or a SavedModel folder from export.py."""

import re
from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.estimators.base import CropEstimator, exported_card, head_outputs, model_file
from age_gender.faces.crops import CropSpec
from age_gender.models.card import ModelCard

ORIGINAL_NAME = re.compile(r"(?P<backbone>[A-Za-z0-9]+)_(?P<size>\d+)_.*\.(hdf5|h5)$")


def original_architecture(path: Path) -> tuple[str, int]:
    """Backbone and image size of the original project's HDF5 weights: from the name
    (`EfficientNetB3_224_weights.11-3.44.hdf5`), else from the layers (its wide ResNet,
    `weights.28-3.73.hdf5`)."""
    from age_gender.models import wide_resnet

    match = ORIGINAL_NAME.search(path.name)
    if match:
        return match["backbone"], int(match["size"])
    described = wide_resnet.describe_hdf5(path)
    if described:
        depth, width, size = described
        return f"WideResNet{depth}_{width}", size
    raise UserError(
        f"cannot tell the architecture of {path.name}: use a .keras file from train.py, an "
        "original checkpoint named <backbone>_<size>_....hdf5, or the original's wide ResNet"
    )


class KerasEstimator(CropEstimator):
    """A two-headed Keras model called through one compiled function (no per-call predict())."""

    def __init__(self, network, name: str):
        import tensorflow as tf

        from age_gender.models.model import model_card

        super().__init__(model_card(network), name)
        self.network = network
        signature = [tf.TensorSpec([None, self.crop_spec.size, self.crop_spec.size, 3], tf.uint8)]
        self._call = tf.function(lambda images: network(images, training=False), signature)

    @classmethod
    def load(cls, path: Path) -> "KerasEstimator":
        """A `.keras` file of train.py, or HDF5 weights named like `EfficientNetB3_224_*.hdf5`."""
        import keras

        from age_gender.models import model

        model_file(path)
        if path.suffix == ".keras":
            try:
                network = keras.saving.load_model(path, compile=False)
                model.model_card(network)
            except Exception as error:  # Keras raises many types for broken or foreign files
                # Keras says "File not found" for a file that is there but no .keras archive.
                reason = "not a .keras archive" if "not found" in str(error) else str(error)
                raise UserError(
                    f"{path} is not a model saved by train.py: {reason.splitlines()[0][:200]}"
                ) from error
            return cls(network, str(path))
        backbone, size = original_architecture(path)
        # The original project fed BGR to the backbone; the model converts RGB inside.
        network = model.build_model(backbone, CropSpec(size), weights=None, channel_order="BGR")
        try:
            network.load_weights(path)
        except Exception as error:  # h5py and Keras raise many types for a bad file
            raise UserError(
                f"cannot load {path.name} into {backbone} at {size} px: {error}"
            ) from error
        return cls(network, str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gender, age = self._call(np.ascontiguousarray(crops))
        return np.asarray(gender), np.asarray(age)


class SavedModelEstimator(CropEstimator):
    """A SavedModel folder written by `export.py` (for TF Serving and TensorFlow's converters),
    run by TensorFlow; its card is `assets.extra/age_gender.json` inside the folder."""

    METADATA = Path("assets.extra") / "age_gender.json"

    def __init__(self, serve, card: ModelCard, outputs: dict, name: str):
        super().__init__(card, name)
        self.serve = serve
        self.outputs = outputs
        names = list(serve.structured_outputs)
        shape = next(iter(serve.structured_input_signature[1].values())).shape
        self._outputs = head_outputs(card, outputs, names, shape, name)

    @classmethod
    def load(cls, path: Path) -> "SavedModelEstimator":
        import tensorflow as tf

        if not (path / cls.METADATA).is_file():
            raise UserError(f"{path} holds no {cls.METADATA}: it was not exported by export.py")
        try:
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        except Exception as error:  # TensorFlow raises many types for a broken folder
            raise UserError(f"{path} is not a SavedModel: {error}") from error
        card, outputs = exported_card((path / cls.METADATA).read_bytes(), str(path / cls.METADATA))
        return cls(serve, card, outputs, str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        results = self.serve(tf.constant(crops, tf.float32))
        gender, age = (results[output] for output in self._outputs)
        return gender.numpy(), age.numpy()
