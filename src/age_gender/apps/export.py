"""A Keras model as ONNX, TFLite or a SavedModel, with its card, kept only if it matches
the original.

Parity is checked on fixed crops before the output is given its name: the expected age within
0.05 years and P(male) within 1e-4 of the Keras model's. ONNX holds the card inside the file,
a SavedModel inside its folder (`assets.extra/age_gender.json`), TFLite in a sidecar JSON beside
it (`model.tflite.json`).
"""

import dataclasses
from pathlib import Path

import cv2
import keras
import numpy as np

from age_gender import quiet
from age_gender.errors import UserError
from age_gender.estimators.base import METADATA_KEY
from age_gender.estimators.keras_model import KerasEstimator, SavedModelEstimator
from age_gender.estimators.onnx_model import OnnxEstimator
from age_gender.estimators.tflite_model import TFLiteEstimator, sidecar_path
from age_gender.files import atomic_output, remove_leftovers
from age_gender.models.card import ModelCard
from age_gender.schema import AGE, AGE_CLASSES, GENDER, GENDER_CLASSES

AGE_TOLERANCE = 0.05  # years
MALE_TOLERANCE = 1e-4
HEAD_DESCRIPTIONS = {
    GENDER: "softmax over (female, male)",
    AGE: "softmax over ages 0..100; the age is its expected value",
}
INPUT = "float32 RGB 0..255, N x S x S x 3: the face box widened by the margin, resized to S"
HEAD_BY_WIDTH = {GENDER_CLASSES: GENDER, AGE_CLASSES: AGE}


def parity_crops(size: int, count: int = 8) -> np.ndarray:
    """Fixed, varied crops that any model maps differently: colour noise from coarse to fine,
    smoothly resized."""
    rng = np.random.default_rng(0)
    cells = [rng.integers(0, 256, (2 + index, 2 + index, 3), np.uint8) for index in range(count)]
    return np.stack([cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
                     for noise in cells])  # fmt: skip


def embed_normalization_constants(network: keras.Model) -> None:
    """Holds each Normalization layer's mean and variance as NumPy arrays, so tracing writes them
    into the graph as constants; as tensors they become extra graph inputs of the ONNX file."""
    for layer in network.layers:
        if isinstance(layer, keras.layers.Normalization) and layer.mean is not None:
            layer.mean, layer.variance = np.asarray(layer.mean), np.asarray(layer.variance)


def card_for_export(estimator: KerasEstimator) -> ModelCard:
    """The model's card unchanged, with the test-time augmentation chosen for this export."""
    return dataclasses.replace(estimator.card, tta=estimator.tta)


def export_json(estimator: KerasEstimator, outputs: dict[str, str]) -> str:
    """The exported card, and which output is which head."""
    return card_for_export(estimator).to_json(heads=HEAD_DESCRIPTIONS, input=INPUT, outputs=outputs)


def traced(estimator: KerasEstimator) -> keras.Model:
    """The network, called once (Keras exports only called models), constants embedded."""
    network = estimator.network
    network(np.zeros((1, estimator.crop_spec.size, estimator.crop_spec.size, 3), np.float32))
    embed_normalization_constants(network)
    return network


def write_onnx(estimator: KerasEstimator, path: Path) -> OnnxEstimator:
    """Keras' own ONNX export, the card written into the file; the file's runner."""
    import onnx

    with quiet.quiet_tf2onnx():
        traced(estimator).export(str(path), format="onnx", verbose=False)
    exported = onnx.load(str(path))
    if len(exported.graph.input) != 1:
        names = ", ".join(graph_input.name for graph_input in exported.graph.input)
        raise UserError(f"the ONNX export of {estimator.name} has extra inputs ({names})")
    outputs = {
        HEAD_BY_WIDTH[output.type.tensor_type.shape.dim[-1].dim_value]: output.name
        for output in exported.graph.output
    }
    entry = exported.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, export_json(estimator, outputs)
    onnx.save(exported, str(path))
    return OnnxEstimator.load(path)


def write_tflite(estimator: KerasEstimator, path: Path) -> TFLiteEstimator:
    """Keras' own LiteRT export (builtin ops: the LiteRT runtime has no Flex ops); its runner
    with the card in memory, the sidecar being written once parity holds."""
    from ai_edge_litert.interpreter import Interpreter

    traced(estimator).export(str(path), format="litert", verbose=False)
    interpreter = Interpreter(model_path=str(path))
    details = interpreter.get_output_details()
    outputs = {HEAD_BY_WIDTH[int(output["shape"][-1])]: output["name"] for output in details}
    return TFLiteEstimator(interpreter, card_for_export(estimator), outputs, str(path))


def write_saved_model(estimator: KerasEstimator, path: Path) -> SavedModelEstimator:
    """Keras' own SavedModel export (a folder), the card written inside it; its runner."""
    import tensorflow as tf

    traced(estimator).export(str(path), format="tf_saved_model", verbose=False)
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    outputs = {
        HEAD_BY_WIDTH[spec.shape[-1]]: name for name, spec in signature.structured_outputs.items()
    }
    card_path = path / SavedModelEstimator.METADATA
    card_path.parent.mkdir()
    card_path.write_text(export_json(estimator, outputs))
    return SavedModelEstimator.load(path)


WRITERS = {"onnx": write_onnx, "tflite": write_tflite, "saved_model": write_saved_model}


def parity(reference, candidate, crops: np.ndarray) -> tuple[float, float]:
    """The largest differences in expected age (years) and in P(male) over `crops`."""
    pairs = list(zip(reference.predict_crops(crops), candidate.predict_crops(crops), strict=True))
    age = max(abs(a.age - b.age) for a, b in pairs)
    male = max(abs(a.male_probability - b.male_probability) for a, b in pairs)
    return age, male


def export(estimator: KerasEstimator, form: str, path: Path) -> tuple[float, float]:
    """Writes `path` in format `form` when the exported model matches; the parity figures."""
    remove_leftovers(path.parent, [path.name, sidecar_path(path).name])  # a killed export's
    with atomic_output(path) as temporary:
        try:
            exported = WRITERS[form](estimator, temporary)
        except UserError as error:
            raise UserError(
                f"the {form} export of {estimator.name} does not load, so this backbone cannot "
                f"be exported to {form} ({str(error).splitlines()[0][-300:]})"
            ) from error
        crops = parity_crops(estimator.crop_spec.size)
        age, male = parity(estimator, exported, crops)
        print(
            f"{form} parity on {len(crops)} crops: expected age within {age:.5f} years "
            f"(limit {AGE_TOLERANCE}), P(male) within {male:.2e} (limit {MALE_TOLERANCE})"
        )
        if not (age <= AGE_TOLERANCE and male <= MALE_TOLERANCE):
            raise UserError(f"the {form} export of {estimator.name} does not match it; not kept")
        if form == "tflite":
            with atomic_output(sidecar_path(path)) as sidecar:
                sidecar.write_text(export_json(estimator, exported.outputs))
    return age, male
