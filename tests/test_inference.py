"""Detection, crops, estimators (ours, the original HDF5, dlib-models), downloads, smoothing."""

import dataclasses
import hashlib
import math

import cv2
import h5py
import keras
import numpy as np
import pytest
from conftest import ASTRONAUT_FACE, REPO, astronaut
from keras.src.legacy.saving import legacy_h5_format

from age_gender.apps.tracking import FaceTracker
from age_gender.errors import UserError
from age_gender.estimators.base import decode
from age_gender.estimators.dlib_models import DlibModelsEstimator
from age_gender.estimators.keras_model import KerasEstimator
from age_gender.estimators.presets import load_estimator
from age_gender.faces import crops, detection
from age_gender.faces.crops import CropSpec
from age_gender.faces.eye_finder import eye_finder
from age_gender.models import model, weights
from age_gender.schema import BOX_COLUMNS, Prediction


def rgb(name):
    return cv2.cvtColor(cv2.imread(str(REPO / "examples" / name)), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("kind", ["mtcnn", "hog", "cnn"])
def test_detectors_find_the_astronaut_and_no_cat(kind):
    detector = detection.DetectorSpec(kind, upsample=0 if kind == "cnn" else 1).build()
    found = detector.detect(rgb("astronaut.png"))
    assert len(found) == 1
    assert max(abs(a - b) for a, b in zip(found[0].box, ASTRONAUT_FACE, strict=True)) < 15
    assert detector.detect(rgb("cat_no_face.png")) == []


def test_large_frames_are_searched_downscaled_and_boxes_scaled_back():
    image = rgb("astronaut.png")
    large = cv2.resize(image, None, fx=4, fy=4)
    found = detection.DetectorSpec("hog", max_side=512).build().detect(large)
    assert len(found) == 1
    assert max(abs(a - 4 * b) for a, b in zip(found[0].box, ASTRONAUT_FACE, strict=True)) < 60


def test_a_saved_model_loads_with_its_card_and_outputs(tmp_path):
    network = model.build_model("MobileNetV3Small", CropSpec(32, 0.3), None)
    calibrated = {"age_std_scale": 1.5, "age_std_power": 1.2, "interval_scale": 1.8}
    card = dataclasses.replace(model.model_card(network), **calibrated)  # as training fits
    model.set_card(network, card)
    network.save(tmp_path / "tiny.keras")
    loaded = KerasEstimator.load(tmp_path / "tiny.keras")
    assert loaded.card == card and loaded.card.crop == CropSpec(32, 0.3)
    assert (card.backbone, card.img_size, card.channel_order) == ("MobileNetV3Small", 32, "RGB")
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    gender, age = network(crops.astype("float32"))
    expected = decode(np.asarray(gender), np.asarray(age))
    for got, want in zip(loaded.predict_crops(crops), expected, strict=True):
        assert got.age == pytest.approx(want.age, abs=1e-3)
        assert got.age_std == pytest.approx(1.5 * want.age_std**1.2, rel=1e-4)
        assert got.age_low == pytest.approx(max(got.age - 1.8 * got.age_std, 0), rel=1e-6)
        assert got.age_high == pytest.approx(min(got.age + 1.8 * got.age_std, 100), rel=1e-6)
        assert got.male_probability == pytest.approx(want.male_probability, abs=1e-5)
        assert math.isnan(want.age_low)  # no card: no interval


@pytest.mark.slow
def test_original_hdf5_weights_load_and_get_bgr(tmp_path):
    """A file in the original layout: flat EfficientNetB3 + pred_gender + pred_age, fed BGR."""
    keras.utils.set_random_seed(0)
    backbone = keras.applications.EfficientNetB3(
        include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg"
    )
    gender = keras.layers.Dense(2, activation="softmax", name="pred_gender")(backbone.output)
    age = keras.layers.Dense(101, activation="softmax", name="pred_age")(backbone.output)
    original = keras.Model(backbone.input, [gender, age])
    rng = np.random.default_rng(1)
    kernel = original.get_layer("pred_age").kernel
    kernel.assign(rng.normal(0, 100, kernel.shape).astype("float32"))  # make small changes show
    path = tmp_path / "EfficientNetB3_224_weights.11-3.44.hdf5"
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, original)

    loaded = KerasEstimator.load(path)
    assert loaded.card.channel_order == "BGR"
    crops = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    crops[..., 0] = 255  # strongly red in RGB, so a missing swap would show
    want_gender, want_age = original(crops[..., ::-1].astype("float32"))  # what it was trained on
    expected = decode(np.asarray(want_gender), np.asarray(want_age))
    got = loaded.predict_crops(crops)
    for got_one, want in zip(got, expected, strict=True):
        assert got_one.age == pytest.approx(want.age, abs=1e-3)
    wrong_gender, wrong_age = original(crops.astype("float32"))
    unswapped = decode(np.asarray(wrong_gender), np.asarray(wrong_age))
    assert abs(unswapped[0].age - got[0].age) > 0.01


def test_bad_weight_files_are_one_clear_error(tmp_path):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a model saved by train.py"):
        KerasEstimator.load(tmp_path / "broken.keras")
    other = model.build_model("MobileNetV3Small", CropSpec(32), None)
    path = tmp_path / "EfficientNetB3_224_other.hdf5"
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, other)
    with pytest.raises(UserError, match="cannot load EfficientNetB3_224_other.hdf5"):
        KerasEstimator.load(path)
    (tmp_path / "mystery.h5").write_bytes(b"")
    with pytest.raises(UserError, match="cannot tell the architecture"):
        KerasEstimator.load(tmp_path / "mystery.h5")


