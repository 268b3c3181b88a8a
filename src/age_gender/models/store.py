"""Your own models by name: `train.py ... train.name=mine` keeps the best model in
`$AGE_GENDER_HOME/models/mine/` (default `~/.local/share/age-gender/`), with its card as JSON,
a model card in Hugging Face's format (README.md: YAML front matter, then the figures by group
and the reliability plot) and, once exported, its ONNX, TFLite and SavedModel beside it.

`estimators.presets.load_estimator` resolves a name here after the built-in presets:
`mine` is the Keras model, `mine:onnx` (`:tflite`, `:saved_model`) an export of it.
"""

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml

from age_gender.errors import UserError
from age_gender.files import atomic_output
from age_gender.models.calibration import COVERAGE_LABELS
from age_gender.models.card import ModelCard, read_json

HOME = "AGE_GENDER_HOME"
MODEL, CARD, README, PLOT = "model.keras", "card.json", "README.md", "reliability.png"
# An export's name: the model file's stem and this (export.py names every export so).
EXPORT_SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "saved_model": "_saved_model"}
EXPORTS = {form: f"{Path(MODEL).stem}{suffix}" for form, suffix in EXPORT_SUFFIXES.items()}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def models_dir() -> Path:
    """Where named models live: `$AGE_GENDER_HOME/models`, by default under the user's data
    folder (XDG_DATA_HOME, else ~/.local/share)."""
    if os.environ.get(HOME):
        return Path(os.environ[HOME]) / "models"
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "age-gender" / "models"


def check_name(name: str) -> str:
    """`name`, if it can name a model (letters, digits, '.', '_', '-'; not a path)."""
    if not NAME.fullmatch(name):
        raise UserError(f"model name {name!r}: use up to 64 ASCII letters, digits, '.', '_' or "
                        "'-', starting with a letter or digit")  # fmt: skip
    return name


def entry(name: str) -> Path:
    """The folder of the stored model `name` (which must be a name, not a path)."""
    return models_dir() / check_name(name)


def split_name(name: str) -> tuple[str, str | None]:
    """`mine` -> ("mine", None); `mine:onnx` -> ("mine", "onnx")."""
    base, _, form = name.partition(":")
    if form and form not in EXPORTS:
        raise UserError(f"{name!r}: a named model's export is one of "
                        f"{', '.join(f'{base}:{other}' for other in EXPORTS)}")  # fmt: skip
    return base, form or None


def find(name: str) -> Path | None:
    """The file (or SavedModel folder) a store name means, or None when the store has no
    such model; an export not made yet is one line saying how to make it."""
    base = name.partition(":")[0]
    if not NAME.fullmatch(base) or not (models_dir() / base).is_dir():
        return None  # a path (`runs/12:00/best.keras`), or no such model
    read_entry(models_dir() / base)  # a damaged entry is its one line
    base, form = split_name(name)
    if form is None:
        return models_dir() / base / MODEL
    path = models_dir() / base / EXPORTS[form]
    if not path.exists():
        raise UserError(f"{base} has no {form} export yet: python export.py --model {base} "
                        f"--format {form}")  # fmt: skip
    return path


def check_free(name: str, replace: bool, taken: Iterable[str] = ()) -> None:
    """Refuses, before a run starts, a name that is `taken` (the built-in presets') or that the
    store holds already (unless `replace`), and a store that cannot be written."""
    if name in taken:
        raise UserError(f"model name {name} is a built-in model's; choose another train.name")
    if entry(name).exists() and not replace:
        raise UserError(f"a model named {name} exists in {models_dir()}; choose another "
                        "train.name, or pass train.replace_model=true to replace it")  # fmt: skip
    try:
        models_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=models_dir()):  # writable: the model will fit there
            pass
    except OSError as error:
        raise UserError(f"the model store {models_dir()} cannot be written "
                        f"({error.strerror or error}); set {HOME} to a folder you can "
                        "write") from None  # fmt: skip


def keep(name: str, model_path: Path, card: ModelCard, plot: Path | None = None) -> Path:
    """Puts a trained model in the store under `name`: model.keras, card.json, README.md and
    the plot, written in a temporary folder that then replaces the entry of that name whole (its
    exports, of the model replaced, go with it); a failure leaves the earlier entry as it was."""
    folder = entry(name)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(folder) as temporary:
            temporary.mkdir()
            (temporary / CARD).write_text(card.to_json())
            (temporary / README).write_text(hugging_face_card(name, card, plot is not None))
            if plot is not None and plot.is_file():
                shutil.copyfile(plot, temporary / PLOT)
            shutil.copyfile(model_path, temporary / MODEL)
    except OSError as error:
        raise UserError(f"cannot keep {name} in {models_dir()}: {error.strerror or error}; set "
                        f"{HOME} to a folder you can write") from None  # fmt: skip
    return folder


