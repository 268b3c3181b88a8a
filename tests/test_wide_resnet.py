"""The original project's wide ResNet: its v0.5 weight file, in old Keras' HDF5 layout, made
here (the real one cannot be downloaded), loads by its layers and predicts as the network does."""

import re

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, user_error
from support import synthetic

from age_gender.config import compose_config
from age_gender.errors import UserError
from age_gender.estimators.base import decode
from age_gender.faces.crops import CropSpec, face_crops
from age_gender.models import model
from age_gender.training import fit


def write_keras2_weights(path, network) -> None:
    """The network's weights as old standalone Keras saved them with save_weights: one group per
    layer, named as Keras 2 named layers (`conv2d_1`, `batch_normalization_1`, ...), in layer
    order, each with its `weight_names`."""
    counts: dict[str, int] = {}
    names = []
    with h5py.File(path, "w") as file:
        file.attrs["backend"], file.attrs["keras_version"] = b"tensorflow", b"2.1.6"
        for layer in (layer for layer in network.layers if layer.weights):
            kind = "conv2d" if "conv" in layer.name else layer.name.rstrip("_0123456789")
            counts[kind] = counts.get(kind, 0) + 1
            name = layer.name if layer.name.startswith("pred_") else f"{kind}_{counts[kind]}"
            names.append(name.encode())
            group = file.create_group(name)
            weight_names = [f"{name}/{weight.name}:0".encode() for weight in layer.weights]
            group.attrs["weight_names"] = weight_names
            for weight_name, value in zip(weight_names, layer.get_weights(), strict=True):
                group.create_dataset(weight_name.decode(), data=value)
        file.attrs["layer_names"] = names


@pytest.mark.slow
def test_original_wide_resnet_weights_load_and_predict(tmp_path, run_script):
    rng = np.random.default_rng(0)
    network = model.build_model("WideResNet16_8", CropSpec(64), None, channel_order="BGR")
    for layer in network.layers:  # weights a trained network could hold, not the initial ones
        if layer.weights:
            values = [rng.normal(0, 0.05, w.shape) if w.ndim > 1 else rng.uniform(0.5, 1.5, w.shape)
                      for w in layer.get_weights()]  # fmt: skip
            layer.set_weights(values)
    path = tmp_path / "weights.28-3.73.hdf5"  # the published name: no architecture in it
    write_keras2_weights(path, network)
    with h5py.File(path) as file:
        assert file.attrs["layer_names"][0] in ("conv2d_1", b"conv2d_1")
        assert file["pred_gender"]["pred_gender/kernel:0"].shape == (131072, 2)  # no bias

    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--weight_file", path,
        "--output_dir", tmp_path / "out", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    row = pd.read_csv(tmp_path / "out" / "predictions.csv").iloc[0]
    image = cv2.cvtColor(cv2.imread(str(REPO / "examples" / "astronaut.png")), cv2.COLOR_BGR2RGB)
    box = tuple(int(row[column]) for column in ("x_min", "y_min", "x_max", "y_max"))
    crop = face_crops(image, [box], CropSpec(64))
    # The network as the original ran it: raw BGR pixels in, no preprocessing.
    gender, age = network(crop.astype("float32"))
    expected = decode(np.asarray(gender), np.asarray(age))[0]
    assert row["age"] == pytest.approx(expected.age, abs=0.01)
    assert row["gender_probability"] == pytest.approx(expected.gender_probability, abs=1e-4)


def test_wide_resnet_mistakes_are_one_line(tmp_path):
    """train.py's steps in this process: the refusals come before any folder is made."""
    synthetic.write_disk_dataset(tmp_path / "images", 8, size=32).to_csv(
        tmp_path / "labels.csv", index=False
    )
    data = [f"data.csv={tmp_path}/labels.csv", f"data.root={tmp_path}/images", "model.img_size=32"]
    for name, weights, message in [
        ("WideResNet15_2", "null", "a wide ResNet's depth is 6n + 4 (10, 16, 22, 28, ...), not 15"),
        (
            "WideResNet10_1",
            "imagenet",
            "model.weights=imagenet: WideResNet10_1 takes null or a weight file",
        ),
    ]:
        with pytest.raises(UserError, match=re.escape(message)):
            fit.train(compose_config([f"model.model_name={name}", f"model.weights={weights}",
                                      *data, f"train.output_dir={tmp_path}/run"]))  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_the_published_wide_resnet_is_fetched_by_name(tmp_path, run_script, offline):
    result = run_script(
        "demo.py", "--image_dir", REPO / "examples", "--model", "original-wrn",
        "--output_dir", tmp_path / "out", cwd=tmp_path, env=offline,
    )  # fmt: skip
    url = (
        "https://github.com/yu4u/age-gender-estimation/releases/download/v0.5/weights.28-3.73.hdf5"
    )
    assert f"cannot download {url}" in user_error(result)
    assert not (tmp_path / "pretrained_models" / "weights.28-3.73.hdf5").exists()