def test_dlib_models_estimate_the_astronaut():
    prediction = DlibModelsEstimator().predict(rgb("astronaut.png"), [ASTRONAUT_FACE])
    assert len(prediction) == 1 and prediction[0].gender == "F"
    assert 20 < prediction[0].age < 60


def test_decode_gives_mean_and_spread():
    age = np.zeros((1, 101))
    age[0, [20, 30]] = 0.5
    (prediction,) = decode(np.array([[0.2, 0.8]]), age)
    assert prediction.age == pytest.approx(25) and prediction.age_std == pytest.approx(5)
    assert prediction.gender == "M" and prediction.gender_probability == pytest.approx(0.8)


# Downloads against a real server on 127.0.0.1 ---------------------------------------------------


def served_weight(root, url, data, md5=None):
    (root / "w.hdf5").write_bytes(data)
    return weights.WeightFile("w.hdf5", f"{url}/w.hdf5", md5 or hashlib.md5(data).hexdigest())


def test_download_success_then_cached(tmp_path, http_server):
    url, root, _ = http_server
    data = np.random.default_rng(0).bytes(300_000)
    weight = served_weight(root, url, data)
    path = weights.fetch(weight, tmp_path / "models")
    assert path.read_bytes() == data
    (root / "w.hdf5").unlink()
    assert weights.fetch(weight, tmp_path / "models") == path
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["w.hdf5"]


def test_download_wrong_checksum_404_and_cut(tmp_path, http_server):
    url, root, server = http_server
    folder = tmp_path / "models"
    weight = served_weight(root, url, b"x" * 1000, md5="0" * 32)
    with pytest.raises(weights.DownloadError, match="wrong checksum"):
        weights.fetch(weight, folder)
    assert list(folder.iterdir()) == []
    with pytest.raises(weights.DownloadError, match="HTTP 404"):
        weights.fetch(weights.WeightFile("gone.hdf5", f"{url}/gone.hdf5", "0" * 32), folder)
    weight = served_weight(root, url, b"y" * 200_000)
    server.cut_once.add("/w.hdf5")
    with pytest.raises(weights.DownloadError, match="cannot download|was cut"):
        weights.fetch(weight, folder)
    assert list(folder.iterdir()) == []
    assert weights.fetch(weight, folder).read_bytes() == b"y" * 200_000


# Smoothing -----------------------------------------------------------------------------------


def test_tracking_smooths_a_noisy_sequence_and_keeps_faces_apart():
    rng = np.random.default_rng(0)
    tracker = FaceTracker(window=8)
    raw, smoothed, other = [], [], []
    for frame in range(40):
        left = (100 + frame, 100, 200 + frame, 200)
        right = (400, 100, 500, 200)
        noisy = Prediction(30 + rng.normal(0, 5), 4.0, 0.2)
        elder = Prediction(70 + rng.normal(0, 5), 4.0, 0.9)
        first, second = tracker.update([left, right], [noisy, elder])
        raw.append(noisy.age)
        smoothed.append(first.age)
        other.append(second.age)
    assert np.std(np.diff(smoothed[8:])) < 0.5 * np.std(np.diff(raw[8:]))
    assert abs(np.mean(smoothed[8:]) - 30) < 3 and abs(np.mean(other[8:]) - 70) < 3
    assert len(tracker.tracks) == 2


def test_flip_averaging_is_the_mean_of_a_face_and_its_mirror(varied_model):
    runner = load_estimator(varied_model / "tiny.keras")
    cut = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    plain = runner.predict_crops(cut)
    runner.set_options(tta="flip")
    flipped = runner.predict_crops(cut)
    gender, age = (
        (first + second) / 2
        for first, second in zip(
            runner.probabilities(cut), runner.probabilities(cut[:, :, ::-1]), strict=True
        )
    )
    for got, want, alone in zip(flipped, decode(gender, age), plain, strict=True):
        assert got.age == pytest.approx(want.age, abs=1e-4)
        assert got.age != pytest.approx(alone.age, abs=1e-4)


def test_every_estimator_path_crops_with_the_models_offset(varied_model):
    runner = load_estimator(varied_model / "tiny.keras")
    image, box = astronaut(), ASTRONAUT_FACE
    # Its card says upright: without the detector's eyes, dlib's shape predictor finds them.
    assert runner.crop_spec.upright
    eyes = eye_finder().eyes(image, box)
    turned = crops.face_crops(image, [box], runner.crop_spec, [eyes])
    assert runner.predict(image, [box])[0] == runner.predict_crops(turned)[0]
    runner.crop_spec = dataclasses.replace(runner.crop_spec, offset=(0.25, -0.2), upright=False)
    spec = runner.crop_spec
    crop = crops.face_crops(image, [box], spec)
    moved = runner.predict(image, [box])[0]
    assert moved.age == pytest.approx(runner.predict_crops(crop)[0].age, abs=1e-4)
    unmoved = crops.face_crops(image, [box], dataclasses.replace(spec, offset=(0.0, 0.0)))
    assert moved.age != pytest.approx(runner.predict_crops(unmoved)[0].age, abs=1e-3)
    from age_gender.apps.annotation import Examiner, FaceFinding

    # An annotate worker, given the spec alone, crops what the estimator crops.
    examiner = Examiner(REPO / "examples", FaceFinding(detection.DetectorSpec("hog"), spec))
    rows, worker_crops = examiner("astronaut.png")
    assert [tuple(rows[0][column] for column in BOX_COLUMNS)] == [box]
    assert np.array_equal(worker_crops, crop)
