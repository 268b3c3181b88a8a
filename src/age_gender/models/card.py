"""The model card: everything a model of this project records, in one frozen dataclass with one
parser and one writer.

Training writes it into the `.keras` file (the `FaceInput` layer's config); export copies it
unchanged into the ONNX file, beside the TFLite file and into the SavedModel; every runtime
reads its crop, channel order, calibration and interval from it. A field added here flows
through all of them: nothing else lists the fields.

Files written before the card (its version 1: the same runtime fields, no version and no
provenance) still load.
"""

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

from age_gender.config import MAX_IMG_SIZE
from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec

VERSION = 2  # 1: the metadata before the card
TTA_MODES = ("none", "flip")
Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) == 2 and all(map(_number, value))


def _field(check: Check, default: Any = dataclasses.MISSING, **options) -> dataclasses.Field:
    """A card field with the test its values must pass (every card is checked as it is made)."""
    return dataclasses.field(default=default, metadata={"check": check}, **options)


def _whole(low: int, high: float) -> Check:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and (
        low <= value <= high
    )  # fmt: skip


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a model is (how to feed it and read it) and where it came from; each field carries
    its check, so a field is added in one place.

    The crop fields (`img_size`, `margin`, `offset`, `aligned`, `upright`) are the `CropSpec`
    every runtime cuts. `age_std` is `age_std_scale * spread ** age_std_power` of the age
    softmax's spread (fitted by training so 68 % of true ages lie within one, 95 % within two),
    and the 90 % interval is the age +- `interval_scale` age_std (split-conformal on the
    validation faces; None: the model gives no interval). `provenance` is JSON: the training
    data and its licence, the configuration, the commit, the date and the validation figures
    (`train.py` fills it; an imported model has none).
    """

    backbone: str = _field(lambda value: isinstance(value, str) and bool(value))
    img_size: int = _field(_whole(1, MAX_IMG_SIZE))
    channel_order: str = _field(lambda value: value in ("RGB", "BGR"))
    margin: float = _field(lambda value: _number(value) and value >= 0)
    offset: tuple[float, float] = _field(_pair, (0.0, 0.0))
    aligned: bool = _field(_flag, False)
    upright: bool = _field(_flag, False)
    tta: str = _field(lambda value: value in TTA_MODES, "none")
    age_std_scale: float = _field(_positive, 1.0)
    age_std_power: float = _field(_positive, 1.0)
    interval_scale: float | None = _field(lambda value: value is None or _positive(value), None)
    interval_level: float = _field(lambda value: _number(value) and 0 < value < 1, 0.9)
    provenance: dict = _field(lambda value: isinstance(value, dict), default_factory=dict)
    version: int = _field(_whole(1, VERSION), VERSION)

    def __post_init__(self):
        """No card with a wrong field exists: `parse` names the file it came from."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not field.metadata["check"](value):
                raise ValueError(f"a wrong {field.name} ({value!r})")

    @property
    def crop(self) -> CropSpec:
        """The crop every runtime cuts: the card's fields of `CropSpec`'s names."""
        return CropSpec(**{name: getattr(self, CARD_NAMES.get(name, name)) for name in CROP_NAMES})

    @classmethod
    def of(cls, backbone: str, crop: CropSpec, **fields) -> "ModelCard":
        """The card of a model of `backbone` that takes `crop`."""
        cropping = {CARD_NAMES.get(name, name): value
                    for name, value in dataclasses.asdict(crop).items()}  # fmt: skip
        return cls(backbone=backbone, **cropping, **fields)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON types (the one writer)."""
        return {**dataclasses.asdict(self), "offset": [float(part) for part in self.offset]}

    def to_json(self, **extra) -> str:
        """The card and `extra` keys (an export's output names) as JSON."""
        return json.dumps({**self.to_dict(), **extra}, indent=1, sort_keys=True)

    def shareable(self) -> dict[str, Any]:
        """The card without what names the training machine's files (the configuration, the
        CSVs' paths): what a server may show anyone."""
        provenance = {key: value for key, value in self.provenance.items() if key != "config"}
        if isinstance(provenance.get("data"), dict):
            provenance["data"] = {key: value for key, value in provenance["data"].items()
                                  if key not in ("csv", "val_csv")}  # fmt: skip
        return {**self.to_dict(), "provenance": provenance}

    @classmethod
    def parse(cls, data: dict, source: str) -> "ModelCard":
        """The card of `data` (`read_json`'s), each field checked: a damaged one is one line
        naming `source` and the field. Keys that are not fields (an export's `outputs`) are
        left to their readers."""
        version = data.get("version", 1)
        if not _whole(1, math.inf)(version):
            raise UserError(f"the model card of {source} has a wrong version ({version!r})")
        if version > VERSION:
            raise UserError(f"the model card of {source} is of version {version!r}, newer than "
                            f"this age-gender reads ({VERSION}): upgrade age-gender")  # fmt: skip
        values = {}
        for field in dataclasses.fields(cls):
            if field.name in data:
                values[field.name] = data[field.name]
            elif field.default is dataclasses.MISSING and (
                field.default_factory is dataclasses.MISSING
            ):  # fmt: skip
                raise UserError(f"the model card of {source} has no {field.name}")
        if _pair(values.get("offset")):
            values["offset"] = tuple(float(part) for part in values["offset"])
        try:
            return cls(**{**values, "version": VERSION})
        except ValueError as error:
            raise UserError(f"the model card of {source} has {error}") from None


CROP_NAMES = [field.name for field in dataclasses.fields(CropSpec)]
CARD_NAMES = {"size": "img_size"}  # a crop field's name on the card, where it differs


def read_json(text: str | bytes, source: str) -> dict:
    """A card's JSON object (an exported model's holds its output names too), or one line."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"the model card of {source} is not JSON ({error})") from error
    if not isinstance(data, dict):
        raise UserError(f"the model card of {source} is not a JSON object")
    return data
