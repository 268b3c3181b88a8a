"""Your own models by name: kept in a store under AGE_GENDER_HOME, found by demo, export and the
Python API, listed with their figures and licence; damaged entries are one line each."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, refusal, user_error

from age_gender import FaceAnalyzer
from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec
from age_gender.models import model, store
from age_gender.models.card import ModelCard

PROVENANCE = {
    "data": {"db": "utkface", "csv": "meta/utkface_train.csv", "rows": 16027,
             "licence": "UTKFace: non-commercial research purposes only"},
    "commit": "0123abc", "date": "2026-12-06T23:00:00+00:00",
    "validation": {"faces": 1749, "age_mae": 4.5, "gender_accuracy": 0.935,
                   "by_race": {"Asian": {"faces": 251, "age_mae": 3.0, "gender_accuracy": 0.88}}},
}  # fmt: skip


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A store in a temporary AGE_GENDER_HOME holding `mine`: a small untrained model whose card
    has every field training fills."""
    monkeypatch.setenv(store.HOME, str(tmp_path / "home"))
    network = model.build_model("MobileNetV3Small", CropSpec(32, 0.2), None)
    card = dataclasses.replace(model.model_card(network), upright=True, age_std_scale=0.5,
                               interval_scale=1.7, provenance=PROVENANCE)  # fmt: skip
    model.set_card(network, card)
    network.save(tmp_path / "best.keras")
    store.keep("mine", tmp_path / "best.keras", card)
    return tmp_path


def test_a_kept_model_has_its_card_and_a_hugging_face_readme(stored):
    folder = stored / "home" / "models" / "mine"
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "card.json",
                                                              "model.keras"]  # fmt: skip
    card = ModelCard.parse(json.loads((folder / "card.json").read_text()), "card.json")
    assert card.provenance == PROVENANCE and card.interval_scale == 1.7
    readme = (folder / "README.md").read_text()
    front = yaml.safe_load(readme.split("---")[1])
    assert front["datasets"] == ["utkface"] and front["metrics"] == ["mae", "accuracy"]
    assert "non-commercial research" in front["license_details"]
    assert "| Asian | 251 | 3.00 | 88.0% |" in readme and "| age MAE (years) | 4.500 |" in readme
    analyzer = FaceAnalyzer("mine")  # the Python API by name
    assert analyzer.estimator.card == card
    records = analyzer.analyze(REPO / "examples" / "astronaut.png")
    assert len(records) == 1 and records[0]["age_low"] < records[0]["age"] < records[0]["age_high"]


