"""DEX's VGG-16 ONNX models through --model dex: files with the published inputs and outputs,
made here (the real ones are 513 MB each), including an opset too old for onnxruntime."""

import cv2
import numpy as np
import onnx
import pandas as pd
import pytest
from conftest import REPO, user_error
from onnx import TensorProto, helper, numpy_helper

from age_gender.estimators.dex import DEX_FILES
from age_gender.faces.crops import CropSpec, face_crops

AGE_WEIGHTS = {
    "age": (0, np.arange(101) * 4e-4),  # the age rises with the mean of channel 0 (blue, BGR)
    "apparent_age": (1, -np.arange(101) * 3e-4),  # falls with the mean of channel 1 (green)
}


def dex_like(path, weights: np.ndarray, opset: int, batch) -> None:
    """A network with DEX's interface: N x 3 x 224 x 224 in, a softmax over the channel means
    out. Opset 5 files list their weights as inputs too, as IR version 3 wants."""
    classes = weights.shape[1]
    nodes = [
        helper.make_node("GlobalAveragePool", ["data"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["prob"]),
    ]
    image = helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, 224, 224])
    parameters = [
        helper.make_tensor_value_info("W", TensorProto.FLOAT, list(weights.shape)),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, [classes]),
    ]
    graph = helper.make_graph(
        nodes, "dex", [image, *(parameters if opset < 7 else [])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [batch, classes])],
        [numpy_helper.from_array(weights.astype(np.float32), "W"),
         numpy_helper.from_array(np.zeros(classes, np.float32), "b")],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=3 if opset < 7 else 7
    )
    onnx.save(model, str(path))


@pytest.fixture
def dex_folder(tmp_path):
    folder = tmp_path / "pretrained_models" / "dex"
    folder.mkdir(parents=True)
    for name, (channel, ramp) in AGE_WEIGHTS.items():
        weights = np.zeros((3, 101))
        weights[channel] = ramp
        opset, batch = (5, 1) if name == "age" else (11, "N")  # the old and the new kind
        dex_like(folder / DEX_FILES[name], weights, opset, batch)
    gender = np.zeros((3, 2))
    gender[2, 1] = 0.01  # P(male) rises with the mean of channel 2 (red)
    dex_like(folder / DEX_FILES["gender"], gender, 11, 1)
    return tmp_path


def reference(image: np.ndarray, box, kind: str) -> tuple[float, float]:
    """Expected age and P(male) of the test networks for a face, computed with NumPy."""
    crop = face_crops(image, [box], CropSpec(224))[0][..., ::-1]  # BGR, as DEX takes it
    means = crop.reshape(-1, 3).mean(0)
    channel, ramp = AGE_WEIGHTS[kind]
    ages = np.exp(means[channel] * ramp - (means[channel] * ramp).max())
    male = 1 / (1 + np.exp(-0.01 * means[2]))
    return float((ages / ages.sum()) @ np.arange(101)), float(male)


@pytest.mark.parametrize("model_name, kind", [("dex", "age"), ("dex-apparent", "apparent_age")])
def test_dex_in_the_demo(dex_folder, run_script, model_name, kind):
    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--model", model_name,
        "--output_dir", "out", cwd=dex_folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = pd.read_csv(dex_folder / "out" / "predictions.csv").iloc[0]
    image = cv2.cvtColor(cv2.imread(str(REPO / "examples" / "astronaut.png")), cv2.COLOR_BGR2RGB)
    box = tuple(int(row[column]) for column in ("x_min", "y_min", "x_max", "y_max"))
    age, male = reference(image, box, kind)
    assert row["age"] == pytest.approx(age, abs=0.01)
    assert row["gender"] == ("M" if male >= 0.5 else "F")
    assert row["gender_probability"] == pytest.approx(max(male, 1 - male), abs=1e-4)


def test_missing_dex_files_say_where_to_get_them(tmp_path, run_script):
    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--model", "dex", "--output_dir", "out",
        cwd=tmp_path,
    )  # fmt: skip
    message = user_error(result)
    assert "DEX needs pretrained_models/dex/vgg_ilsvrc_16_age_imdb_wiki.onnx" in message
    assert "github.com/onnx/models" in message
    unknown = run_script("demo.py", "--image_dir", REPO / "examples", "--model", "dexx")
    names = "original-b3, original-wrn, dex, dex-apparent, dlib-models"
    assert f"unknown model 'dexx'; the named models are {names}" in user_error(unknown)
    listed = run_script("demo.py", "--list-models")
    assert listed.returncode == 0 and "dex-apparent" in listed.stdout
    assert "licence: CC0 (public domain)" in listed.stdout
