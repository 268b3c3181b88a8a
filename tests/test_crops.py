"""The one crop: the crop box and its margin and offset, the one warp, the aligned square, the
overlap of boxes, and the same pixels from the training pipeline as from every estimator."""

import cv2
import numpy as np
import pandas as pd
import pytest

from age_gender.data import dataset
from age_gender.estimators.base import face_inputs
from age_gender.faces import crops
from age_gender.faces.crops import CropSpec
from age_gender.schema import BOX_COLUMNS, EYE_COLUMNS


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (5, 5), 2)


def training_crops(tmp_path, image: np.ndarray, rows: dict, crop: CropSpec) -> np.ndarray:
    """The evaluation batches of the training pipeline for rows of one PNG (lossless)."""
    cv2.imwrite(str(tmp_path / "face.png"), image[..., ::-1])
    frame = pd.DataFrame({"genders": 0, "ages": 30, "img_paths": "face.png", **rows})
    images, _ = next(iter(dataset.make_dataset(frame, tmp_path, crop, len(frame))))
    return images.numpy()


def test_training_crops_what_every_estimator_crops(tmp_path):
    """A tight crop without a box (UTKFace's: the whole image is the face) and a boxed face,
    with the non-zero offset and margin the framing measures: pixel for pixel the crops the
    estimators take of the detected box."""
    image = textured(200, 200)
    crop = CropSpec(64, 0.5, (0.2, 0.1))
    detected = (30, 40, 130, 140)  # widened by 0.5 and moved by (0.2, 0.1): the whole image
    assert crops.crop_box(image.shape, detected, crop.margin, crop.offset).tolist() == [
        0, 0, 200, 200
    ]  # fmt: skip
    boxed = (50, 60, 110, 130)
    rows = dict(zip(BOX_COLUMNS, np.array([[0, 0, 0, 0], boxed]).T, strict=True))
    trained = training_crops(tmp_path, image, rows, crop)
    inferred = crops.face_crops(image, [detected, boxed], crop)
    np.testing.assert_array_equal(trained, inferred)
    unmoved = crops.face_crops(image, [boxed], CropSpec(64, 0.5))
    assert np.abs(trained[1].astype(int) - unmoved[0]).mean() > 5  # the offset was applied


def test_training_and_inference_crop_aligned_faces_alike(tmp_path):
    image = textured(100, 120)
    eyes = [40.0, 50.0, 70.0, 62.0]
    crop = CropSpec(32, 0.4, aligned=True)
    rows = dict(zip(EYE_COLUMNS, np.array([eyes]).T, strict=True))
    trained = training_crops(tmp_path, image, rows, crop)
    np.testing.assert_array_equal(trained, face_inputs(image, [None], [eyes], crop))
    with pytest.raises(ValueError, match="eyes"):
        crops.face_crops(image, [(0, 0, 10, 10)], crop)


def test_iou_over_the_union_or_the_smaller_box():
    box = (0, 0, 10, 10)
    others = [(0, 0, 10, 10), (5, 0, 15, 10), (20, 20, 30, 30), (2, 2, 4, 4)]
    np.testing.assert_allclose(crops.iou(box, others), [1, 50 / 150, 0, 4 / 100])
    np.testing.assert_allclose(crops.iou(box, others, over_smaller=True), [1, 0.5, 0, 1])


def test_margin_crops_are_clipped_at_the_borders():
    assert crops.crop_box((100, 200, 3), (10, 20, 50, 60), 0.4).tolist() == [0, 4, 66, 76]
    assert crops.crop_box((100, 200, 3), (150, 60, 190, 100), 0.4).tolist() == [134, 44, 200, 100]
    # The offset moves the crop's centre by a share of the box: here 10 % right, 25 % down.
    moved = crops.crop_box((400, 400, 3), (100, 100, 200, 200), 0.1, (0.1, 0.25))
    assert moved.tolist() == [100, 115, 220, 235]
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 100:] = 255
    cut = crops.face_crops(image, [(130, 10, 180, 90), (0, 0, 50, 50)], CropSpec(32))
    assert cut.shape == (2, 32, 32, 3)
    assert cut[0].min() == 255 and cut[1].max() == 0


def test_warp_without_change_is_the_plain_crop():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), (5, 5), 2)
    box = [10.0, 5.0, 100.0, 80.0]
    plain = crops.warp(image, box, 40).astype(float)
    resized = cv2.resize(image[5:80, 10:100], (40, 40), interpolation=cv2.INTER_LINEAR)
    assert np.abs(plain - resized)[1:-1, 1:-1].max() <= 1  # inside: the same sampling
    mirrored = crops.warp(image, box, 40, flip=True).astype(float)
    assert np.abs(mirrored - plain[:, ::-1]).max() <= 1
    square = [0.0, 0.0, 90.0, 90.0]
    quarter = crops.warp(image, square, 40, angle=np.pi / 2).astype(float)
    turned = np.rot90(crops.warp(image, square, 40)).astype(float)
    assert np.abs(quarter - turned)[5:-5, 5:-5].max() <= 1
