"""dlib's face ResNets as Keras backbones: the packaged weights read into Keras layers compute
what dlib and onnxruntime compute, and train, save and freeze like any backbone."""

import shutil

import cv2
import dlib
import face_recognition_models
import keras
import numpy as np
import onnxruntime
import pytest
from conftest import REPO, refusal

from age_gender.cli import export
from age_gender.errors import UserError
from age_gender.faces.crops import CropSpec
from age_gender.models import dlib_resnet, model
from age_gender.training import fit

ASTRONAUT = REPO / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def astronaut_chip() -> np.ndarray:
    """dlib's own 150x150 chip of the astronaut: 5-point aligned, padding 0.25, RGB."""
    image = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB)
    face = dlib.get_frontal_face_detector()(image, 1)[0]
    five_points = face_recognition_models.pose_predictor_five_point_model_location()
    predictor = dlib.shape_predictor(five_points)
    return np.asarray(dlib.get_face_chip(image, predictor(image, face), 150, 0.25))


def test_dlib_resnet_gives_dlibs_face_descriptor(astronaut_chip):
    network = dlib_resnet.dlib_resnet("DlibFaceResNet", include_top=True)
    ours = np.asarray(network(dlib_resnet.preprocess_input(astronaut_chip[None].astype("float32"))))
    path = face_recognition_models.face_recognition_model_location()
    theirs = np.array(dlib.face_recognition_model_v1(path).compute_face_descriptor(astronaut_chip))
    assert ours.shape == (1, 128)
    np.testing.assert_allclose(ours[0], theirs, atol=1e-4)
    # Without the top: the 256-D average the descriptor is a projection of.
    features = dlib_resnet.dlib_resnet("DlibFaceResNet", include_top=False).output
    assert tuple(features.shape) == (None, 256)


def test_cydral_age_gives_onnxruntimes_probabilities(astronaut_chip):
    network = dlib_resnet.dlib_resnet("CydralAge", include_top=True)
    chips = np.stack([cv2.resize(astronaut_chip, (64, 64)), np.full((64, 64, 3), 200, np.uint8)])
    inputs = np.asarray(dlib_resnet.preprocess_input(chips.astype("float32")))
    session = onnxruntime.InferenceSession(str(dlib_resnet.packaged_file("CydralAge")))
    theirs = session.run(None, {"images": inputs.transpose(0, 3, 1, 2)})[0]
    ours = np.asarray(network(inputs))
    assert ours.shape == (2, 81) and np.abs(ours - theirs).max() < 1e-5
    assert abs(ours[0] - ours[1]).max() > 0.01  # two faces, two answers


def test_face_backbone_takes_raw_rgb_saves_and_reloads(tmp_path, astronaut_chip):
    network = model.build_model("CydralAge", CropSpec(64), dlib_resnet.PACKAGED)
    assert model.model_card(network).backbone == "CydralAge"
    # The first convolution holds Cydral's weights, in Keras' layout.
    assert not np.allclose(network.get_layer("stem_conv").kernel.numpy(), 0)
    crop = cv2.resize(astronaut_chip, (64, 64))[None]
    before = [np.asarray(output) for output in network(crop)]
    network.save(tmp_path / "cydral.keras")
    again = keras.saving.load_model(tmp_path / "cydral.keras")
    for old, new in zip(before, again(crop), strict=True):
        np.testing.assert_allclose(old, np.asarray(new), atol=1e-6)


def test_trainable_from_freezes_the_stages_before_it():
    network = model.build_model("CydralAge", CropSpec(64), None)
    fit.set_trainable(network, frozen=False, trainable_from="block4")
    trainable = [layer.name for layer in network.layers if layer.trainable_weights]
    assert trainable[0] == "block4_1_conv" and "stem_conv" not in trainable
    assert {"pred_gender", "pred_age", "block5_2_affine"} <= set(trainable)
    fit.set_trainable(network, frozen=True, trainable_from="block4")
    assert [layer.name for layer in network.layers if layer.trainable_weights] == [
        "pred_gender", "pred_age"
    ]  # fmt: skip
    with pytest.raises(UserError, match="trainable_from=blok4: no layer"):
        fit.set_trainable(network, frozen=False, trainable_from="blok4")


def test_damaged_weight_files_are_one_line(tmp_path):
    network = dlib_resnet.dlib_resnet("DlibFaceResNet", include_top=True, weights=None)
    source = face_recognition_models.face_recognition_model_location()
    cut = tmp_path / "cut.dat"
    with open(source, "rb") as file:
        cut.write_bytes(file.read(5_000_000))
    with pytest.raises(UserError, match="cut.dat"):
        dlib_resnet.load_weights(network, cut)
    other = tmp_path / "age-v1.onnx"
    shutil.copy(dlib_resnet.packaged_file("CydralAge"), other)
    with pytest.raises(UserError, match="11 convolutions .* the network 29"):
        dlib_resnet.load_weights(network, other)
    with pytest.raises(UserError, match="DlibFaceResNet takes model.img_size=103 or more"):
        model.build_model("DlibFaceResNet", CropSpec(32), None)
    with pytest.raises(UserError, match="CydralAge takes null or packaged$"):
        model.build_model("CydralAge", CropSpec(64), "imagenet")


@pytest.mark.slow
def test_face_backbone_exports_with_parity(tmp_path, capsys):
    """export.py's steps in this process (its start is the export test's)."""
    network = model.build_model("CydralAge", CropSpec(64), dlib_resnet.PACKAGED, feature_norm=True)
    network.save(tmp_path / "cydral.keras")
    options = ["--weight_file", tmp_path / "cydral.keras", "--output_dir", tmp_path / "exported"]
    export.main([str(option) for option in [*options, "--format", "all"]])
    said = capsys.readouterr().out
    for form in ("onnx", "tflite", "saved_model"):
        assert f"{form} parity on 8 crops" in said
    again = refusal(capsys, export.main, *options, "--format", "onnx")
    assert "cydral.onnx exists from an earlier export; pass --overwrite" in again
