"""The model card: one parser, one writer, files from before it, and the calibration it records."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec
from age_gender.models import calibration, model
from age_gender.models.card import ModelCard


def test_every_field_round_trips_and_is_checked():
    card = ModelCard.of(
        "MobileNetV3Small", CropSpec(32, 0.2, (0.01, -0.02), upright=True), channel_order="BGR",
        tta="flip", age_std_scale=0.5, age_std_power=1.4, interval_scale=1.9,
        provenance={"commit": "abc", "validation": {"age_mae": 4.5}},
    )  # fmt: skip
    assert ModelCard.parse(card.to_dict(), "m") == card
    assert card.crop == CropSpec(32, 0.2, (0.01, -0.02), upright=True)
    for field in dataclasses.fields(ModelCard):  # a wrong value of any field is one line
        broken = {**card.to_dict(), field.name: {"not": "valid"} if field.name != "provenance"
                  else [1]}  # fmt: skip
        with pytest.raises(UserError, match=f"the model card of m has a wrong {field.name}"):
            ModelCard.parse(broken, "m")


def test_a_model_saved_before_the_card_loads_as_version_1(tmp_path):
    """The FaceInput keywords of files written before the card are read as its fields."""
    inputs = keras.Input((32, 32, 3))
    legacy = model.FaceInput(backbone="MobileNetV3Small", channel_order="BGR", margin=0.3,
                             aligned=False, offset=[0.0, 0.1], age_std_scale=0.7)  # fmt: skip
    features = keras.layers.GlobalAveragePooling2D()(legacy(inputs))
    gender = keras.layers.Dense(2, activation="softmax", name="pred_gender")(features)
    age = keras.layers.Dense(101, activation="softmax", name="pred_age")(features)
    keras.Model(inputs, [gender, age]).save(tmp_path / "old.keras")
    card = model.model_card(keras.saving.load_model(tmp_path / "old.keras", compile=False))
    assert card == ModelCard("MobileNetV3Small", 32, "BGR", 0.3, (0.0, 0.1), age_std_scale=0.7)
    assert card.interval_scale is None and card.provenance == {}


def test_calibration_holds_on_faces_it_was_not_fitted_on():
    """Errors whose spread the model over- and under-states, with tails heavier than any power
    of the spread makes Gaussian (Student's t, 4 degrees): on new faces the fitted age_std
    misses 68.3 % and 95.4 % less than one that holds 68.3 % alone, each share on its own side,
    and the interval holds 90 %."""
    rng = np.random.default_rng(0)

    def faces(count):
        spreads = rng.uniform(1, 8, count)
        truth = 0.4 * spreads**1.5  # too narrow for the unsure, too wide for the sure
        return np.abs(rng.standard_t(4, count) * truth), spreads

    errors, spreads = faces(4000)
    fields, held_out = calibration.calibrate(errors, spreads, level=0.9)
    assert fields["age_std_power"] == pytest.approx(1.5, abs=0.2)
    new_errors, new_spreads = faces(20000)
    stds = fields["age_std_scale"] * new_spreads ** fields["age_std_power"]
    figures = calibration.coverage(new_errors, stds, fields["interval_scale"])
    one_only = np.quantile(errors / spreads**1.5, 0.683) * new_spreads**1.5  # the true power
    assert worst_miss(figures) < 0.7 * worst_miss(calibration.coverage(new_errors, one_only))
    assert 0.683 < figures["within_1_std"] < 0.74 and 0.91 < figures["within_2_std"] < 0.954
    assert figures["within_interval"] == pytest.approx(0.90, abs=0.02)
    assert held_out["within_interval"] == pytest.approx(0.90, abs=0.03)


def worst_miss(figures: dict[str, float]) -> float:
    """The larger miss of the shares within 1 and 2 age_std, in their binomial spreads."""
    return max(abs(figures["within_1_std"] - 0.6827) / np.sqrt(0.6827 * 0.3173),
               abs(figures["within_2_std"] - 0.9545) / np.sqrt(0.9545 * 0.0455))  # fmt: skip


def test_a_served_card_names_no_file_of_the_training_machine():
    card = ModelCard("MobileNetV3Small", 32, "RGB", 0.4, provenance={
        "data": {"db": "utkface", "csv": "/home/me/meta/train.csv", "val_csv": "/home/me/v.csv",
                 "licence": "research"},
        "config": {"data": {"root": "/home/me/data"}}, "commit": "abc",
    })  # fmt: skip
    shared = card.shareable()
    assert shared["provenance"] == {"data": {"db": "utkface", "licence": "research"},
                                    "commit": "abc"}  # fmt: skip
    assert "/home/me" not in json.dumps(shared) and shared["backbone"] == "MobileNetV3Small"
