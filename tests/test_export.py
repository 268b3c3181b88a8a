"""export.py to ONNX and TFLite: parity with Keras, metadata, and inference without TensorFlow."""

import json
import re

import httpx
import numpy as np
import onnx
import pandas as pd
import pytest
from conftest import REPO, refusal, user_error
from support.server_process import running_server
from test_leftovers import strand

from age_gender.cli import demo as demo_script
from age_gender.cli import export as export_script
from age_gender.errors import UserError
from age_gender.estimators.base import exported_card
from age_gender.estimators.presets import load_estimator
from age_gender.models.card import ModelCard


@pytest.mark.slow
def test_exports_match_keras_and_run_without_tensorflow(varied_model, tmp_path, run_script):
    (tmp_path / "exported").mkdir()
    strand(tmp_path / "exported" / "tiny.onnx")  # what a killed export left: cleared
    result = run_script(
        "export.py", "--weight_file", varied_model / "tiny.keras", "--format", "all",
        "--output_dir", "exported", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for form in ("onnx", "tflite", "saved_model"):
        assert f"{form} parity on 8 crops" in result.stdout
    # No converter's noise: tf2onnx's skipped passes, NumPy's FutureWarning, LiteRT's notice.
    for noise in ("Traceback", "Failed to apply", "Warning", "XNNPACK"):
        assert noise not in result.stderr, result.stderr[-3000:]
    folder = tmp_path / "exported"
    assert sorted(p.name for p in folder.iterdir()) == [
        "tiny.onnx", "tiny.tflite", "tiny.tflite.json", "tiny_saved_model"
    ]  # fmt: skip
    graph = onnx.load(str(folder / "tiny.onnx"))
    assert [graph_input.name for graph_input in graph.graph.input] == ["image"]
    inside = json.loads({p.key: p.value for p in graph.metadata_props}["age_gender"])
    beside = json.loads((folder / "tiny.tflite.json").read_text())
    in_folder = json.loads((folder / "tiny_saved_model/assets.extra/age_gender.json").read_text())
    card = load_estimator(varied_model / "tiny.keras").card
    for metadata in (inside, beside, in_folder):  # the same card, field for field
        assert ModelCard.parse(metadata, "export") == card and card.interval_scale == 1.7
        assert set(metadata["outputs"]) == {"pred_gender", "pred_age"}
    # Metadata of another model (outputs it lacks, another size) is refused when it loads.
    (tmp_path / "other.tflite").write_bytes((folder / "tiny.tflite").read_bytes())
    wrong_outputs = {"outputs": {"pred_gender": "x:0", "pred_age": "y:1"}}
    for change, message in [
        (wrong_outputs, "names output 'x:0', which the model does not have"),
        ({"img_size": 224}, "says img_size 224, the model takes [48, 48]"),
    ]:
        (tmp_path / "other.tflite.json").write_text(json.dumps({**beside, **change}))
        with pytest.raises(UserError, match=re.escape(message)):
            load_estimator(tmp_path / "other.tflite")

    tables = {}
    models = ["tiny.onnx", "tiny.tflite", "tiny_saved_model"]
    script = (
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], "
        "run_name='__main__'); print('tensorflow imported:', 'tensorflow' in sys.modules)"
    )
    for weights in [varied_model / "tiny.keras", *(folder / name for name in models)]:
        out = tmp_path / f"out_{weights.name}"
        options = ["--image_dir", REPO / "examples", "--output_dir", out, "--weight_file", weights]
        if weights.suffix in (".onnx", ".tflite"):  # a process of its own, that never loads TF
            result = run_script("-c", script, REPO / "demo.py", *options, cwd=tmp_path)
            assert result.returncode == 0, result.stderr[-3000:]
            assert "tensorflow imported: False" in result.stdout, result.stdout
        else:  # TensorFlow's models: in this process, where it is loaded already
            demo_script.main([str(option) for option in options])
        tables[weights.name] = pd.read_csv(out / "predictions.csv")
    keras_table = tables["tiny.keras"]
    assert abs(keras_table["age"][0] - 50) > 0.5  # the heads make a real prediction, not uniform
    assert keras_table["age_low"][0] < keras_table["age"][0] < keras_table["age_high"][0]
    for name in models:
        assert tables[name]["faces"].tolist() == keras_table["faces"].tolist() == [1, 0]
        for column in ("age", "age_std", "age_low", "age_high"):  # read as the card says
            np.testing.assert_allclose(tables[name][column][:1], keras_table[column][:1], atol=0.05)
        np.testing.assert_allclose(
            tables[name]["gender_probability"][:1],
            keras_table["gender_probability"][:1],
            atol=1e-4,
        )
    # serve.py runs the ONNX model too, with the demo's answer.
    with running_server("--weight_file", folder / "tiny.onnx") as url:
        image = (REPO / "examples" / "astronaut.png").read_bytes()
        answer = httpx.post(f"{url}/v1/predict", files={"image": ("a.png", image)}, timeout=60)
        model = httpx.get(f"{url}/v1/model").json()
    assert answer.status_code == 200, answer.text
    face = answer.json()["faces"][0]
    assert face["age"] == pytest.approx(tables["tiny.onnx"]["age"][0], abs=0.01)
    assert model["model"] == "tiny.onnx" and model["card"]["backbone"] == "EfficientNetB0"


