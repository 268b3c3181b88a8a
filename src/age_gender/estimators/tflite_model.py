"""A model exported to TFLite by export.py, run by the LiteRT interpreter without TensorFlow; its
card is in a JSON file beside it (`model.tflite.json`)."""

from pathlib import Path

import numpy as np

from age_gender.errors import UserError
from age_gender.estimators.base import (
    CropEstimator,
    exported_card,
    head_outputs,
    import_runtime,
)
from age_gender.models.card import ModelCard
from age_gender.quiet import quiet_stderr


def sidecar_path(model_path: Path) -> Path:
    """The JSON beside a TFLite file that holds its card: `model.tflite.json`."""
    return model_path.with_name(f"{model_path.name}.json")


class TFLiteEstimator(CropEstimator):
    """A TFLite model exported by `export.py`, run by the LiteRT interpreter (one at a time)."""

    def __init__(self, interpreter, card: ModelCard, outputs: dict, name: str):
        super().__init__(card, name)
        self.interpreter = interpreter
        self.outputs = outputs
        details = interpreter.get_input_details()[0]
        self._input = details["index"]
        indices = {output["name"]: output["index"] for output in interpreter.get_output_details()}
        outputs = head_outputs(card, outputs, list(indices), details["shape"], name)
        self._outputs = [indices[output] for output in outputs]
        with quiet_stderr():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line, once
            interpreter.allocate_tensors()

    @classmethod
    def load(cls, path: Path) -> "TFLiteEstimator":
        """`path` with the card of its sidecar JSON."""
        litert = import_runtime("ai_edge_litert.interpreter", path, "litert")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise UserError(f"{sidecar} not found: export.py writes it beside {path.name}")
        card, outputs = exported_card(sidecar.read_bytes(), str(sidecar))
        try:
            interpreter = litert.Interpreter(model_path=str(path))
        except Exception as error:  # LiteRT raises ValueError or RuntimeError for broken files
            raise UserError(f"{path} is not a TFLite model: {error}") from error
        return cls(interpreter, card, outputs, str(path))

    def probabilities(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.interpreter.resize_tensor_input(self._input, crops.shape)
        self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self._input, crops.astype(np.float32))
        self.interpreter.invoke()
        gender, age = (self.interpreter.get_tensor(index) for index in self._outputs)
        return gender, age