def read_entry(folder: Path) -> ModelCard:
    """The card of a stored model's folder, or one line saying what is damaged: the same for
    `--list-models` and for every command that runs it."""
    if not (folder / MODEL).is_file():
        raise UserError(f"damaged: {folder / MODEL} is missing")
    try:
        text = (folder / CARD).read_bytes()
    except OSError as error:
        raise UserError(f"damaged: {folder / CARD}: {error.strerror}") from None
    try:
        return ModelCard.parse(read_json(text, str(folder / CARD)), str(folder / CARD))
    except UserError as error:
        raise UserError(f"damaged: {error}") from None


def entries() -> list[tuple[str, ModelCard | str]]:
    """Each stored model's name and card, or the one line saying what is wrong with it."""
    root = models_dir()
    listed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if not folder.is_dir() or not NAME.fullmatch(folder.name):
            continue
        try:
            listed.append((folder.name, read_entry(folder)))
        except UserError as error:
            listed.append((folder.name, str(error)))
    return listed


def figure(values: object, key: str) -> float | None:
    """A validation figure of a card's provenance, or None where it is missing or no number."""
    value = values.get(key) if isinstance(values, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def summary(card: ModelCard) -> str:
    """One line of a stored model's card: backbone, size, validation MAE and gender accuracy,
    and the licence of its training data (what the card lacks, or holds wrong, is left out)."""
    figures = card.provenance.get("validation")
    mae, gender = figure(figures, "age_mae"), figure(figures, "gender_accuracy")
    data = card.provenance.get("data")
    licence = data.get("licence") if isinstance(data, dict) else None
    scores = ", ".join(part for part in (
        None if mae is None else f"validation MAE {mae:.2f}",
        None if gender is None else f"gender {gender:.1%}",
    ) if part)  # fmt: skip
    return (f"{card.backbone} at {card.img_size} px; {scores or 'no validation figures'}; "
            f"data licence: {licence if isinstance(licence, str) else 'unknown'}")  # fmt: skip


def hugging_face_card(name: str, card: ModelCard, with_plot: bool) -> str:
    """A model card as Hugging Face writes them (Mitchell et al.): YAML front matter, what the
    model is, where it came from, and its figures, disaggregated by group."""
    provenance = card.provenance
    data = provenance.get("data", {})
    figures = provenance.get("validation", {})
    front = {
        "license": "other",
        "license_name": "training-data-terms",
        "license_details": f"trained on data under these terms: {data.get('licence', 'unknown')}",
        "datasets": [data["db"]] if data.get("db") else [],
        "library_name": "keras",
        "tags": ["age-estimation", "gender-classification", "age-gender"],
        "metrics": ["mae", "accuracy"],
    }
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {name}", "",
        f"Age and gender from a face: {card.backbone} at {card.img_size} px, trained with "
        "age-gender's train.py.", "",
        "## Training", "",
        f"- data: {data.get('db', '?')} ({data.get('rows', '?')} faces of {data.get('csv', '?')});"
        f" validation: {data.get('val_csv') or 'held out of the training CSV'}",
        f"- terms of the data: {data.get('licence', 'unknown')}",
        f"- commit: {provenance.get('commit') or 'unknown'}; date: {provenance.get('date', '?')}",
        f"- crop: margin {card.margin:g}, offset {list(card.offset)}, upright {card.upright}, "
        f"aligned {card.aligned}; test-time augmentation: {card.tta}", "",
        "## Validation figures", "",
        "| figure | value |", "| --- | --- |",
    ]  # fmt: skip
    for key, label in (("faces", "faces"), ("age_mae", "age MAE (years)"),
                       ("gender_accuracy", "gender accuracy"),
                       *COVERAGE_LABELS.items()):  # fmt: skip
        if figures.get(key) is not None:
            value = figures[key]
            lines.append(f"| {label} | {value if isinstance(value, int) else f'{value:.3f}'} |")
    for key, groups in figures.items():
        if key.startswith("by_") and isinstance(groups, dict):
            lines += ["", f"### By {key[3:]}", "", "| group | faces | age MAE | gender |",
                      "| --- | --- | --- | --- |"]  # fmt: skip
            for group, values in groups.items():
                gender = values.get("gender_accuracy")
                lines.append(f"| {group} | {values['faces']} | {values['age_mae']:.2f} | "
                             f"{'-' if gender is None else f'{gender:.1%}'} |")  # fmt: skip
    if with_plot:
        lines += ["", "## Calibration", "", f"![age_std reliability]({PLOT})"]
    lines += ["", "## Use", "", "```bash", f"python demo.py --model {name}",
              f"python export.py --model {name} --format onnx   # then --model {name}:onnx",
              "```", ""]  # fmt: skip
    return "\n".join(lines)
