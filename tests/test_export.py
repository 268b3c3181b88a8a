"""export.py to ONNX: parity with the Keras model, metadata inside, and inference without TF."""

import json

import numpy as np
import onnx
import pandas as pd
import pytest
from conftest import REPO, user_error

from age_gender import model


@pytest.fixture(scope="module")
def varied_model(tmp_path_factory):
    """EfficientNetB0 (the default family: its Normalization layer is the known ONNX trap) with
    BGR input and random heads large enough that every crop gets its own prediction."""
    folder = tmp_path_factory.mktemp("export")
    network = model.build_model("EfficientNetB0", 48, None, margin=0.3, channel_order="BGR")
    rng = np.random.default_rng(0)
    for name in ("pred_gender", "pred_age"):
        kernel = network.get_layer(name).kernel
        kernel.assign(rng.normal(0, 2.0, kernel.shape).astype("float32"))
    network.save(folder / "tiny.keras")
    return folder


def test_onnx_export_matches_keras_and_runs_without_tensorflow(varied_model, tmp_path, run_script):
    result = run_script(
        "export.py", "--weight_file", varied_model / "tiny.keras", "--output_dir", "exported",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parity on 8 crops" in result.stdout
    exported = tmp_path / "exported" / "tiny.onnx"
    assert sorted(p.name for p in exported.parent.iterdir()) == ["tiny.onnx"]
    graph = onnx.load(str(exported))
    assert [graph_input.name for graph_input in graph.graph.input] == ["image"]
    metadata = json.loads({p.key: p.value for p in graph.metadata_props}["age_gender"])
    assert metadata["backbone"] == "EfficientNetB0" and metadata["channel_order"] == "BGR"
    assert metadata["img_size"] == 48 and metadata["margin"] == 0.3
    assert set(metadata["outputs"]) == {"pred_gender", "pred_age"}

    tables = {}
    for weights in (varied_model / "tiny.keras", exported):
        out = tmp_path / weights.suffix[1:]
        script = (
            "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], "
            "run_name='__main__'); print('tensorflow imported:', 'tensorflow' in sys.modules)"
        )
        result = run_script(
            "-c", script, REPO / "demo.py", "--image_dir", REPO / "examples", "--output_dir", out,
            "--weight_file", weights, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        imported = "tensorflow imported: True" in result.stdout
        assert imported == (weights.suffix == ".keras"), result.stdout
        tables[weights.suffix] = pd.read_csv(out / "predictions.csv")
    keras_table, onnx_table = tables[".keras"], tables[".onnx"]
    assert keras_table["faces"].tolist() == onnx_table["faces"].tolist() == [1, 0]
    np.testing.assert_allclose(onnx_table["age"][:1], keras_table["age"][:1], atol=0.05)
    np.testing.assert_allclose(
        onnx_table["gender_probability"][:1], keras_table["gender_probability"][:1], atol=1e-4
    )


def test_bad_exports_are_one_line(tmp_path, run_script):
    missing = run_script("export.py", "--weight_file", "none.keras", cwd=tmp_path)
    assert "weight file none.keras not found" in user_error(missing)
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--weight_file", tmp_path / "broken.onnx",
        "--output_dir", tmp_path / "out", cwd=tmp_path,
    )  # fmt: skip
    assert "is not an ONNX model" in user_error(result)