def test_damaged_card_is_one_line_naming_the_field(tmp_path):
    good = {"backbone": "CydralAge", "img_size": 64, "channel_order": "RGB", "margin": 0.1,
            "outputs": {"pred_gender": "a", "pred_age": "b"}}  # fmt: skip
    card, outputs = exported_card(json.dumps(good), "m.onnx")  # a card of version 1
    assert card == ModelCard("CydralAge", 64, "RGB", 0.1) and outputs == good["outputs"]
    for text, message in [
        ("{broken", "the model card of m.onnx is not JSON"),
        ("[1, 2", "is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        (json.dumps({**good, "img_size": 0}), "a wrong img_size (0)"),
        (json.dumps({**good, "img_size": "abc"}), "a wrong img_size ('abc')"),
        (json.dumps({k: v for k, v in good.items() if k != "margin"}), "m.onnx has no margin"),
        (json.dumps({**good, "offset": [0.1]}), "a wrong offset"),
        (json.dumps({**good, "outputs": {"pred_age": "b"}}), "a wrong outputs"),
        (json.dumps({**good, "aligned": 1}), "a wrong aligned"),
        (json.dumps({**good, "interval_scale": -1}), "a wrong interval_scale (-1)"),
        (json.dumps({**good, "version": 99}), "of version 99, newer than this age-gender reads"),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            exported_card(text, "m.onnx")
    (tmp_path / "m.tflite").write_bytes(b"not a model")  # the sidecar is read first
    (tmp_path / "m.tflite.json").write_text(json.dumps({**good, "img_size": 0}))
    with pytest.raises(UserError, match="m.tflite.json has a wrong img_size"):
        load_estimator(tmp_path / "m.tflite")


def test_bad_exports_are_one_line(tmp_path, run_script, capsys, monkeypatch):
    missing = run_script("export.py", "--weight_file", "none.keras", cwd=tmp_path)
    assert "weight file none.keras not found" in user_error(missing)
    monkeypatch.chdir(tmp_path)  # there, but no file
    line = refusal(capsys, export_script.main, "--weight_file", "/dev/null")
    assert "weight file /dev/null is not a file" in line and not list(tmp_path.iterdir())
    (tmp_path / "m.keras").write_bytes(b"")  # refused before it is read
    (tmp_path / "out" / "m.onnx").mkdir(parents=True)  # a folder where the file would go
    line = refusal(capsys, export_script.main, "--weight_file", "m.keras", "--output_dir", "out",
                   "--format", "onnx", "--overwrite")  # fmt: skip
    assert "out/m.onnx is a folder, not an earlier export; move it" in line
    for name, message in [
        ("broken.onnx", "is not an ONNX model"),
        ("lone.tflite", "lone.tflite.json not found: export.py writes it beside lone.tflite"),
    ]:
        (tmp_path / name).write_bytes(b"not a model")
        result = run_script(
            "demo.py", "--image_dir", REPO / "examples", "--weight_file", tmp_path / name,
            "--output_dir", tmp_path / "out", cwd=tmp_path,
        )  # fmt: skip
        assert message in user_error(result)