def test_demo_lists_and_uses_it_and_a_damaged_entry_is_one_line(stored, run_script):
    env = {store.HOME: str(stored / "home")}
    broken = stored / "home" / "models" / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a model")
    (broken / "card.json").write_text("{cut")
    listed = run_script("demo.py", "--list-models", env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in listed.stdout.splitlines()
             if line[:1].isalnum()}  # fmt: skip
    assert lines["mine"] == (
        "MobileNetV3Small at 32 px; validation MAE 4.50, gender 93.5%; "
        "data licence: UTKFace: non-commercial research purposes only"
    )
    assert lines["broken"] == (f"damaged: the model card of {broken / 'card.json'} is not JSON "
                               "(Expecting property name enclosed in double quotes: line 1 "
                               "column 2 (char 1))")  # fmt: skip
    result = run_script("demo.py", "--model", "mine", "--image_dir", REPO / "examples",
                        "--output_dir", stored / "out", env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_csv(stored / "out" / "predictions.csv")
    assert table["age_low"][0] < table["age"][0] < table["age_high"][0]
    for name, message in [
        ("nobody", "unknown model 'nobody'; the named models are"),
        ("mine:onnx", "mine has no onnx export yet: python export.py --model mine --format onnx"),
        ("mine:zip", "a named model's export is one of mine:onnx, mine:tflite"),
    ]:
        refused = run_script("demo.py", "--model", name, "--image_dir", REPO / "examples",
                             "--output_dir", stored / "refused", env=env)  # fmt: skip
        assert message in user_error(refused)
    refused = run_script("demo.py", "--model", "broken", "--image_dir", REPO / "examples",
                         "--output_dir", stored / "refused", env=env)  # fmt: skip
    assert user_error(refused) == f"error: {lines['broken']}"  # as --list-models says
    with pytest.raises(UserError, match="and yours: broken, mine"):
        FaceAnalyzer("nobody")


@pytest.mark.slow
def test_an_export_lands_beside_it_with_the_same_card(stored):
    """The commands' steps in this process (their starts are tested elsewhere)."""
    from age_gender.cli import demo, export

    export.main(["--model", "mine", "--format", "onnx"])
    folder = stored / "home" / "models" / "mine"
    import onnx

    inside = json.loads({p.key: p.value for p in onnx.load(folder / "model.onnx").metadata_props}
                        ["age_gender"])  # fmt: skip
    kept = ModelCard.parse(json.loads((folder / "card.json").read_text()), "card.json")
    assert ModelCard.parse(inside, "onnx") == kept  # field for field
    tables = {}
    for name in ("mine", "mine:onnx"):
        out = stored / name.replace(":", "_")
        demo.main(["--model", name, "--image_dir", str(REPO / "examples"), "--output_dir",
                   str(out)])  # fmt: skip
        tables[name] = pd.read_csv(out / "predictions.csv")
    for column in ("age", "age_std", "age_low", "age_high"):
        np.testing.assert_allclose(tables["mine"][column][:1], tables["mine:onnx"][column][:1],
                                   atol=0.05)  # fmt: skip


@pytest.mark.parametrize(("option", "message"), [
    ("--model=", "argument --model: is empty"),
    ("--weight_file=", "argument --weight_file: is empty"),
    ("--model= ", "argument --model: is empty"),
    ("--weight_file=dlib-models", "dlib-models names a model: pass --model dlib-models"),
])  # fmt: skip
def test_an_empty_or_misplaced_model_option_is_one_line(capsys, option, message):
    from age_gender.cli import demo

    assert message in refusal(capsys, demo.main, option, "--image_dir", REPO / "examples")


@pytest.mark.parametrize(("name", "message"), [
    ("mine:onnx", "mine:onnx is an export already; export takes the model: --model mine"),
    ("dlib-models:onnx", "dlib-models is not a Keras model"),
    ("dlib-models", "dlib-models is not a Keras model; of the built-in models, original-b3, "
                    "original-wrn are (and every model you trained)"),
    ("nobody", "unknown model 'nobody'; the named models are original-b3, original-wrn "
               "(demo.py --list-models"),
])  # fmt: skip
def test_export_refuses_what_it_cannot_export_in_one_line(tmp_path, monkeypatch, capsys, name,
                                                          message):  # fmt: skip
    from age_gender.cli import export as export_command

    monkeypatch.setenv(store.HOME, str(tmp_path / "home"))
    assert message in refusal(capsys, export_command.main, "--model", name, "--format", "onnx")
    assert not (tmp_path / "home").exists() and not (tmp_path / "exported").exists()


def test_export_refuses_a_name_as_its_file_before_making_a_folder(tmp_path, monkeypatch, capsys):
    from age_gender.cli import export as export_command

    monkeypatch.chdir(tmp_path)
    line = refusal(capsys, export_command.main, "--weight_file", "original-b3")
    assert "original-b3 names a model: pass --model original-b3" in line
    # Not --model for a model export cannot take either: why it cannot.
    line = refusal(capsys, export_command.main, "--weight_file", "dlib-models")
    assert "dlib-models is not a Keras model" in line
    assert "is empty" in refusal(capsys, export_command.main, "--weight_file=")
    assert "missing.keras not found" in refusal(capsys, export_command.main, "--weight_file",
                                                "missing.keras")  # fmt: skip
    assert not list(tmp_path.iterdir())  # no exported/ left behind


def test_no_report_or_export_replaces_the_model_it_was_made_from(stored, capsys):
    """A report folder is named after its model, and a SavedModel export is a folder: either
    one, replaced whole with --overwrite, must not be where the model lives."""
    from age_gender.cli import evaluate, export

    home, kept = stored / "home" / "models", stored / "home" / "models" / "mine"
    images = stored / "img"
    images.mkdir()
    (stored / "labels.csv").write_text("genders,ages,img_paths\n0,40,a.png\n")
    line = refusal(capsys, evaluate.main, "--csv", stored / "labels.csv", "--root", images,
                   "--model", "mine", "--output_dir", home, "--overwrite")  # fmt: skip
    assert f"writing {kept} would replace an input file" in line
    assert (kept / "model.keras").is_file() and (kept / "card.json").is_file()
    line = refusal(capsys, evaluate.main, "--csv", stored / "labels.csv", "--root", images,
                   "--model", "mine", "--weight_file", kept / "model.keras")  # fmt: skip
    assert f"mine is {kept}/model.keras again: each model is evaluated once" in line

    inside = stored / "exp" / "best_saved_model"
    inside.mkdir(parents=True)
    (inside / "best.keras").write_bytes((stored / "best.keras").read_bytes())
    line = refusal(capsys, export.main, "--weight_file", inside / "best.keras", "--output_dir",
                   stored / "exp", "--format", "saved_model", "--overwrite")  # fmt: skip
    assert f"writing {inside} would replace an input file" in line
    assert (inside / "best.keras").is_file()
